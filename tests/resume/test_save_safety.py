"""A save validates its target first (the message names the checkpoint, with a fix), keeps an existing
file's permissions (a new one gets the umask's), and removes the partial files of a dead writer of the
same checkpoint, never a live writer's."""

from __future__ import annotations

import fcntl
import os
import stat
import subprocess
import sys

import pytest
import torch

import ipyrepro
from ipyrepro.core.userfiles import PathProblem


def _model() -> torch.nn.Module:
    return torch.nn.Linear(3, 3)


def test_a_missing_folder_names_the_checkpoint_with_a_fix(tmp_path):
    path = tmp_path / "missing" / "run.pt"
    with pytest.raises(PathProblem) as raised:
        ipyrepro.save_checkpoint(path, model=_model())
    message = str(raised.value)
    assert str(path) in message and "does not exist" in message
    assert "\nFix: create the folder" in message
    assert ".partial" not in message
    assert not (tmp_path / "missing").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_folder_names_the_checkpoint_with_a_fix(tmp_path):
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(PathProblem, match=r"run\.pt.*not writable.*\nFix: save to a folder you can write to"):
            ipyrepro.save_checkpoint(folder / "run.pt", model=_model())
    finally:
        folder.chmod(0o755)


def test_a_folder_as_the_target_is_refused_before_anything_is_written(tmp_path):
    with pytest.raises(PathProblem, match=r"it is a folder.*\nFix:"):
        ipyrepro.save_checkpoint(tmp_path, model=_model())
    assert list(tmp_path.iterdir()) == []


def test_a_save_keeps_the_files_permissions(tmp_path):
    path = tmp_path / "run.pt"
    ipyrepro.save_checkpoint(path, model=_model())
    path.chmod(0o644)
    ipyrepro.save_checkpoint(path, model=_model())
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    path.chmod(0o604)
    ipyrepro.save_checkpoint(path, model=_model())
    assert stat.S_IMODE(path.stat().st_mode) == 0o604


def test_a_new_checkpoint_gets_the_umasks_permissions(tmp_path):
    previous = os.umask(0o027)
    try:
        ipyrepro.save_checkpoint(tmp_path / "run.pt", model=_model())
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "run.pt").stat().st_mode) == 0o640


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_only_a_dead_writers_partial_files_of_that_checkpoint_are_removed(tmp_path):
    path = tmp_path / "run.pt"
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        dead = tmp_path / f".run.pt.abc123.{_dead_pid()}.partial"
        live = tmp_path / f".run.pt.def456.{sleeper.pid}.partial"
        mine = tmp_path / f".run.pt.ghi789.{os.getpid()}.partial"
        other = tmp_path / f".other.pt.jkl012.{_dead_pid()}.partial"
        locked = tmp_path / f".run.pt.mno345.{_dead_pid()}.partial"  # a writer elsewhere holds its lock
        for partial in (dead, live, mine, other, locked):
            partial.write_bytes(b"half a checkpoint")
        with open(locked, "rb") as held:
            fcntl.flock(held.fileno(), fcntl.LOCK_EX)
            ipyrepro.save_checkpoint(path, model=_model())
        assert not dead.exists()
        assert live.exists() and mine.exists() and other.exists() and locked.exists()
        ipyrepro.load_checkpoint(path, model=_model())  # the lock is free now: a load removes it
        assert not locked.exists() and live.exists()
    finally:
        sleeper.kill()
        sleeper.wait()
