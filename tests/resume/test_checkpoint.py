"""save_checkpoint / load_checkpoint: a resume in a fresh process equals the run that never stopped, files are
written atomically and checked whole, and a load given other objects than were saved says so."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import ipyrepro
from ipyrepro.resume import CheckpointError

from .training import build_objects, repo_env, run_phase, step


def _phase(phase: str, workers: int, folder: Path) -> None:
    run_phase("fresh_run", phase, workers, folder)


@pytest.mark.parametrize("workers", [0, 2])
def test_a_resume_in_a_fresh_process_ends_with_the_weights_of_the_uninterrupted_run(tmp_path, workers):
    """Dropout, a shuffling DataLoader whose dataset draws augmentations (in its workers with 2), saved
    mid-epoch, loaded in another process seeded otherwise into freshly built objects: bitwise the same."""
    _phase("full", workers, tmp_path)
    _phase("stop", workers, tmp_path)
    _phase("resume", workers, tmp_path)
    full = torch.load(tmp_path / "full.pt", weights_only=True)
    resumed = torch.load(tmp_path / "resume.pt", weights_only=True)
    assert list(full) == list(resumed)
    for name in full:
        assert torch.equal(full[name], resumed[name]), name


def _objects(workers: int = 0) -> dict:
    objects = build_objects(workers)
    objects["loader"] = ipyrepro.resumable(objects["loader"])
    return objects


def _trained(steps: int = 3) -> dict:
    torch.manual_seed(0)
    objects = _objects()
    batches = iter(objects["loader"])
    for _ in range(steps):
        step(objects, next(batches))
    return objects


def _fingerprint(objects: dict) -> tuple:
    """Everything a load could change: weights, optimizer and scheduler states, the place, every RNG."""
    model = [value.clone() for value in objects["model"].state_dict().values()]
    optimizer = repr(objects["optimizer"].state_dict()["param_groups"])
    states = objects["optimizer"].state_dict()["state"].values()
    moments = [value.clone() for state in states for value in state.values()]
    loader = objects["loader"]
    rngs = (random.getstate(), repr(np.random.get_state()), torch.get_rng_state().clone())
    return model, optimizer, moments, objects["scheduler"].state_dict(), (loader.epoch, loader.batches), rngs


def _same(a: tuple, b: tuple) -> bool:
    def equal(x, y) -> bool:
        if isinstance(x, torch.Tensor):
            return torch.equal(x, y)
        if isinstance(x, (list, tuple)):
            return len(x) == len(y) and all(equal(i, j) for i, j in zip(x, y))
        return x == y

    return equal(a, b)


def _inside_the_largest_tensor(path: Path) -> int:
    """The offset of a byte in the middle of the checkpoint's largest tensor's data (zip records are padded)."""
    import zipfile

    with zipfile.ZipFile(path) as archive:
        record = max((i for i in archive.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
        with archive.open(record) as stream:
            stream.read(1)
            start = stream._orig_compress_start  # where the record's data begins in the file
    return start + record.file_size // 2


def test_a_corrupted_checkpoint_raises_and_changes_nothing(tmp_path):
    path = tmp_path / "checkpoint.pt"
    ipyrepro.save_checkpoint(path, **_trained(3))
    data = bytearray(path.read_bytes())
    data[_inside_the_largest_tensor(path)] ^= 0xFF  # torch.load alone would not notice
    path.write_bytes(bytes(data))
    fresh = _trained(2)
    before = _fingerprint(fresh)
    with pytest.raises(CheckpointError, match=r"corrupted.*Nothing was changed"):
        ipyrepro.load_checkpoint(path, **fresh)
    assert _same(before, _fingerprint(fresh))


def test_a_truncated_checkpoint_raises_and_changes_nothing(tmp_path):
    path = tmp_path / "checkpoint.pt"
    ipyrepro.save_checkpoint(path, **_trained(3))
    path.write_bytes(path.read_bytes()[:-300])
    fresh = _trained(2)
    before = _fingerprint(fresh)
    with pytest.raises(CheckpointError, match=r"truncated or corrupted.*Nothing was changed.*earlier checkpoint"):
        ipyrepro.load_checkpoint(path, **fresh)
    assert _same(before, _fingerprint(fresh))


def test_a_file_that_needs_a_full_unpickle_is_refused(tmp_path):
    path = tmp_path / "checkpoint.pt"
    torch.save({"format": "ipyrepro-checkpoint/1", "body": {"loader": Path("x")}}, path)  # a pickled class
    with pytest.raises(CheckpointError, match="objects other than tensors and plain values"):
        ipyrepro.load_checkpoint(path, **_trained(1))


def test_a_file_that_is_no_ipyrepro_checkpoint_is_named_so(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save(_trained(1)["model"].state_dict(), path)
    with pytest.raises(CheckpointError, match="not an ipyrepro checkpoint"):
        ipyrepro.load_checkpoint(path, model=torch.nn.Linear(1, 1))


def test_a_save_that_is_killed_midway_leaves_the_previous_checkpoint_loadable(tmp_path):
    """The save goes to a temporary file renamed over the target: a process killed while writing a big
    checkpoint leaves the previous one as it was."""
    path = tmp_path / "checkpoint.pt"
    ipyrepro.save_checkpoint(path, model=torch.nn.Linear(3, 3))
    previous = path.read_bytes()
    script = (
        "import torch, ipyrepro, sys\n"
        "model = torch.nn.Linear(6000, 6000)\n"  # 144 MB: long enough to be killed while writing
        "ipyrepro.save_checkpoint(sys.argv[1], model=model)\n"
    )
    writer = subprocess.Popen([sys.executable, "-c", script, str(path)], env=repo_env())
    deadline = time.monotonic() + 120
    partial = []
    while time.monotonic() < deadline and writer.poll() is None:
        partial = [p for p in tmp_path.iterdir() if p.name.endswith(".partial") and p.stat().st_size > 1_000_000]
        if partial:
            break
        time.sleep(0.01)
    assert partial, "the writer never got to write its temporary file"
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait()
    assert path.read_bytes() == previous
    model = torch.nn.Linear(3, 3)
    ipyrepro.load_checkpoint(path, model=model)
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]  # the load removed the dead writer's file


def test_a_sigkilled_save_leaves_nothing_after_the_next_save(tmp_path):
    path = tmp_path / "run.pt"
    script = (
        "import torch, ipyrepro, sys\n"
        "model = torch.nn.Linear(6000, 6000)\n"
        "ipyrepro.save_checkpoint(sys.argv[1], model=model)\n"
    )
    writer = subprocess.Popen([sys.executable, "-c", script, str(path)], env=repo_env())
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and writer.poll() is None:
        if any(p.name.endswith(".partial") and p.stat().st_size > 1_000_000 for p in tmp_path.iterdir()):
            break
        time.sleep(0.01)
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait()
    left = [p.name for p in tmp_path.iterdir()]
    assert left and all(name.startswith(".run.pt.") and name.endswith(".partial") for name in left)
    ipyrepro.save_checkpoint(path, model=torch.nn.Linear(3, 3))
    assert [p.name for p in tmp_path.iterdir()] == ["run.pt"]


def test_a_load_given_fewer_objects_loads_them_and_names_the_rest(tmp_path):
    path = tmp_path / "checkpoint.pt"
    ipyrepro.save_checkpoint(path, **_trained(4))
    fresh = _objects()
    with pytest.warns(ipyrepro.ReproWarning, match=r"also holds optimizer, scheduler, loader"):
        report = ipyrepro.load_checkpoint(path, model=fresh["model"])
    assert report.loaded == ["model"]
    assert report.not_loaded == ["optimizer", "scheduler", "loader"]
    assert "not given, so not loaded: optimizer, scheduler, loader" in str(report)


def test_a_load_given_an_object_that_was_not_saved_raises_and_changes_nothing(tmp_path):
    path = tmp_path / "checkpoint.pt"
    ipyrepro.save_checkpoint(path, model=_trained(3)["model"])
    fresh = _objects()
    before = _fingerprint(fresh)
    with pytest.raises(CheckpointError, match=r"holds no optimizer; it holds model.*Nothing was changed"):
        ipyrepro.load_checkpoint(path, model=fresh["model"], optimizer=fresh["optimizer"])
    assert _same(before, _fingerprint(fresh))


def test_a_load_into_another_kind_of_object_raises_and_changes_nothing(tmp_path):
    path = tmp_path / "checkpoint.pt"
    objects = _trained(3)
    ipyrepro.save_checkpoint(path, model=objects["model"], optimizer=objects["optimizer"])
    fresh = _objects()
    sgd = torch.optim.SGD(fresh["model"].parameters(), lr=0.1)
    before = [value.clone() for value in fresh["model"].state_dict().values()]
    with pytest.raises(CheckpointError, match=r"optimizer was saved from a torch.optim.adam.Adam"):
        ipyrepro.load_checkpoint(path, model=fresh["model"], optimizer=sgd)
    assert all(torch.equal(a, b) for a, b in zip(before, fresh["model"].state_dict().values()))


def test_a_model_of_another_shape_raises_before_anything_is_loaded(tmp_path):
    path = tmp_path / "checkpoint.pt"
    ipyrepro.save_checkpoint(path, model=torch.nn.Linear(4, 4), optimizer=torch.optim.SGD([torch.zeros(1)], lr=1))
    model = torch.nn.Linear(4, 5)
    state = [value.clone() for value in model.state_dict().values()]
    with pytest.raises(CheckpointError, match=r"does not fit this Linear \(other shape: weight, bias\)"):
        ipyrepro.load_checkpoint(path, model=model)
    assert all(torch.equal(a, b) for a, b in zip(state, model.state_dict().values()))


def test_a_plain_dataloader_is_refused_with_the_fix(tmp_path):
    loader = torch.utils.data.DataLoader(list(range(4)))
    with pytest.raises(TypeError, match=r"plain DataLoader.*ipyrepro.resumable\(loader\)"):
        ipyrepro.save_checkpoint(tmp_path / "c.pt", loader=loader)
    assert not (tmp_path / "c.pt").exists()


def test_the_checkpoint_loads_with_weights_only_and_names_what_it_holds(tmp_path):
    path = tmp_path / "checkpoint.pt"
    generator = torch.Generator().manual_seed(5)
    ipyrepro.save_checkpoint(path, **_trained(3), sampler_generator=generator)
    payload = torch.load(path, weights_only=True)
    assert payload["body"]["manifest"] == {
        "model": "torch.nn.modules.container.Sequential",
        "optimizer": "torch.optim.adam.Adam",
        "scheduler": "torch.optim.lr_scheduler.StepLR",
        "loader": "ipyrepro.resume.loader.ResumableLoader",
        "sampler_generator": "torch._C.Generator",
    }
    expected = torch.rand(3, generator=generator)
    other = torch.Generator().manual_seed(77)
    with pytest.warns(ipyrepro.ReproWarning, match="also holds optimizer, scheduler, loader"):
        report = ipyrepro.load_checkpoint(path, model=_objects()["model"], sampler_generator=other)
    assert report.loaded == ["model", "sampler_generator"]
    assert torch.equal(torch.rand(3, generator=other), expected)


def test_a_loader_place_that_does_not_fit_raises_before_the_model_is_loaded(tmp_path):
    path = tmp_path / "checkpoint.pt"
    ipyrepro.save_checkpoint(path, **_trained(3))
    fresh = _objects(workers=2)  # saved with num_workers=0
    before = _fingerprint(fresh)
    with pytest.raises(CheckpointError, match=r"loader: .*num_workers 0 at the save, 2 now.*Nothing was changed"):
        ipyrepro.load_checkpoint(path, **fresh)
    assert _same(before, _fingerprint(fresh))


def test_a_grad_scaler_and_a_scheduler_come_back(tmp_path):
    path = tmp_path / "checkpoint.pt"
    objects = _trained(3)
    scaler = torch.amp.GradScaler("cpu", init_scale=128.0)
    ipyrepro.save_checkpoint(path, scheduler=objects["scheduler"], scaler=scaler)
    fresh = _objects()
    other = torch.amp.GradScaler("cpu", init_scale=2.0)
    ipyrepro.load_checkpoint(path, scheduler=fresh["scheduler"], scaler=other)
    assert other.state_dict() == scaler.state_dict()
    assert fresh["scheduler"].state_dict() == objects["scheduler"].state_dict()
