"""resumable(loader): the same batches as the DataLoader itself, and a mid-epoch resume that continues with the
same remaining order and the same random augmentations, without loading the skipped samples."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, DistributedSampler, IterableDataset

import ipyrepro

from .training import AugmentedData


def _seed(seed: int) -> None:
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed)


def _rngs() -> tuple:
    return torch.get_rng_state(), random.getstate(), np.random.get_state()


def _set_rngs(saved: tuple) -> None:
    torch.set_rng_state(saved[0])
    random.setstate(saved[1])
    np.random.set_state(saved[2])


def _equal(a: list, b: list) -> bool:
    return len(a) == len(b) and all(
        all(torch.equal(x, y) for x, y in zip(first, second)) for first, second in zip(a, b)
    )


@pytest.mark.parametrize("workers", [0, 2])
def test_it_gives_the_batches_the_dataloader_itself_gives(workers):
    """The same draws in the same order (workers' base seed, then the sampler), so wrapping changes nothing."""
    _seed(3)
    plain = list(DataLoader(AugmentedData(), batch_size=8, shuffle=True, num_workers=workers))
    _seed(3)
    loader = ipyrepro.resumable(DataLoader(AugmentedData(), batch_size=8, shuffle=True, num_workers=workers))
    assert _equal(plain, list(loader))
    assert (loader.epoch, loader.batches) == (1, 0)


LOADERS = {
    "shuffle": lambda workers: DataLoader(AugmentedData(), batch_size=8, shuffle=True, num_workers=workers),
    "generator": lambda workers: DataLoader(
        AugmentedData(), batch_size=8, shuffle=True, num_workers=workers, generator=torch.Generator().manual_seed(9)
    ),
    "distributed": lambda workers: DataLoader(
        AugmentedData(),
        batch_size=4,
        num_workers=workers,
        sampler=DistributedSampler(AugmentedData(), num_replicas=2, rank=1, shuffle=True, seed=4),
    ),
    "persistent": lambda workers: DataLoader(
        AugmentedData(), batch_size=8, shuffle=True, num_workers=workers, persistent_workers=workers > 0
    ),
    "no batching": lambda workers: DataLoader(AugmentedData(8), batch_size=None, shuffle=True, num_workers=workers),
}


def _epochs(loader, epochs: int, stop_after: int | None = None) -> list:
    """Iterate `epochs` epochs (DistributedSampler.set_epoch before each); stop after `stop_after` batches."""
    seen = []
    for epoch in range(loader.epoch, epochs):
        if isinstance(loader.sampler, DistributedSampler) and loader.batches == 0:
            loader.sampler.set_epoch(epoch)
        for batch in loader:
            seen.append(batch)
            if stop_after is not None and len(seen) == stop_after:
                return seen
    return seen


@pytest.mark.parametrize("workers", [0, 2])
@pytest.mark.parametrize("kind", list(LOADERS))
def test_a_mid_epoch_resume_continues_with_the_same_order_and_augmentations(kind, workers):
    if kind == "persistent" and workers == 0:
        pytest.skip("persistent workers need workers")
    make = LOADERS[kind]
    _seed(5)
    uninterrupted = _epochs(ipyrepro.resumable(make(workers)), 3)
    per_epoch = len(uninterrupted) // 3
    stop = per_epoch + per_epoch // 2 + 1  # inside the second epoch, not on a worker boundary
    _seed(5)
    first = ipyrepro.resumable(make(workers))
    before = _epochs(first, 3, stop_after=stop)
    place, rngs = first.state_dict(), _rngs()
    assert (place["epoch"], place["batches"]) == (1, stop - per_epoch)

    _seed(1234)  # a restarted process: other states, a fresh loader
    resumed = ipyrepro.resumable(make(workers))
    resumed.load_state_dict(place)
    _set_rngs(rngs)  # what load_checkpoint does with the checkpoint's RNG states
    after = _epochs(resumed, 3)
    assert _equal(uninterrupted, before + after)


def test_a_resume_loads_only_the_remaining_samples():
    _seed(0)
    first = ipyrepro.resumable(DataLoader(AugmentedData(), batch_size=8, shuffle=True))
    batches = iter(first)
    next(batches), next(batches)
    place = first.state_dict()
    resumed = ipyrepro.resumable(DataLoader(AugmentedData(), batch_size=8, shuffle=True))
    resumed.load_state_dict(place)
    rest = list(resumed)
    assert len(rest) == 3
    expected = [index for batch in place["indices"]["flat"].split(8)[2:] for index in batch.tolist()]
    assert resumed.dataset.fetched == expected  # the 16 skipped samples were never loaded


def test_iterating_again_after_a_break_continues_the_epoch_where_it_stopped():
    _seed(0)
    whole = ipyrepro.resumable(DataLoader(AugmentedData(), batch_size=8, shuffle=True))
    expected = list(whole) + list(whole)
    _seed(0)
    loader = ipyrepro.resumable(DataLoader(AugmentedData(), batch_size=8, shuffle=True))
    taken = []
    for batch in loader:
        taken.append(batch)
        if len(taken) == 2:
            break
    assert (loader.epoch, loader.batches) == (0, 2)
    taken += list(loader)  # the rest of epoch 0
    assert (loader.epoch, loader.batches) == (1, 0)
    for batch in loader:
        taken.append(batch)
        if loader.batches == 5:
            break  # after its last batch: the next iteration starts epoch 2, it does not come up empty
    assert len(list(loader)) == 5 and loader.epoch == 3
    assert _equal(expected, taken[:10])


def test_an_iterable_dataset_is_refused_with_the_fix():
    class Stream(IterableDataset):
        def __iter__(self):
            return iter(range(3))

    with pytest.raises(ValueError, match="IterableDataset has none.*StatefulDataLoader"):
        ipyrepro.resumable(DataLoader(Stream()))


def test_a_place_from_another_number_of_workers_is_refused_and_changes_nothing():
    first = ipyrepro.resumable(DataLoader(AugmentedData(), batch_size=8, shuffle=True, num_workers=0))
    next(iter(first))
    other = ipyrepro.resumable(DataLoader(AugmentedData(), batch_size=8, shuffle=True, num_workers=2))
    with pytest.raises(
        ValueError, match="num_workers 0 at the save, 2 now.*Fix: build the DataLoader with num_workers=0"
    ):
        other.load_state_dict(first.state_dict())
    assert (other.epoch, other.batches) == (0, 0)


def test_torchdatas_stateful_dataloader_resumes_through_its_own_state_dict():
    stateful = pytest.importorskip("torchdata.stateful_dataloader")
    make = lambda: stateful.StatefulDataLoader(list(range(20)), batch_size=4, shuffle=True)  # noqa: E731
    _seed(2)
    whole = ipyrepro.resumable(make())
    uninterrupted = list(whole) + list(whole)
    _seed(2)
    first = ipyrepro.resumable(make())
    assert type(first).__name__ == "StatefulResumable"
    batches = iter(first)
    before = [next(batches) for _ in range(3)]
    place, rngs = first.state_dict(), _rngs()
    _seed(77)
    resumed = ipyrepro.resumable(make())
    resumed.load_state_dict(place)
    _set_rngs(rngs)
    assert (resumed.epoch, resumed.batches) == (0, 3)
    after = list(resumed) + list(resumed)
    assert [b.tolist() for b in before + after] == [b.tolist() for b in uninterrupted]
    assert resumed.epoch == 2
