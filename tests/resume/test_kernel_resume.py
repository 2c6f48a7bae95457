"""Per-cell re-seeding and a restore, in real kernels: a restarted kernel that loads a checkpoint ends with the
weights of the notebook that never stopped, whether the training cell itself saved and was interrupted, or a
save cell came before a later training cell. A kernel restart is a fresh kernel."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ..kernels import Kernel, kernel

pytestmark = pytest.mark.kernel

ROOT = Path(__file__).resolve().parents[2]

SETUP = [
    ("setup-on", "%load_ext ipyrepro\n%repro on --seed 3 --reseed {mode}"),
    (
        "setup-objects",
        "import os, hashlib, torch, ipyrepro\n"
        "from tests.resume.training import build_objects, step\n"
        "objects = build_objects(0)\n"
        "loader = objects['loader'] = ipyrepro.resumable(objects['loader'])\n"
        "CHECKPOINT, STOP = {checkpoint!r}, {stop!r}",
    ),
]
LOAD = ("load", "report = ipyrepro.load_checkpoint(CHECKPOINT, **objects)\nprint(report)")
STATUS = ("status", "%repro status")
WEIGHTS = (
    "weights",
    "hashlib.sha256(b''.join(p.detach().numpy().tobytes() for p in objects['model'].parameters())).hexdigest()",
)

# (a) the training cell saves mid-loop and is interrupted (a KeyboardInterrupt, when the STOP file exists)
TRAIN_AND_SAVE = (
    "train",
    "for epoch in range(loader.epoch, 3):\n"
    "    for batch in loader:\n"
    "        step(objects, batch)\n"
    "        done = loader.epoch * len(loader) + loader.batches\n"
    "        if done == 8:\n"
    "            ipyrepro.save_checkpoint(CHECKPOINT, **objects)\n"
    "        if done == 10 and os.path.exists(STOP):\n"
    "            raise KeyboardInterrupt\n",
)

# (b) train, save in a cell of its own, train on in a later cell
TRAIN_FIRST = ("train-first", "batches = iter(loader)\nfor _ in range(3):\n    step(objects, next(batches))")
SAVE = ("save", "ipyrepro.save_checkpoint(CHECKPOINT, **objects)")
TRAIN_ON = ("train-on", "for epoch in range(loader.epoch, 2):\n    for batch in loader:\n        step(objects, batch)")


def _kernel():
    env = {"PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return kernel(env=env, cwd=str(ROOT))


def _run(k: Kernel, cells: list[tuple[str, str]], mode: str, folder: Path) -> list:
    replies = []
    for cell_id, code in cells:
        code = code.format(mode=mode, checkpoint=str(folder / "checkpoint.pt"), stop=str(folder / "STOP"))
        replies.append(k.run(code, cell_id=cell_id, timeout=180))
    return replies


def _ok(replies: list) -> None:
    for reply in replies:
        assert reply.status == "ok", reply.error or reply.stderr


@pytest.mark.parametrize("mode", ["cell", "source"])
def test_an_interrupted_training_cell_rerun_after_a_restart_ends_with_the_uninterrupted_weights(tmp_path, mode):
    with _kernel() as k:
        replies = _run(k, [*SETUP, TRAIN_AND_SAVE, WEIGHTS], mode, tmp_path)
    _ok(replies)
    uninterrupted = replies[-1].text()

    (tmp_path / "STOP").touch()
    with _kernel() as k:
        interrupted = _run(k, [*SETUP, TRAIN_AND_SAVE, WEIGHTS], mode, tmp_path)
    assert interrupted[-2].status == "error" and "KeyboardInterrupt" in interrupted[-2].error
    assert interrupted[-1].text() != uninterrupted
    (tmp_path / "STOP").unlink()

    with _kernel() as k:  # the restart: set-up cells, a load cell, a look at status, the same training cell
        resumed = _run(k, [*SETUP, LOAD, STATUS, TRAIN_AND_SAVE, WEIGHTS, STATUS], mode, tmp_path)
    _ok(resumed)
    load, status_before, status_after = resumed[2], resumed[3], resumed[-1]
    assert "will not be re-seeded when it runs next" in load.stdout
    assert "pending restore" in status_before.text()
    assert "pending restore" not in status_after.text() and "ipyrepro is ON" in status_after.text()
    assert resumed[-2].text() == uninterrupted


@pytest.mark.parametrize("mode", ["cell", "source"])
def test_a_save_cell_then_a_later_training_cell_resumes_to_the_same_weights(tmp_path, mode):
    with _kernel() as k:
        replies = _run(k, [*SETUP, TRAIN_FIRST, SAVE, TRAIN_ON, WEIGHTS], mode, tmp_path)
    _ok(replies)
    uninterrupted = replies[-1].text()

    with _kernel() as k:  # the restart: set-up cells, a load cell and the later cell
        resumed = _run(k, [*SETUP, LOAD, TRAIN_ON, WEIGHTS], mode, tmp_path)
    _ok(resumed)
    assert resumed[-1].text() == uninterrupted


def test_without_the_restore_rule_the_rerun_training_cell_would_differ(tmp_path):
    """The control: the same restart, but re-seeding the training cell anyway (a load through plain torch
    of the same checkpoint's states, which sets no pending restore), ends elsewhere."""
    with _kernel() as k:
        reference = _run(k, [*SETUP, TRAIN_AND_SAVE, WEIGHTS], "cell", tmp_path)
    _ok(reference)
    plain_load = (
        "load",
        "from ipyrepro.resume.checkpoint import load_into\nload_into(CHECKPOINT, objects, pending=False)",
    )
    with _kernel() as k:
        resumed = _run(k, [*SETUP, plain_load, TRAIN_AND_SAVE, WEIGHTS], "cell", tmp_path)
    _ok(resumed)
    assert resumed[-1].text() != reference[-1].text()
