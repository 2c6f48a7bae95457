"""What crosses a process boundary: the settings `%repro on` exports to child processes, per-rank seeds,
and DataLoader workers that outlive a cell.

The core needs these (``on`` exports the variables, status warns about live workers), so they live here;
`ipyrepro.distributed` builds the user-facing rank and in-sync tools on them.
"""

from __future__ import annotations

import hashlib
import sys
import weakref
from typing import TYPE_CHECKING, Any

from .defaults import ChildSettings, settings_from_env  # noqa: F401  (re-exported: the child-process settings)
from .seeding import validate_seed
from .validation import CHILD_VARS, DETERMINISTIC_VAR, RESEED_VAR, SEED_VAR  # noqa: F401  (re-exported)

if TYPE_CHECKING:
    from .state import ReproState


# -- child processes -------------------------------------------------------------


def child_environment(seed: int, reseed: str, deterministic: str) -> dict[str, str]:
    """The variables `on` exports so that `enable()` in a child process applies the same settings."""
    return {SEED_VAR: str(seed), RESEED_VAR: reseed, DETERMINISTIC_VAR: deterministic}


# -- per-rank seeds --------------------------------------------------------------


def derive_rank_seed(base: int, rank: int) -> int:
    """The seed of rank `rank`: the first 4 bytes (big-endian) of
    blake2b(f"{base}:rank:{rank}", digest_size=4, person=b"ipyrepro").

    A hash, not `base + rank`, so (base 0, rank 1) and (base 1, rank 0) do not share a stream.
    """
    base = validate_seed(base)
    rank = validate_rank(rank, "rank")
    digest = hashlib.blake2b(f"{base}:rank:{rank}".encode(), digest_size=4, person=b"ipyrepro").digest()
    return int.from_bytes(digest, "big")


def validate_rank(rank: object, name: str) -> int:
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 0:
        raise ValueError(f"{name} must be a whole number >= 0; got {rank!r}")
    return rank


# -- DataLoader workers ----------------------------------------------------------

PERSISTENT_WORKERS_WARNING = (
    "A DataLoader with persistent_workers=True (and num_workers > 0) has live worker processes, which keep "
    "their RNG streams across cells: re-seeding before a cell does not restart them, so rerunning a cell that "
    "iterates it gives different augmentations. Fix: persistent_workers=False while you work cell by cell "
    "(each new iterator then seeds its workers from the re-seeded main process), or create the DataLoader in "
    "the same cell that iterates it."
)


def watch_persistent_workers(state: ReproState) -> None:
    """Note each multi-worker DataLoader iterator with persistent workers as it is created.

    Wraps `_MultiProcessingDataLoaderIter.__init__` once per process, and only when
    torch.utils.data is already imported: a weak set, no imports, no per-cell scan.
    """
    module = sys.modules.get("torch.utils.data.dataloader")
    cls = getattr(module, "_MultiProcessingDataLoaderIter", None)
    if cls is None or getattr(cls.__init__, "__ipyrepro_watch__", False):
        return
    original = cls.__init__

    def __init__(self: Any, loader: Any, *args: Any, **kwargs: Any) -> None:
        original(self, loader, *args, **kwargs)
        try:
            if getattr(loader, "persistent_workers", False):
                state.persistent_worker_iterators.add(self)
                state.persistent_workers_seen = True
        except TypeError:  # not weak-referenceable: nothing to watch
            pass

    __init__.__ipyrepro_watch__ = True  # type: ignore[attr-defined]
    __init__.__wrapped__ = original  # type: ignore[attr-defined]
    cls.__init__ = __init__


def live_persistent_workers(iterators: weakref.WeakSet) -> int:
    """How many watched iterators still hold worker processes."""
    return sum(1 for it in list(iterators) if not getattr(it, "_shutdown", True))
