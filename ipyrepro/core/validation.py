"""The values users may pass, and their checks: no torch or NumPy import, so the CLI starts fast.

`flags`, `seeding` and `torchinfo` re-export these names; the CLI, the kernelspec and the
notebook check import them from here so that `ipyrepro --help` never pays for `import torch`.
"""

from __future__ import annotations

import numbers

SEED_LIMIT = 2**32
RESEED_MODES = ("off", "fixed", "cell", "source")
DETERMINISTIC_CUBLAS_VALUES = (":4096:8", ":16:8")
DETERMINISTIC_MODES = ("off", "warn", "error")

# What `%repro on` exports for child processes (see processes.py), named here so the check's client,
# which starts kernels without them, imports no torch.
SEED_VAR = "IPYREPRO_SEED"
RESEED_VAR = "IPYREPRO_RESEED"
DETERMINISTIC_VAR = "IPYREPRO_DETERMINISTIC"
CHILD_VARS = (SEED_VAR, RESEED_VAR, DETERMINISTIC_VAR)
# Set in every kernel `ipyrepro check` starts (its runs and its causes kernel, --as-is too): `%repro check`
# inside such a kernel does nothing, so a notebook that checks itself does not recurse.
CHECK_KERNEL_VAR = "IPYREPRO_CHECK_KERNEL"


def validate_seed(seed: object) -> int:
    """An int in [0, 2**32): the range that NumPy's legacy global RNG accepts (NumPy integers count)."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise ValueError(f"seed must be an integer with 0 <= seed < 2**32; got {seed!r}")
    if not 0 <= int(seed) < SEED_LIMIT:
        raise ValueError(f"seed must satisfy 0 <= seed < 2**32 (= {SEED_LIMIT}); got {int(seed)}")
    return int(seed)


def validate_reseed_mode(mode: str) -> str:
    if mode not in RESEED_MODES:
        raise ValueError(f"re-seed mode must be one of {', '.join(RESEED_MODES)}; got {mode!r}")
    return mode


def validate_deterministic_mode(mode: str) -> str:
    if mode not in DETERMINISTIC_MODES:
        raise ValueError(f"deterministic algorithms mode must be one of {', '.join(DETERMINISTIC_MODES)}; got {mode!r}")
    return mode


def validate_cublas_value(value: str | None) -> str | None:
    """Accept only the two values that make cuBLAS deterministic (or None for unset)."""
    if value is not None and value not in DETERMINISTIC_CUBLAS_VALUES:
        raise ValueError(
            f"CUBLAS_WORKSPACE_CONFIG must be {' or '.join(DETERMINISTIC_CUBLAS_VALUES)} "
            f"(the values that make cuBLAS deterministic); got {value!r}"
        )
    return value
