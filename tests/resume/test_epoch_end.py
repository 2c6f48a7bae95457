"""A save on an epoch's last batch records the epoch as finished: the docs' loop, resumed in a fresh process,
takes the uninterrupted run's steps and ends with its weights, also after the last batch of the last epoch;
verify_resume checks saves on epoch boundaries and the number of steps the resumed run takes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import ipyrepro

from .training import build, build_objects, load_without_loader, run_phase, save_without_loader, step


def _phase(phase: str, stop_epoch: int, folder: Path) -> dict:
    run_phase("epoch_end_run", phase, stop_epoch, folder)
    name = "stop" if phase == "stop" else phase
    return torch.load(folder / f"{name}.pt", weights_only=True)


@pytest.mark.parametrize("stop_epoch", [0, 2], ids=["first-epoch-end", "last-epoch-end"])
def test_a_save_on_an_epochs_last_batch_resumes_with_the_uninterrupted_steps_and_weights(tmp_path, stop_epoch):
    full = _phase("full", stop_epoch, tmp_path)
    _phase("stop", stop_epoch, tmp_path)
    resumed = _phase("resume", stop_epoch, tmp_path)
    assert full["steps"] == resumed["steps"] == 15
    for name, value in full["model"].items():
        assert torch.equal(value, resumed["model"][name]), name


def test_the_place_of_a_loader_on_its_last_batch_is_the_next_epoch():
    loader = ipyrepro.resumable(build_objects(0)["loader"])
    for _ in loader:
        pass  # the for loop asked for one more: the epoch is finished
    batches = iter(loader)
    for _ in range(len(loader)):
        next(batches)  # the last batch was taken; the loop that took it has not asked for the next yet
    assert (loader.epoch, loader.batches) == (1, 5)
    state = loader.state_dict()
    assert (state["epoch"], state["batches"], state["indices"]) == (2, 0, None)
    fresh = ipyrepro.resumable(build_objects(0)["loader"])
    fresh.load_state_dict(state)
    assert (fresh.epoch, fresh.batches) == (2, 0)


@pytest.mark.parametrize(("steps", "at"), [(10, 5), (15, 10), (12, 5)])
def test_verify_resume_at_an_epoch_boundary_is_identical_with_the_same_steps(steps, at):
    report = ipyrepro.verify_resume(build, step, steps=steps, at=at)  # 5 batches an epoch
    assert report.identical, str(report)
    assert report.steps == report.resumed_steps == steps


def test_verify_resume_names_a_resumed_run_that_takes_other_steps():
    """A checkpoint without the loader's place: the loop starts over at epoch 0 after the load."""
    report = ipyrepro.verify_resume(build, step, steps=10, at=5, save=save_without_loader, load=load_without_loader)
    assert not report.identical
    assert (report.steps, report.resumed_steps) == (10, 15)
    assert "The resumed run took 15 steps, the uninterrupted one 10" in str(report)


def test_torchdatas_loader_saved_on_an_epochs_last_batch_resumes_with_the_next_epoch():
    stateful = pytest.importorskip("torchdata.stateful_dataloader")

    def loader():
        return ipyrepro.resumable(stateful.StatefulDataLoader(list(range(12)), batch_size=4, shuffle=True))

    saving = loader()
    for _ in saving:
        state = saving.state_dict()  # the last one is taken on the epoch's last batch
    fresh = loader()
    fresh.load_state_dict(state)
    assert (state["epoch"], state["batches"], fresh.epoch) == (1, 0, 1)
    steps = sum(1 for epoch in range(fresh.epoch, 3) for _ in fresh)
    assert steps == 6  # epochs 1 and 2, as in the run that never stopped
