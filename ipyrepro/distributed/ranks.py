"""Per-rank seeds: which rank this process is, and seeding it with its own documented seed."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import torch

from ..core.processes import settings_from_env, validate_rank

if TYPE_CHECKING:
    from ..core.state import ReproState

RANK_VARS = ("RANK", "LOCAL_RANK")


def current_rank() -> int:
    """This process's rank: torch.distributed's global rank when a process group is initialised,
    else the RANK environment variable, else LOCAL_RANK."""
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    for name in RANK_VARS:
        text = os.environ.get(name)
        if text is not None:
            try:
                return validate_rank(int(text.strip()), name)
            except ValueError:
                raise ValueError(f"environment variable {name} must be a whole number >= 0; got {text!r}") from None
    raise RuntimeError(
        "ipyrepro cannot tell this process's rank: torch.distributed is not initialised and neither RANK nor "
        "LOCAL_RANK is set. Fix: pass it, e.g. ipyrepro.seed_rank(rank) (torch.multiprocessing passes the "
        "process index as the first argument), or call it after torch.distributed.init_process_group()."
    )


def seed_rank(rank: int | None = None, *, state: ReproState | None = None) -> int:
    """Seed every RNG with `derive_rank_seed(base, rank)` and return that seed; the base seed is unchanged.

    base: the base seed in force (from `enable`/`seed_all`), else IPYREPRO_SEED, else 0.
    rank: as given, else `current_rank()`.
    """
    from ..core.state import STATE

    state = STATE if state is None else state
    rank = current_rank() if rank is None else validate_rank(rank, "rank")
    base = state.seed
    if base is None:
        base = settings_from_env().seed or 0
    return state.seed_for_rank(base, rank)
