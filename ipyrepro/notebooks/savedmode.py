"""The mode a notebook was saved in, so that `--against-saved` runs it as its author did.

An author who seeded with `torch.manual_seed(42)` and saved ran the notebook as written: re-seeding
every cell would change what the saved outputs show. A notebook saved under ipyrepro (its kernelspec
is an ipyrepro kernel, or its metadata has an `ipyrepro` entry recording `%repro on`'s seed and
re-seed mode) ran under that seed and mode. Nothing here runs: it reads the notebook's metadata and
the kernelspec installed here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..core.defaults import ChildSettings


@dataclass(frozen=True)
class SavedMode:
    """How the author ran the notebook: `as_is` (as written) or under ipyrepro with `settings`; `why` for the header."""

    as_is: bool
    why: str
    settings: ChildSettings = ChildSettings()


def saved_mode(metadata: dict[str, Any], kernel_name: str, kernel_spec_manager: Any) -> SavedMode:
    """The mode the saved outputs were made in, read from the notebook's metadata and its kernelspec."""
    from ..core.validation import validate_reseed_mode, validate_seed
    from .kernels import kernelspec_settings

    recorded = metadata.get("ipyrepro")
    if isinstance(recorded, dict) and recorded.get("seed") is not None:
        try:
            seed = validate_seed(recorded.get("seed"))
            reseed = validate_reseed_mode(recorded["reseed"]) if recorded.get("reseed") is not None else None
        except (ValueError, TypeError) as error:
            raise ValueError(
                f"the notebook's metadata.ipyrepro is not a `%repro on` record ({error}); "
                "fix or remove it, or pass --as-is or --seed"
            ) from None
        return SavedMode(False, "its metadata records `%repro on`", ChildSettings(seed, reseed))
    if _is_ipyrepro_kernel(kernel_name, kernel_spec_manager):
        return SavedMode(
            False,
            f"it was saved with the ipyrepro kernel {kernel_name!r}",
            kernelspec_settings(kernel_name, kernel_spec_manager),
        )
    return SavedMode(True, f"it was saved with kernel {kernel_name!r}, not under ipyrepro")


def _is_ipyrepro_kernel(kernel_name: str, kernel_spec_manager: Any) -> bool:
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        spec = (kernel_spec_manager or KernelSpecManager()).get_kernel_spec(kernel_name)
    except (NoSuchKernel, OSError, ValueError):
        return False
    return isinstance(spec.metadata, dict) and "ipyrepro" in spec.metadata
