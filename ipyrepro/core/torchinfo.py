"""Version-aware facts about torch, and reads that never initialise CUDA.

Everything that differs between torch releases is decided here, from one
table, so that status, warnings and tests agree on what applies.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable
from typing import Any

from .lazytorch import TORCH
from .lazytorch import imported as imported_torch
from .records import Record
from .validation import DETERMINISTIC_CUBLAS_VALUES  # noqa: F401  (re-exported)

# Nothing here imports torch: each read asks `imported_torch()` and answers for a torch not imported
# yet (what its import will give, or None where that cannot be known without importing it).


def parse_version(text: str) -> tuple[int, int]:
    """(major, minor) of a version string such as '2.13.0+cpu' or '2.10.0a0'."""
    match = re.match(r"(\d+)\.(\d+)", text)
    if not match:
        raise ValueError(f"cannot read a torch version from {text!r}")
    return int(match.group(1)), int(match.group(2))


def torch_version() -> tuple[int, int]:
    return parse_version(torch_version_text())


def torch_version_text() -> str:
    """torch's version: `torch.__version__` once imported, else its installed metadata (never imports it)."""
    torch = imported_torch()
    if torch is not None:
        return str(torch.__version__)
    return _installed_torch_version()


def _installed_torch_version() -> str:
    return installed_version("torch")


def _version_in(source: str) -> str | None:
    """The string assigned to `__version__` (or `version`) in a version.py, annotated or not.

    Read line by line, not with a regular expression: compiling one costs more than the rest of
    `%repro on`'s status (issue 23's start-up budget).
    """
    for line in source.splitlines():
        target, assigns, value = line.partition("=")
        value = value.strip()
        if assigns and target.partition(":")[0].strip() in ("__version__", "version") and value[:1] in ("'", '"'):
            end = value.find(value[0], 1)
            if end > 1:
                return value[1:end]
    return None


@functools.cache
def installed_version(package: str) -> str:
    """An installed package's `__version__` without importing it: from its `version.py` (torch and NumPy
    write one, with the local suffix such as +cpu that metadata may lack), else its metadata."""
    import importlib.util

    try:
        spec = importlib.util.find_spec(package)  # a top-level name: finds, never imports
        if spec is not None and spec.origin:
            with open(os.path.join(os.path.dirname(spec.origin), "version.py"), encoding="utf-8") as file:
                found = _version_in(file.read())
            if found:
                return found
    except (OSError, ImportError, ValueError):
        pass
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "not installed"


class CublasFacts(Record):
    """What CUBLAS_WORKSPACE_CONFIG means for one range of torch releases."""

    first: tuple[int, int]
    last: tuple[int, int] | None  # inclusive; None: still true for newer releases
    needs_variable: bool  # does deterministic mode need the variable on CUDA?
    severity: str  # of a late change: "warning" or "note"
    late_change: str  # what a change after the first cuBLAS use does

    def covers(self, version: tuple[int, int]) -> bool:
        return version >= self.first and (self.last is None or version <= self.last)


# The one table of cuBLAS behaviour by torch release.
CUBLAS_FACTS: tuple[CublasFacts, ...] = (
    CublasFacts(
        first=(0, 0),
        last=(2, 9),
        needs_variable=True,
        severity="warning",
        late_change=(
            "torch {version} requires it for deterministic cuBLAS and caches its check at the first "
            "cuBLAS use, so deterministic mode can keep raising (or cuBLAS stays nondeterministic) "
            "until the kernel restarts. Fix: restart the kernel and set it before any CUDA work, "
            "e.g. `%repro on` as the first cell, or a kernel whose environment sets it "
            "(`ipyrepro kernel install`)."
        ),
    ),
    CublasFacts(
        first=(2, 10),
        last=(2, 12),
        needs_variable=False,
        severity="note",
        late_change=(
            "torch {version} no longer needs it for determinism (each handle and stream gets its own "
            "workspace), but re-reads the size at each use, so work before and after the change "
            "used different workspace sizes. To have one size throughout, restart and set it first."
        ),
    ),
    CublasFacts(
        first=(2, 13),
        last=None,
        needs_variable=False,
        severity="note",
        late_change=(
            "torch {version} no longer needs it for determinism (each handle and stream gets its own "
            "workspace), and freezes the workspace size at the first cuBLAS use, so this change is "
            "ignored until the kernel restarts. To use it, restart and set it first."
        ),
    ),
)


def cublas_facts(version: tuple[int, int] | None = None) -> CublasFacts:
    version = version or torch_version()
    for facts in CUBLAS_FACTS:
        if facts.covers(version):
            return facts
    raise LookupError(f"no cuBLAS facts for torch {version}")  # the table covers every version


def late_cublas_message(value: str | None, version: tuple[int, int] | None = None) -> tuple[str, str]:
    """(severity, text) for CUBLAS_WORKSPACE_CONFIG set or changed after CUDA was initialised."""
    version = version or torch_version()
    facts = cublas_facts(version)
    shown = "unset" if value is None else f"set to {value!r}"
    text = (
        f"CUBLAS_WORKSPACE_CONFIG was {shown} after CUDA was already initialised in this process. "
        + facts.late_change.format(version=f"{version[0]}.{version[1]}")
    )
    return facts.severity, text


def cuda_initialized() -> bool:
    """True once this process has created a CUDA context; reading it creates none (nor imports torch)."""
    torch = imported_torch()
    return torch is not None and bool(torch.cuda.is_initialized())


def cuda_available() -> bool | None:
    """Whether torch sees a GPU; asks the driver for a count and creates no context. None: torch not imported."""
    torch = imported_torch()
    if torch is None:
        return None
    try:
        return bool(torch.cuda.is_available())
    except Exception:  # a broken driver should not break a status read
        return False


# torch.use_deterministic_algorithms(mode) also sets torch._inductor.config.deterministic = mode
# from this release on (pytorch/pytorch#165950); before it, inductor read the global flag itself.
INDUCTOR_FOLLOWS_FROM = (2, 10)


def inductor_follows_deterministic_algorithms(version: tuple[int, int] | None = None) -> bool:
    """Whether torch.use_deterministic_algorithms sets inductor's `deterministic` config too."""
    return (version or torch_version()) >= INDUCTOR_FOLLOWS_FROM


def deterministic_algorithms_mode() -> str:
    """'off', 'warn' or 'error', as torch.use_deterministic_algorithms left it (or will, once torch is imported)."""
    torch = imported_torch()
    if torch is None:
        return TORCH.settings_at_import().deterministic_algorithms
    if not torch.are_deterministic_algorithms_enabled():
        return "off"
    return "warn" if torch.is_deterministic_algorithms_warn_only_enabled() else "error"


def _read_attr(path: str) -> Any:
    obj: Any = imported_torch()
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


# Precision flags that change float32 results, by the name torch gives them.
# Each is read only when the installed torch has it.
PRECISION_FLAGS = (
    "backends.cuda.matmul.allow_tf32",
    "backends.cudnn.allow_tf32",
    "backends.fp32_precision",
    "backends.cuda.matmul.fp32_precision",
    "backends.cudnn.fp32_precision",
    "backends.cudnn.conv.fp32_precision",
    "backends.cudnn.rnn.fp32_precision",
    "backends.mkldnn.fp32_precision",
)

# What a fresh process reads (torch 2.13); a flag this torch lacks is simply not read.
PRECISION_DEFAULTS: dict[str, Any] = {
    "float32_matmul_precision": "highest",
    "cuda.matmul.allow_tf32": False,
    "cudnn.allow_tf32": True,
    "fp32_precision": "none",
    "cuda.matmul.fp32_precision": "none",
    "cudnn.fp32_precision": "none",
    "cudnn.conv.fp32_precision": "tf32",
    "cudnn.rnn.fp32_precision": "tf32",
    "mkldnn.fp32_precision": "none",
}


def precision_flags() -> dict[str, Any]:
    """TF32 / fp32-precision flags this torch has, read live; none of them touches CUDA. Empty: torch not imported."""
    torch = imported_torch()
    if torch is None:
        return {}
    flags: dict[str, Any] = {"float32_matmul_precision": torch.get_float32_matmul_precision()}
    for path in PRECISION_FLAGS:
        try:
            value = _read_attr(path)
        except (AttributeError, RuntimeError):
            continue
        if isinstance(value, (bool, str)):
            flags[path.removeprefix("backends.")] = value
    return flags


# The C getters behind PRECISION_FLAGS, for a change check after every cell (the Python
# properties cost about 1 us each). Each is used only where it reads what the property reads.
_PRECISION_GETTERS: dict[str, tuple[str, ...]] = {
    "backends.cuda.matmul.allow_tf32": ("_get_cublas_allow_tf32",),
    "backends.cudnn.allow_tf32": ("_get_cudnn_allow_tf32",),
    "backends.fp32_precision": ("_get_fp32_precision_getter", "generic", "all"),
    "backends.cuda.matmul.fp32_precision": ("_get_fp32_precision_getter", "cuda", "matmul"),
    "backends.cudnn.fp32_precision": ("_get_fp32_precision_getter", "cuda", "all"),
    "backends.cudnn.conv.fp32_precision": ("_get_fp32_precision_getter", "cuda", "conv"),
    "backends.cudnn.rnn.fp32_precision": ("_get_fp32_precision_getter", "cuda", "rnn"),
    "backends.mkldnn.fp32_precision": ("_get_fp32_precision_getter", "mkldnn", "all"),
}


@functools.cache
def _precision_readers() -> tuple[tuple[Callable[..., Any], tuple[Any, ...]], ...]:
    import torch  # only called once torch is imported

    readers: list[tuple[Callable[..., Any], tuple[Any, ...]]] = [(torch.get_float32_matmul_precision, ())]
    for path in PRECISION_FLAGS:
        try:
            slow = _read_attr(path)
        except (AttributeError, RuntimeError):
            continue
        name, *arguments = _PRECISION_GETTERS.get(path, ("",))
        getter = getattr(torch._C, name, None) if name else None
        try:
            fast = getter is not None and getter(*arguments) == slow
        except Exception:  # a getter with another signature in this torch
            fast = False
        readers.append((getter, tuple(arguments)) if fast else (_read_attr, (path,)))
    return tuple(readers)


def precision_key() -> tuple[Any, ...]:
    """Changes whenever `precision_flags()` would; a few C calls, for the per-cell change check."""
    if imported_torch() is None:
        return ()
    readers = _precision_readers()
    try:
        return tuple([read(*arguments) for read, arguments in readers])
    except (AttributeError, RuntimeError):  # a flag precision_flags() leaves out: mark which
        key: list[Any] = []
        for read, arguments in readers:
            try:
                key.append(read(*arguments))
            except (AttributeError, RuntimeError) as error:
                key.append(type(error))
        return tuple(key)


def gpu_names() -> list[str] | None:
    """GPU names, read through torch only when CUDA is already initialised; else None."""
    if not cuda_initialized():
        return None
    import torch

    return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]


def cudnn_version() -> int | None:
    """cuDNN version when reading it is safe (on torch >= 2.10 the read initialises CUDA); never imports torch."""
    torch = imported_torch()
    if torch is None:
        return None
    if not torch.backends.cudnn.is_available():
        return None
    if torch_version() >= (2, 10) and not cuda_initialized():
        return None
    return torch.backends.cudnn.version()
