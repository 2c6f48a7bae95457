"""What runs inside DataLoader workers: seeding each as the worker that had its batches, and reporting its
RNG state with every batch, so that a resumed epoch's workers draw the augmentations the uninterrupted one did.

A DataLoader (in order) hands batch j of an epoch to worker j % num_workers. Resumed at batch b, the new
worker w gets the batches the original worker (b + w) % num_workers had: it is seeded as that worker
was, then given the RNG state that worker had after its last batch before the save. Module-level classes,
so that they pickle for the `spawn` start method.
"""

from __future__ import annotations

import random
from typing import Any

import torch

WorkerState = tuple[int, tuple[Any, ...], bytes, Any]  # (original worker id, random, torch CPU, NumPy global)


def capture_worker_state(original: int) -> WorkerState:
    """This worker's RNG states, picklable without shared memory (the torch state as bytes)."""
    numpy_state = None
    try:
        import numpy as np

        numpy_state = np.random.get_state()
    except ImportError:
        pass
    return original, random.getstate(), torch.get_rng_state().numpy().tobytes(), numpy_state


def restore_worker_state(state: WorkerState) -> None:
    _, python, cpu, numpy_state = state
    random.setstate(python)
    torch.set_rng_state(torch.frombuffer(bytearray(cpu), dtype=torch.uint8))
    if numpy_state is not None:
        import numpy as np

        np.random.set_state(numpy_state)


def original_worker(worker_id: int, offset: int, num_workers: int) -> int:
    return (offset + worker_id) % num_workers


def seed_as_torch_does(base_seed: int, worker_id: int) -> None:
    """The seeding torch's worker loop gives worker `worker_id` of an iterator with `base_seed`."""
    seed = base_seed + worker_id
    random.seed(seed)
    torch.manual_seed(seed)
    try:
        import numpy as np
    except ImportError:
        return
    from torch.utils.data._utils.worker import _generate_state

    np.random.seed(_generate_state(base_seed, worker_id))


class WorkerSetup:
    """The worker_init_fn of a resumable epoch: seed as the original worker, run the user's init, then
    put back the state that worker had reached (when it had produced a batch before)."""

    def __init__(
        self,
        user_init: Any,
        base_seed: int,
        offset: int,
        num_workers: int,
        states: dict[int, WorkerState],
    ) -> None:
        self.user_init = user_init
        self.base_seed = base_seed
        self.offset = offset
        self.num_workers = num_workers
        self.states = states

    def __call__(self, worker_id: int) -> None:
        original = original_worker(worker_id, self.offset, self.num_workers)
        seed_as_torch_does(self.base_seed, original)
        if self.user_init is not None:
            self.user_init(original)
        saved = self.states.get(original)
        if saved is not None:
            restore_worker_state(saved)


class CollateWithState:
    """The user's collate_fn, returning (batch, this worker's RNG state after the batch) from workers."""

    def __init__(self, collate: Any, offset: int, num_workers: int) -> None:
        self.collate = collate
        self.offset = offset
        self.num_workers = num_workers

    def __call__(self, data: Any) -> tuple[Any, WorkerState]:
        batch = self.collate(data)
        info = torch.utils.data.get_worker_info()
        worker_id = info.id if info is not None else 0
        return batch, capture_worker_state(original_worker(worker_id, self.offset, self.num_workers))


def encode_worker_state(state: WorkerState) -> dict[str, Any]:
    """A worker state as a checkpoint holds it (tensors and plain values, for weights_only loading)."""
    from .rngstate import encode_numpy

    original, python, cpu, numpy_state = state
    return {
        "worker": original,
        "python": python,
        "torch_cpu": torch.frombuffer(bytearray(cpu), dtype=torch.uint8),
        "numpy": None if numpy_state is None else encode_numpy(numpy_state),
    }


def decode_worker_state(entry: dict[str, Any]) -> WorkerState:
    from .rngstate import decode_numpy

    numpy_state = None if entry["numpy"] is None else decode_numpy(entry["numpy"])
    return entry["worker"], tuple(entry["python"]), entry["torch_cpu"].numpy().tobytes(), numpy_state
