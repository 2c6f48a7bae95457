"""A checkpoint records how its loader was built (batch size, dataset length, sampler, drop_last, workers,
the dataset's indices); a loader built otherwise is refused before anything is loaded, naming each
difference and the fix, and `strict=False` starts the next epoch with it instead, saying so."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch.utils.data import DataLoader, Subset

import ipyrepro
from ipyrepro.core.state import ReproWarning
from ipyrepro.resume import CheckpointError

from .test_checkpoint import _fingerprint, _same, _trained
from .training import AugmentedData, build_objects


def _with_loader(**options) -> dict:
    dataset = options.pop("dataset", None) or AugmentedData()
    objects = build_objects(0)
    settings = {"batch_size": 8, "shuffle": True, **options}
    objects["loader"] = ipyrepro.resumable(DataLoader(dataset, **settings))
    return objects


@pytest.fixture
def saved(tmp_path):
    """A checkpoint saved mid-epoch (epoch 0, 3 of 5 batches) from a loader with batch size 8 over 40 samples."""
    path = tmp_path / "checkpoint.pt"
    ipyrepro.save_checkpoint(path, **_trained(3))
    return path


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"batch_size": 16}, ["batch size 8 at the save, 16 now", "batch_size=8"]),
        ({"dataset": AugmentedData(30)}, ["dataset length 40 at the save, 30 now", "a dataset of 40 samples"]),
        ({"dataset": AugmentedData(50)}, ["dataset length 40 at the save, 50 now", "a dataset of 40 samples"]),
        ({"drop_last": True}, ["drop_last False at the save, True now", "drop_last=False"]),
        ({"shuffle": False}, ["sampler RandomSampler at the save, SequentialSampler now", "a RandomSampler sampler"]),
        ({"dataset": Subset(AugmentedData(), list(range(39, -1, -1)))}, ["dataset indices differ"]),
    ],
    ids=["batch-size", "shorter-dataset", "longer-dataset", "drop-last", "sampler", "indices"],
)
def test_a_loader_built_otherwise_is_refused_before_anything_is_loaded(saved, options, named):
    fresh = _with_loader(**options)
    before = _fingerprint(fresh)
    with pytest.raises(CheckpointError) as raised:
        ipyrepro.load_checkpoint(saved, **fresh)
    message = str(raised.value)
    for text in named:
        assert text in message
    assert "Nothing was changed" in message and "Fix: build the DataLoader with" in message
    assert "strict=False" in message
    assert _same(before, _fingerprint(fresh))


def test_every_difference_is_named_at_once(saved):
    fresh = _with_loader(batch_size=4, dataset=AugmentedData(20))
    with pytest.raises(CheckpointError, match=r"batch size 8 at the save, 4 now; dataset length 40 at the save, 20"):
        ipyrepro.load_checkpoint(saved, **fresh)


def test_a_persistent_workers_checkpoint_is_refused_by_a_loader_without(tmp_path):
    path = tmp_path / "checkpoint.pt"
    ipyrepro.save_checkpoint(
        path,
        loader=ipyrepro.resumable(DataLoader(AugmentedData(), batch_size=8, num_workers=2, persistent_workers=True)),
    )
    fresh = ipyrepro.resumable(DataLoader(AugmentedData(), batch_size=8, num_workers=2))
    with pytest.raises(
        CheckpointError, match=r"persistent_workers True at the save, False now.*persistent_workers=True"
    ):
        ipyrepro.load_checkpoint(path, loader=fresh)
    assert (fresh.epoch, fresh.batches) == (0, 0)


def test_strict_false_loads_the_rest_and_starts_the_next_epoch_with_the_new_loader(saved):
    fresh = _with_loader(batch_size=16)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = ipyrepro.load_checkpoint(saved, strict=False, **fresh)
    loader = fresh["loader"]
    assert (loader.epoch, loader.batches) == (1, 0)
    assert "starts epoch 1 from its first batch" in str(report)
    assert any(issubclass(w.category, ReproWarning) and "strict=False" in str(w.message) for w in caught)
    saved_model = torch.load(saved, weights_only=True)["body"]["objects"]["model"]
    assert all(torch.equal(value, fresh["model"].state_dict()[name]) for name, value in saved_model.items())
    assert [len(batch[0]) for batch in loader] == [16, 16, 8]


def test_a_loader_built_the_same_way_loads_without_a_word(saved):
    fresh = _with_loader()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ipyrepro.load_checkpoint(saved, **fresh)
    assert (fresh["loader"].epoch, fresh["loader"].batches) == (0, 3)
