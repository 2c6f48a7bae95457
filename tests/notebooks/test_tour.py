"""The tour in notebooks/: committed clean, and every notebook runs and reproduces in real kernels."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ipyrepro.notebooks.check import check

NOTEBOOKS = sorted((Path(__file__).resolve().parents[2] / "notebooks").glob("*.ipynb"))


def test_the_tour_has_its_six_stops() -> None:
    names = [path.name for path in NOTEBOOKS]
    assert names == [
        "01-quick-start.ipynb",
        "02-panel.ipynb",
        "03-rerun-and-compare.ipynb",
        "04-out-of-order.ipynb",
        "05-environment.ipynb",
        "06-beyond-one-process.ipynb",
    ]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_tour_notebooks_are_committed_without_outputs_and_with_a_kernelspec(path: Path) -> None:
    notebook = json.loads(path.read_text(encoding="utf-8"))
    assert notebook["nbformat"] == 4 and notebook["nbformat_minor"] >= 5  # cell ids: `cell` re-seeding needs them
    assert notebook["metadata"]["kernelspec"]["name"] == "python3"
    ids = [cell["id"] for cell in notebook["cells"]]
    assert len(set(ids)) == len(ids)
    for cell in notebook["cells"]:
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None, f"{path.name}: cell {cell['id']}"


@pytest.mark.kernel
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_tour_notebook_runs_and_reproduces_in_fresh_kernels(path: Path) -> None:
    before = path.read_bytes()
    report = check(path, runs=2, timeout=300)
    assert report.exit_code == 0, str(report)
    assert path.read_bytes() == before
