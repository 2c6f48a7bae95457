"""ipyrepro: reproducible PyTorch notebooks.

`%load_ext ipyrepro` in IPython or Jupyter, then `%repro on`. From scripts,
the same through `enable`, `disable`, `seed_all` and `status`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .comparison.findings import Cause
    from .comparison.report import CompareReport
    from .core.seeding import derive_cell_seed, derive_source_seed
    from .core.state import ReproWarning
    from .core.status import Status
    from .env.report import EnvReport
    from .jupyter.panel import ReproPanel
    from .rerun.callables import compare
    from .resume.checkpoint import load_checkpoint, save_checkpoint
    from .resume.loader import resumable
    from .resume.rngstate import rng_state, set_rng_state
    from .resume.verify import verify_resume

# Imported on first use (PEP 562), so that importing a submodule that needs no torch (the pytest
# plugin, which pytest loads in every session) does not import torch.
_LAZY = {
    "Cause": "comparison.findings",
    "CompareReport": "comparison.report",
    "compare": "rerun.callables",
    "derive_cell_seed": "core.seeding",
    "derive_source_seed": "core.seeding",
    "STATE": "core.state",
    "ReproWarning": "core.state",
    "Status": "core.status",
    "__version__": "core",
    # resume where you stopped (docs/resume.md)
    "rng_state": "resume.rngstate",
    "set_rng_state": "resume.rngstate",
    "save_checkpoint": "resume.checkpoint",
    "load_checkpoint": "resume.checkpoint",
    "resumable": "resume.loader",
    "verify_resume": "resume.verify",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "Cause",
    "CompareReport",
    "ReproWarning",
    "Status",
    "compare",
    "configure",
    "derive_cell_seed",
    "derive_source_seed",
    "disable",
    "enable",
    "env_report",
    "panel",
    "seed_all",
    "seed_rank",
    "set_reseed",
    "status",
    # resume where you stopped
    "load_checkpoint",
    "resumable",
    "rng_state",
    "save_checkpoint",
    "set_rng_state",
    "verify_resume",
]


def seed_all(seed: int) -> int:
    """Seed random, NumPy's global RNG and torch on every device; `seed` becomes the base seed.

    NumPy's is seeded when `numpy.random` is first imported if it is not yet ([the recipe][page-recipe])."""
    from .core.state import STATE

    return STATE.seed_all(seed)


def enable(
    seed: int | None = None,
    *,
    warn_only: bool | None = None,
    cublas: str = ":4096:8",
    reseed: str | None = None,
    rank: int | None = None,
    portable: bool = False,
) -> Status:
    """Apply the full determinism recipe ([the recipe][page-recipe]); [`disable()`][ipyrepro.disable] restores
    what was before.

    `reseed`: "cell", "source", "fixed" or "off". A setting not given keeps the value in force (a
    second `on`, a re-seed mode chosen while off, the base seed), else takes the kernel's or a parent's
    (IPYREPRO_SEED, IPYREPRO_RESEED, IPYREPRO_DETERMINISTIC), else seed 0, re-seed `cell`, warn_only
    False ([defaults][page-defaults]). `rank`: then seed with that rank's seed
    ([`seed_rank`][ipyrepro.seed_rank]). `portable`: also the portable profile's run-time settings
    ([across machines][page-across-machines]); `status().portable_missing` names the start variables it
    still needs.
    """
    from .core.state import STATE

    return STATE.enable(seed, warn_only=warn_only, cublas=cublas, reseed=reseed, rank=rank, portable=portable)


def seed_rank(rank: int | None = None) -> int:
    """Seed every RNG with a seed derived from the base seed and this process's rank; returns it.

    The rank: as given, else torch.distributed's rank, else RANK, else LOCAL_RANK.
    The formula is `ipyrepro.distributed.derive_rank_seed` ([beyond one process][page-beyond-one-process]).
    """
    from .distributed.ranks import seed_rank as seed_this_rank

    return seed_this_rank(rank)


def disable() -> Status:
    """Restore every flag, env var and the re-seed mode to what they were before `enable`.

    A NumPy seed still waiting for `numpy.random`'s first import is dropped."""
    from .core.state import STATE

    STATE.disable()
    return STATE.status()


def status() -> Status:
    """What is in force right now, read live, with warnings naming cause and fix."""
    from .core.state import STATE

    return STATE.status()


def env_report() -> EnvReport:
    """Everything that decides whether a result reproduces elsewhere; reading it never initialises CUDA."""
    from .core.state import STATE
    from .env.report import collect

    return collect(STATE)


def panel() -> ReproPanel:
    """The control panel widget (ipywidgets) over the same state as `%repro`; leave it last in a cell."""
    from .core.state import STATE
    from .jupyter.panel import panel as make_panel

    return make_panel(STATE)


def set_reseed(mode: str) -> None:
    """Re-seed before each cell: 'cell' (a seed per cell id), 'source' (a seed per cell's code, the same in
    every frontend), 'fixed' (the base seed) or 'off'."""
    from .core.state import STATE

    STATE.set_reseed(mode)


def configure(**settings: Any) -> Status:
    """Change single settings: cudnn_benchmark, cudnn_deterministic, deterministic_algorithms,
    cublas_workspace_config (None unsets it). Validates all before changing any."""
    from .core.state import STATE

    STATE.configure(**settings)
    return STATE.status()


def load_ipython_extension(ipython: Any) -> None:
    from .core.state import STATE
    from .jupyter.hooks import install

    install(ipython, STATE)


def unload_ipython_extension(ipython: Any) -> None:
    from .core.state import STATE
    from .jupyter.hooks import uninstall

    uninstall(ipython, STATE)
