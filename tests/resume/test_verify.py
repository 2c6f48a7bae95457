"""verify_resume: it passes ipyrepro's checkpoints, and names what a user's checkpoint code forgot."""

from __future__ import annotations

import random

import pytest
import torch

import ipyrepro

from . import training


def test_ipyrepros_checkpoints_resume_identically():
    ipyrepro.enable(4, reseed="source")
    random_before, torch_before = random.getstate(), torch.get_rng_state()
    report = ipyrepro.verify_resume(training.build, training.step, steps=12, at=7)
    assert report.identical and report.first_divergent_step is None and report.missing == []
    assert str(report).startswith("Resume verified: the resumed run equals the uninterrupted one at every step")
    assert random.getstate() == random_before and torch.equal(torch.get_rng_state(), torch_before)
    status = ipyrepro.status()
    assert (status.enabled, status.seed, status.reseed, status.pending_restore) == (True, 4, "source", None)


def test_a_checkpoint_of_model_and_optimizer_only_names_the_step_and_the_rng_it_lacks():
    report = ipyrepro.verify_resume(
        training.build,
        training.step,
        steps=12,
        at=7,
        save=training.save_model_and_optimizer,
        load=training.load_model_and_optimizer,
    )
    assert not report.identical
    assert report.first_divergent_step == 8
    assert {"torch CPU RNG", "Python random", "NumPy global RNG", "DataLoader"} <= set(report.missing)
    text = str(report)
    assert "diverges from step 8" in text
    assert "torch CPU RNG not restored: what it draws (dropout masks" in text
    assert ") differs from step 8" in text


def test_a_checkpoint_that_forgets_the_loaders_place_names_the_dataloader():
    report = ipyrepro.verify_resume(
        training.build,
        training.step,
        steps=12,
        at=7,
        save=training.save_without_loader,
        load=training.load_without_loader,
    )
    assert not report.identical
    assert report.first_divergent_step == 8
    assert report.missing == ["DataLoader"]
    assert "DataLoader restarted its epoch: at the save it was in epoch 1 with 2 batches consumed" in str(report)


def test_in_a_fresh_process_with_workers():
    report = ipyrepro.verify_resume(training.build_workers, training.step, steps=9, at=6, fresh_process=True)
    assert report.identical, str(report)
    assert "in a fresh process" in str(report)


def test_a_fresh_process_needs_importable_functions():
    with pytest.raises(ValueError, match="fresh_process=True runs the load in a new Python process.*top-level"):
        ipyrepro.verify_resume(lambda: training.build(), training.step, steps=4, at=2, fresh_process=True)


@pytest.mark.parametrize(
    ("steps", "at", "message"),
    [(1, 1, "steps must be an int of at least 2"), (5, 5, "at must be an int from 1 to steps - 1"), (5, 0, "at")],
)
def test_bad_arguments_are_named(steps, at, message):
    with pytest.raises(ValueError, match=message):
        ipyrepro.verify_resume(training.build, training.step, steps=steps, at=at)


def test_build_must_name_its_loader():
    with pytest.raises(ValueError, match="DataLoader under 'loader'"):
        ipyrepro.verify_resume(lambda: {"model": torch.nn.Linear(1, 1)}, training.step, steps=3, at=1)


@pytest.mark.parametrize(("at", "fresh_process"), [(5, False), (10, True)], ids=["in-process", "fresh-process"])
def test_a_save_on_an_epoch_boundary_resumes_identically_with_the_same_steps(at, fresh_process):
    """5 batches an epoch: the save falls on an epoch's last batch, with two epochs still to go or one."""
    report = ipyrepro.verify_resume(training.build, training.step, steps=15, at=at, fresh_process=fresh_process)
    assert report.identical, str(report)
    assert report.steps == report.resumed_steps == 15
    assert report.missing == []
