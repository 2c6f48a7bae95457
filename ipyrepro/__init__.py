"""ipyrepro: reproducible PyTorch notebooks.

`%load_ext ipyrepro` in IPython or Jupyter, then `%repro on`. From scripts,
the same through `enable`, `disable`, `seed_all` and `status`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .causes import Cause
from .report import CompareReport
from .rerun import compare
from .seeding import derive_cell_seed
from .state import STATE, ReproWarning
from .status import Status

if TYPE_CHECKING:
    from .controlpanel import ReproPanel
    from .envreport import EnvReport

__version__ = "0.1.0"
__all__ = [
    "Cause",
    "CompareReport",
    "ReproWarning",
    "Status",
    "compare",
    "configure",
    "derive_cell_seed",
    "disable",
    "enable",
    "env_report",
    "panel",
    "seed_all",
    "set_reseed",
    "status",
]


def seed_all(seed: int) -> int:
    """Seed random, NumPy's global RNG and torch on every device; `seed` becomes the base seed."""
    return STATE.seed_all(seed)


def enable(seed: int = 0, *, warn_only: bool = False, cublas: str = ":4096:8", reseed: str = "cell") -> Status:
    """Apply the full determinism recipe (see README); `disable()` restores what was before."""
    STATE.enable(seed, warn_only=warn_only, cublas=cublas, reseed=reseed)
    return STATE.status()


def disable() -> Status:
    """Restore every flag, env var and the re-seed mode to what they were before `enable`."""
    STATE.disable()
    return STATE.status()


def status() -> Status:
    """What is in force right now, read live, with warnings naming cause and fix."""
    return STATE.status()


def env_report() -> EnvReport:
    """Everything that decides whether a result reproduces elsewhere; reading it never initialises CUDA."""
    from .envreport import collect

    return collect(STATE)


def panel() -> ReproPanel:
    """The control panel widget (ipywidgets) over the same state as `%repro`; leave it last in a cell."""
    from .controlpanel import panel as make_panel

    return make_panel(STATE)


def set_reseed(mode: str) -> None:
    """Re-seed before each cell: 'cell' (a seed per cell id), 'fixed' (the base seed) or 'off'."""
    STATE.set_reseed(mode)


def configure(**settings: Any) -> Status:
    """Change single settings: cudnn_benchmark, cudnn_deterministic, deterministic_algorithms,
    cublas_workspace_config (None unsets it). Validates all before changing any."""
    STATE.configure(**settings)
    return STATE.status()


def load_ipython_extension(ipython: Any) -> None:
    from .hooks import install

    install(ipython, STATE)


def unload_ipython_extension(ipython: Any) -> None:
    from .hooks import uninstall

    uninstall(ipython, STATE)
