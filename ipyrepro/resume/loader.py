"""`resumable(loader)`: a DataLoader that knows its place (epoch, batches consumed) and resumes mid-epoch.

At the start of each epoch it draws what torch's own iterator draws, in the same order (the workers' base
seed, then the sampler's indices), and keeps the epoch's batches of indices. Iteration runs over those
indices through a DataLoader with the user's settings. Resumed, it replays the remaining indices without
loading the skipped samples and without drawing again, and gives each worker the RNG state it had
reached (workers.py). torchdata's StatefulDataLoader is driven through its own state_dict.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, IterableDataset, Sampler

from .loadershape import describe_differences, fix_text, loader_shape, shape_differences
from .workers import (
    CollateWithState,
    WorkerSetup,
    WorkerState,
    decode_worker_state,
    encode_worker_state,
)

FORMAT = "ipyrepro-loader-place/1"


class ReplaySampler(Sampler):
    """Yields a fixed list: the rest of an epoch's indices (or batches of indices)."""

    def __init__(self, items: list[Any]) -> None:
        self.items = items

    def __iter__(self) -> Iterator[Any]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)


class Epoch:
    """One epoch's plan: its batches of indices, the workers' base seed, and worker states reached."""

    def __init__(self, batches: list[Any], base_seed: int, worker_states: dict[int, WorkerState]) -> None:
        self.batches = batches
        self.base_seed = base_seed
        self.worker_states = worker_states  # original worker id -> state after its last consumed batch


class ResumableLoader:
    """A DataLoader-compatible iterable that tracks `epoch` and `batches` (consumed in this epoch).

    Each `iter()` continues the epoch in progress where it stopped (after a `break`, or from the place a
    `load_state_dict` put back), else starts the next one: the place alone decides what comes next, so a
    resumed run and one that never stopped take the same batches. Attributes it does not have (dataset,
    batch_size, sampler...) are the wrapped loader's.
    """

    def __init__(self, loader: DataLoader) -> None:
        _check_loader(loader)
        self.loader = loader
        self.epoch = 0
        self.batches = 0
        self._plan: Epoch | None = None  # the epoch in progress; None between epochs
        self._carried: dict[int, WorkerState] = {}  # persistent workers: states at the end of the last epoch
        self._persistent_seed: int | None = None  # persistent workers: the base seed of their first epoch

    def __getattr__(self, name: str) -> Any:
        if name == "loader":
            raise AttributeError(name)
        return getattr(self.loader, name)

    def __len__(self) -> int:
        return len(self.loader)

    def __repr__(self) -> str:
        return f"<ipyrepro.resumable epoch {self.epoch}, {self.batches} batches consumed, of {self.loader!r}>"

    # -- iteration -----------------------------------------------------------------------------

    def __iter__(self) -> Iterator[Any]:
        plan = self._plan
        if plan is not None and self.batches >= len(plan.batches):
            self._finish_epoch(plan)  # its last batch was taken but the loop that took it stopped there
        if self._plan is None:
            self.batches = 0
            self._plan = self._draw_epoch()
        return self._run(self._plan, self.batches)

    def _draw_epoch(self) -> Epoch:
        """What torch's iterator draws at an epoch's start, in its order: the base seed, then the indices."""
        loader = self.loader
        persistent = loader.persistent_workers
        if persistent and self._persistent_seed is not None:
            base_seed = self._persistent_seed  # torch draws it once, when its persistent workers start
        else:
            base_seed = int(torch.empty((), dtype=torch.int64).random_(generator=loader.generator).item())
            if persistent:
                self._persistent_seed = base_seed
        batches = list(iter(_index_sampler(loader)))
        return Epoch(batches, base_seed, dict(self._carried) if persistent else {})

    def _run(self, plan: Epoch, start: int) -> Iterator[Any]:
        workers = self.loader.num_workers
        inner = _replaying_loader(self.loader, plan, start)
        for item in inner:
            if workers:
                item, worker_state = item
                plan.worker_states[worker_state[0]] = worker_state
            self.batches += 1
            yield item
        if plan is self._plan and self.batches >= len(plan.batches):
            self._finish_epoch(plan)

    def _finish_epoch(self, plan: Epoch) -> None:
        self._carried = plan.worker_states
        self._plan = None
        self.epoch += 1
        self.batches = 0

    # -- the place -----------------------------------------------------------------------------

    @property
    def place(self) -> tuple[int, int]:
        """(epoch, batches) as a checkpoint records them: an epoch whose last batch was taken is finished."""
        plan = self._plan
        if plan is not None and self.batches >= len(plan.batches):
            return self.epoch + 1, 0
        return self.epoch, self.batches

    def state_dict(self) -> dict[str, Any]:
        """The place: epoch, batches consumed, this epoch's indices and base seed, the workers' RNG states.

        Taken on an epoch's last batch (the loop that took it has not asked for the next yet), it records
        that epoch as finished, so a loop over `range(loader.epoch, N)` resumes with the next epoch.
        """
        plan = self._plan
        carried = self._carried
        if plan is not None and self.batches >= len(plan.batches):
            plan, carried = None, plan.worker_states  # what _finish_epoch will make of it
        epoch, batches = self.place
        return {
            "format": FORMAT,
            "epoch": epoch,
            "batches": batches,
            "num_workers": self.loader.num_workers,
            "length": len(plan.batches) if plan is not None else None,
            "indices": None if plan is None else _encode_batches(plan.batches),
            "base_seed": None if plan is None else plan.base_seed,
            "worker_states": [] if plan is None else [encode_worker_state(s) for s in plan.worker_states.values()],
            "carried": [encode_worker_state(s) for s in carried.values()],
            "persistent_seed": self._persistent_seed,
            "generators": {label: generator.get_state() for label, generator in loader_generators(self.loader)},
            "shape": loader_shape(self.loader),
        }

    def load_state_dict(self, state: dict[str, Any], strict: bool = True) -> None:
        """Put the place back; the next `iter()` continues the epoch it was saved in. Validates first.

        `strict=False`: a loader built otherwise than the saved one (see `differences`) starts the epoch
        after the saved one's instead of raising; the rest of the saved epoch is skipped.
        """
        self.check_state_dict(state, strict=strict)
        if self.differences(state):
            self._load_at_next_epoch(state)
            return
        generators = dict(loader_generators(self.loader))
        plan = None
        if state["indices"] is not None:
            batches = _decode_batches(state["indices"])
            states = {s[0]: s for s in map(decode_worker_state, state["worker_states"])}
            plan = Epoch(batches, int(state["base_seed"]), states)
        self._carried = {s[0]: s for s in map(decode_worker_state, state["carried"])}
        self._persistent_seed = state.get("persistent_seed")
        self.epoch, self.batches, self._plan = int(state["epoch"]), int(state["batches"]), plan
        for label, generator in generators.items():
            generator.set_state(state["generators"][label])

    def next_epoch(self, state: dict[str, Any]) -> int:
        """The epoch a non-strict load of `state` starts: the saved one if it was not begun, else the next."""
        return int(state["epoch"]) + (1 if state["indices"] is not None else 0)

    def _load_at_next_epoch(self, state: dict[str, Any]) -> None:
        saved = state.get("shape") or {}
        same_workers = all(
            saved.get(name) == getattr(self.loader, name) for name in ("num_workers", "persistent_workers")
        )
        self._carried = {s[0]: s for s in map(decode_worker_state, state["carried"])} if same_workers else {}
        self._persistent_seed = state.get("persistent_seed") if same_workers else None
        self.epoch, self.batches, self._plan = self.next_epoch(state), 0, None
        generators = dict(loader_generators(self.loader))
        if set(state.get("generators", {})) == set(generators):
            for label, generator in generators.items():
                generator.set_state(state["generators"][label])

    def differences(self, state: dict[str, Any]) -> list[str]:
        """The settings (loadershape.FIELDS) in which this loader differs from the one `state` was saved from."""
        return shape_differences(state.get("shape"), loader_shape(self.loader))

    def check_state_dict(self, state: Any, strict: bool = True) -> None:
        """Raise ValueError, naming cause and fix, if `state` is not a place this loader can take."""
        if not isinstance(state, dict) or state.get("format") != FORMAT:
            raise ValueError(
                "This is not the place of an ipyrepro.resumable loader. Fix: pass what its state_dict() returned."
            )
        differences = self.differences(state)
        if differences:
            if strict:
                raise ValueError(self._difference_message(state, differences))
            return  # a non-strict load starts the next epoch: nothing of the saved epoch is used
        if state["num_workers"] != self.loader.num_workers and state["indices"] is not None:
            raise ValueError(
                f"The place was saved with num_workers={state['num_workers']}, this loader has "
                f"{self.loader.num_workers}: the workers' random states cannot be mapped. Fix: build the "
                "DataLoader with the same num_workers."
            )
        generators = dict(loader_generators(self.loader))
        saved_generators = state.get("generators", {})
        if set(saved_generators) != set(generators):
            raise ValueError(
                f"The place was saved from a loader with generators {sorted(saved_generators) or 'none'}, this one "
                f"has {sorted(generators) or 'none'}. Fix: build the DataLoader (and its sampler) as the saved run did."
            )
        if state["indices"] is not None and not 0 <= state["batches"] <= state["length"]:
            raise ValueError(f"The place says {state['batches']} batches consumed of {state['length']}.")

    def _difference_message(self, state: dict[str, Any], differences: list[str]) -> str:
        saved, current = state["shape"], loader_shape(self.loader)
        if state["indices"] is not None:
            where = f"epoch {state['epoch']} after {state['batches']} of its {state['length']} batches"
        else:
            where = f"the start of epoch {state['epoch']}"
        return (
            f"This loader is not built like the one the place was saved from: "
            f"{describe_differences(saved, current, differences)}. The saved place ({where}) would give other "
            f"batches than the saved run's. Fix: build the DataLoader with {fix_text(saved, differences)}; or pass "
            f"strict=False to load_checkpoint to start epoch {self.next_epoch(state)} with this loader instead "
            "(the run then differs from the uninterrupted one)."
        )


def loader_generators(loader: DataLoader) -> list[tuple[str, torch.Generator]]:
    """The loader's own generator and its sampler's (and batch sampler's sampler's), each once."""
    owners = [("generator", loader), ("sampler.generator", getattr(loader, "sampler", None))]
    batch_sampler = getattr(loader, "batch_sampler", None)
    owners.append(("batch_sampler.sampler.generator", getattr(batch_sampler, "sampler", None)))
    found: list[tuple[str, torch.Generator]] = []
    for label, owner in owners:
        generator = getattr(owner, "generator", None)
        if isinstance(generator, torch.Generator) and all(generator is not seen for _, seen in found):
            found.append((label, generator))
    return found


class StatefulResumable:
    """torchdata's StatefulDataLoader, used through its own state_dict, with the same epoch/batches view."""

    def __init__(self, loader: Any) -> None:
        self.loader = loader
        self.epoch = 0
        self.batches = 0
        self._in_epoch = False
        self._loaded = False
        self._finished = False  # loaded from a save on an epoch's last batch

    def __getattr__(self, name: str) -> Any:
        if name == "loader":
            raise AttributeError(name)
        return getattr(self.loader, name)

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[Any]:
        if self._loaded:  # the loader continues the epoch its state_dict was saved in
            self._loaded = False
            if self._finished:  # saved on that epoch's last batch: torchdata's first iter() ends it, empty
                self._finished = False
                for _ in self.loader:
                    pass
        elif self._in_epoch:  # the last epoch was left mid-way: this is a new one
            self.epoch += 1
            self.batches = 0
        self._in_epoch = True
        for item in self.loader:
            self.batches += 1
            yield item
        self._in_epoch = False
        self.epoch += 1
        self.batches = 0

    @property
    def place(self) -> tuple[int, int]:
        """(epoch, batches) as a checkpoint records them: an epoch whose last batch was taken is finished."""
        if self._at_epoch_end():
            return self.epoch + 1, 0
        return self.epoch, self.batches

    def _at_epoch_end(self) -> bool:
        try:
            return self._in_epoch and self.batches >= len(self.loader) > 0
        except TypeError:  # an iterable dataset without a length: its end is only known when reached
            return False

    def state_dict(self) -> dict[str, Any]:
        epoch, batches = self.place
        return {
            "format": FORMAT + "+torchdata",
            "epoch": epoch,
            "batches": batches,
            "finished": self._at_epoch_end(),
            "loader": self.loader.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not isinstance(state, dict) or state.get("format") != FORMAT + "+torchdata":
            raise ValueError("This is not the place of an ipyrepro.resumable StatefulDataLoader.")
        self.loader.load_state_dict(state["loader"])
        self.epoch, self.batches = int(state["epoch"]), int(state["batches"])
        self._finished = bool(state.get("finished", False))
        self._in_epoch = self.batches > 0
        self._loaded = True


def resumable(loader: Any) -> ResumableLoader | StatefulResumable:
    """Wrap a DataLoader so that checkpoints hold its place and a resume continues mid-epoch."""
    if isinstance(loader, (ResumableLoader, StatefulResumable)):
        return loader
    if _is_stateful_dataloader(loader):
        return StatefulResumable(loader)
    if not isinstance(loader, DataLoader):
        raise TypeError(
            f"resumable() takes a torch.utils.data.DataLoader; got a {type(loader).__qualname__}. "
            "Fix: build a DataLoader over your dataset and pass that."
        )
    return ResumableLoader(loader)


def _is_stateful_dataloader(loader: Any) -> bool:
    import sys

    module = sys.modules.get("torchdata.stateful_dataloader")
    return module is not None and isinstance(loader, module.StatefulDataLoader)


def _check_loader(loader: DataLoader) -> None:
    if isinstance(loader.dataset, IterableDataset):
        raise ValueError(
            "resumable() replays a sampler's indices, and an IterableDataset has none. Fix: use torchdata's "
            "StatefulDataLoader (resumable uses its state_dict), or a map-style dataset."
        )
    if getattr(loader, "in_order", True) is False:
        raise ValueError(
            "This DataLoader has in_order=False: batches go to whichever worker is free, so which worker drew "
            "a batch's random augmentations is not known. Fix: build it with in_order=True (the default)."
        )


def _index_sampler(loader: DataLoader) -> Any:
    return loader.batch_sampler if loader.batch_sampler is not None else loader.sampler


def _replaying_loader(loader: DataLoader, plan: Epoch, start: int) -> DataLoader:
    """A DataLoader with `loader`'s settings over the plan's remaining batches; workers seeded as the originals."""
    workers = loader.num_workers
    rest = ReplaySampler(plan.batches[start:])
    options: dict[str, Any] = {
        "num_workers": workers,
        "pin_memory": loader.pin_memory,
        "timeout": loader.timeout,
        # the iterator draws a base seed for its workers: from a throwaway generator, so that a resume
        # draws nothing from the user's RNGs; WorkerSetup then seeds each worker as the original was
        "generator": torch.Generator(),
    }
    if loader.batch_sampler is not None:
        options["batch_sampler"] = rest
    else:
        options.update(sampler=rest, batch_size=None)
    if workers:
        offset = start % workers
        options.update(
            collate_fn=CollateWithState(loader.collate_fn, offset, workers),
            worker_init_fn=WorkerSetup(loader.worker_init_fn, plan.base_seed, offset, workers, plan.worker_states),
            multiprocessing_context=loader.multiprocessing_context,
            prefetch_factor=loader.prefetch_factor,
        )
    else:
        options["collate_fn"] = loader.collate_fn
    accepted = inspect.signature(DataLoader.__init__).parameters
    if "pin_memory_device" in accepted:
        options["pin_memory_device"] = getattr(loader, "pin_memory_device", "")
    if "in_order" in accepted:
        options["in_order"] = True
    return DataLoader(loader.dataset, **options)


def _encode_batches(batches: list[Any]) -> Any:
    """An epoch's indices as tensors (flat indices and batch sizes) when they are ints, else as they are."""
    flat: list[int] = []
    sizes: list[int] = []
    for batch in batches:
        items = batch if isinstance(batch, (list, tuple)) else None
        if items is None:
            if not isinstance(batch, int):
                return list(batches)
            flat.append(batch)
            sizes.append(-1)  # a single index (no automatic batching)
            continue
        if not all(isinstance(index, int) for index in items):
            return list(batches)
        flat.extend(items)
        sizes.append(len(items))
    return {"flat": torch.tensor(flat, dtype=torch.int64), "sizes": torch.tensor(sizes, dtype=torch.int64)}


def _decode_batches(encoded: Any) -> list[Any]:
    if not isinstance(encoded, dict):
        return list(encoded)
    flat = encoded["flat"].tolist()
    batches: list[Any] = []
    position = 0
    for size in encoded["sizes"].tolist():
        if size < 0:
            batches.append(flat[position])
            position += 1
        else:
            batches.append(flat[position : position + size])
            position += size
    return batches
