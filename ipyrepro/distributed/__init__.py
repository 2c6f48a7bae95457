"""Beyond one process: per-rank seeds, ranks in sync, and the settings child processes read.

`%repro on` exports its seed, re-seed mode and deterministic setting as environment variables
(`ipyrepro.core.processes`), so a child (a `torch.multiprocessing` worker, a `torchrun` rank) that calls
`ipyrepro.enable()` applies the same recipe. `seed_rank` gives each rank its own documented seed
(`derive_rank_seed`); `check_in_sync` gathers per-tensor digests over `torch.distributed` and names what differs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..core.processes import CHILD_VARS, derive_rank_seed, settings_from_env  # noqa: F401  (public here)

if TYPE_CHECKING:
    from .insync import SyncReport, check_in_sync, leaf_digests  # noqa: F401
    from .ranks import current_rank, seed_rank  # noqa: F401

# Imported on first use: the in-sync check imports the comparison machinery (about 30 ms), the ranks torch.
_LAZY = {
    "SyncReport": "insync",
    "leaf_digests": "insync",
    "check_in_sync": "insync",
    "current_rank": "ranks",
    "seed_rank": "ranks",
    "RANK_VARS": "ranks",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
