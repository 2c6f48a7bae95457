"""`pip wheel .` gives a package that works on its own: installed into a separate folder, used from another one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

ROOT = Path(__file__).resolve().parent.parent


def _setuptools_major() -> int:
    try:
        import setuptools
    except ImportError:
        return 0
    return int(setuptools.__version__.split(".")[0])


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    # The setuptools here builds it when new enough (offline, fast); else pip fetches one, as a user's pip would.
    isolation = ["--no-build-isolation"] if _setuptools_major() >= 77 else []
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", *isolation, "-q", str(ROOT), "-w", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=out,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    [built] = out.glob("ipyrepro-*.whl")
    return built


def test_the_wheel_carries_the_schema_the_license_and_the_one_version(wheel: Path) -> None:
    from ipyrepro import __version__

    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        metadata = archive.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert "ipyrepro/notebooks/check-report.schema.json" in names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert "License-Expression: BSD-3-Clause" in metadata and "License-File: LICENSE" in metadata
    assert f"Version: {__version__}\n" in metadata and wheel.name.startswith(f"ipyrepro-{__version__}-")


@pytest.mark.kernel
def test_the_installed_wheel_checks_a_notebook_from_another_folder(wheel: Path, tmp_path: Path) -> None:
    target, elsewhere = tmp_path / "site", tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    notebook = new_notebook(
        cells=[
            new_markdown_cell("# A small notebook"),
            new_code_cell("import torch\nx = torch.randn(3)\nx.tolist()"),
            new_code_cell("round(float(x.sum()), 4)"),
        ]
    )
    nbformat.write(notebook, elsewhere / "small.ipynb")
    # Only the installed copy may be found: the checkout is neither the working folder nor on the path.
    env = {**os.environ, "PYTHONPATH": str(target)}
    done = subprocess.run(
        [sys.executable, "-m", "ipyrepro", "check", "small.ipynb", "--runs", "2", "--json", "--quiet"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=elsewhere,
        env=env,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["ok"] is True
    where = subprocess.run(
        [sys.executable, "-c", "import ipyrepro.notebooks.checkjson as j; print(j.__file__); j.schema()"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=elsewhere,
        env=env,
    )
    assert where.returncode == 0, where.stderr
    assert where.stdout.startswith(str(target)), where.stdout
