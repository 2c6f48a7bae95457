"""Shared fixtures: a real IPython shell, clean ipyrepro state, and the one CUDA seam."""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import pytest
import torch

from ipyrepro.core.flags import Flags
from ipyrepro.core.state import STATE

MANAGED_ENV = (
    "CUBLAS_WORKSPACE_CONFIG",
    "CUDA_LAUNCH_BLOCKING",
    "PYTHONHASHSEED",
    "IPYREPRO_SEED",
    "IPYREPRO_RESEED",
    "IPYREPRO_DETERMINISTIC",
    "RANK",
    "LOCAL_RANK",
)


@pytest.fixture(autouse=True, scope="session")
def _isolated_jupyter_dirs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Keep IPython, Jupyter and ipyrepro's cache away from the user's profile, config and runtime files."""
    base = tmp_path_factory.mktemp("jupyter")
    names = ("IPYTHONDIR", "JUPYTER_CONFIG_DIR", "JUPYTER_RUNTIME_DIR", "IPYREPRO_CACHE_DIR")
    saved = {name: os.environ.get(name) for name in names}
    os.environ["IPYTHONDIR"] = str(base / "ipython")
    os.environ["JUPYTER_CONFIG_DIR"] = str(base / "config")
    os.environ["JUPYTER_RUNTIME_DIR"] = str(base / "runtime")
    os.environ["IPYREPRO_CACHE_DIR"] = str(base / "ipyrepro-cache")  # kernels the tests start inherit it
    yield
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """One JupyterLab server for every browser test (see tests/jupyterlab.py); skips without chromium."""
    from .jupyterlab import CHROMIUM, running_lab

    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"{CHROMIUM} is missing: scripts/setup installs Debian's chromium")
    with running_lab(tmp_path_factory.mktemp("lab")) as server:
        yield server


@pytest.fixture(autouse=True)
def clean_state() -> Iterator[None]:
    """Every test starts with ipyrepro off and leaves torch flags, env vars and RNGs as it found them."""
    flags = Flags.read()
    env = {name: os.environ.get(name) for name in MANAGED_ENV}
    rng = (random.getstate(), np.random.get_state(), torch.get_rng_state())
    STATE.reset()
    yield
    STATE.reset()
    flags.apply()
    for name, value in env.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    random.setstate(rng[0])
    np.random.set_state(rng[1])
    torch.set_rng_state(rng[2])


@pytest.fixture
def ip() -> Iterator[object]:
    """The real global InteractiveShell with ipyrepro loaded; unloaded afterwards."""
    from IPython.testing.globalipapp import get_ipython, start_ipython

    shell = start_ipython() or get_ipython()
    shell.run_line_magic("load_ext", "ipyrepro")
    yield shell
    shell.run_line_magic("unload_ext", "ipyrepro")
    shell.user_ns.pop("_", None)


@dataclass
class FakeGPU:
    """What the CUDA seam pretends, and every CUDA initialisation that was attempted."""

    lazy_init_calls: list[str] = field(default_factory=list)

    @property
    def initialized(self) -> bool:
        return bool(torch.cuda._initialized)

    @initialized.setter
    def initialized(self, value: bool) -> None:
        torch.cuda._initialized = value  # the flag `is_initialized()` reads, as CUDA's lazy init sets it


@pytest.fixture
def fake_gpu(monkeypatch: pytest.MonkeyPatch) -> FakeGPU:
    """The one seam where tests simulate a GPU: availability, initialisation, and a trap on init.

    Initialisation is torch.cuda's own flag (`_initialized`, restored afterwards), which
    `is_initialized()` reads. Any call of torch.cuda._lazy_init (what every CUDA-initialising
    call goes through) is recorded, so a test can assert that looking initialised nothing.
    """
    gpu = FakeGPU()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "_initialized", False)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: bool(torch.cuda._initialized))

    def lazy_init() -> None:
        gpu.lazy_init_calls.append("torch.cuda._lazy_init")
        raise AssertionError("something tried to initialise CUDA")

    monkeypatch.setattr(torch.cuda, "_lazy_init", lazy_init)
    return gpu


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked `cuda` need a real GPU: without one they skip, never fail."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (none here); run scripts/gpu-check on a GPU machine")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)
