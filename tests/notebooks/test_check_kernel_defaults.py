"""A kernel installed with `--seed 42 --reseed source`: a notebook's own `%repro on` keeps them, and so
does `ipyrepro check` of that notebook on that kernel (it reads the kernelspec it runs)."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest
import torch
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from ipyrepro.cli import main
from ipyrepro.core.seeding import derive_source_seed
from ipyrepro.notebooks.check import check
from ipyrepro.notebooks.kernelrun import running_kernel

pytestmark = pytest.mark.kernel

KERNEL = "repro42"
ON = "%repro on"
STATUS = "import ipyrepro\ns = ipyrepro.status()\nprint('STATUS', s.seed, s.reseed, s.deterministic_algorithms)"
DRAW = "import torch\nprint(torch.rand(3).tolist())"
MARKDOWN = "The kernel promised seed 42 and `source` re-seeding; the first cell must not take that back."


@pytest.fixture
def jupyter_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A temporary Jupyter data dir holding a kernel installed as a user would: `ipyrepro kernel install`."""
    data = tmp_path / "jupyter-data"
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(data))
    for name in ("IPYREPRO_SEED", "IPYREPRO_RESEED", "IPYREPRO_DETERMINISTIC"):  # nothing from around the tests
        monkeypatch.delenv(name, raising=False)
    assert main(["kernel", "install", "--name", KERNEL, "--seed", "42", "--reseed", "source"]) == 0
    return data


def old_notebook(path: Path) -> Path:
    """As saved by an older Jupyter: nbformat 4.4 (no cell ids), markdown between code cells, stale
    outputs from an earlier session (seed 0) and execution counts out of order."""
    notebook = new_notebook(
        metadata={"kernelspec": {"name": KERNEL, "display_name": "Python 3 (ipyrepro, seed 42)", "language": "python"}}
    )
    notebook.nbformat, notebook.nbformat_minor = 4, 4
    cells = [
        new_code_cell(ON, execution_count=7),
        new_markdown_cell(MARKDOWN),
        new_code_cell(STATUS, execution_count=3, outputs=[new_output("stream", text="STATUS 0 cell error\n")]),
        new_markdown_cell("A draw, re-seeded from this cell's code."),
        new_code_cell(DRAW, execution_count=12, outputs=[new_output("stream", text="[0.1, 0.2, 0.3]\n")]),
    ]
    for cell in cells:
        cell.pop("id", None)
    notebook.cells = cells
    path.write_text(json.dumps(notebook, indent=1))
    assert nbformat.read(path, as_version=4).nbformat_minor == 4
    return path


def expected_draw(seed: int) -> list[float]:
    generator = torch.Generator().manual_seed(derive_source_seed(seed, DRAW))
    return torch.rand(3, generator=generator).tolist()


def test_the_notebooks_own_repro_on_keeps_the_kernels_seed_and_mode(jupyter_data: Path) -> None:
    with running_kernel(KERNEL) as kernel:
        on = kernel.execute(ON, "on")
        status = kernel.execute(STATUS, "status")
        draw = kernel.execute(DRAW, "draw")
        env = kernel.execute("import os\nprint(os.environ['IPYREPRO_SEED'], os.environ['IPYREPRO_RESEED'])", "env")
        off_on = kernel.execute("%repro off\n%repro on", "off-on")  # off and on again: still the kernel's
        again = kernel.execute(STATUS, "again")
    assert on.status == "ok", on.error_text
    assert "ipyrepro ON: seed 42, re-seed source" in on.stdout
    assert status.stdout == "STATUS 42 source error\n"
    assert json.loads(draw.stdout) == expected_draw(42)
    assert env.stdout == "42 source\n"
    assert off_on.status == "ok" and again.stdout == "STATUS 42 source error\n"


def test_check_of_that_notebook_on_that_kernel_reports_and_uses_seed_42(jupyter_data: Path, tmp_path: Path, capsys):
    path = old_notebook(tmp_path / "old.ipynb")
    before = path.read_bytes()
    assert main(["check", str(path), "--json", "--quiet"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["seed"], report["reseed"]) == (42, "source")
    assert "under ipyrepro (seed 42, re-seed source)" in report["mode"]
    assert path.read_bytes() == before


def test_an_explicit_check_seed_wins_over_the_kernels(jupyter_data: Path, tmp_path: Path) -> None:
    path = old_notebook(tmp_path / "old.ipynb")
    report = check(path, runs=1, seed=5)
    assert report.exit_code == 0, str(report)
    outputs = report.runs[0].outputs
    assert (report.seed, report.reseed) == (5, "source") and "seed 5, re-seed source" in report.mode
    assert outputs[2][0]["text"] == "STATUS 5 source error\n"
    assert json.loads(outputs[4][0]["text"]) == expected_draw(5)


def test_check_on_that_kernel_runs_the_notebook_with_the_kernels_settings(jupyter_data: Path, tmp_path: Path):
    path = old_notebook(tmp_path / "old.ipynb")
    report = check(path, runs=1)
    assert report.exit_code == 0, str(report)
    outputs = report.runs[0].outputs
    assert "ipyrepro ON: seed 42, re-seed source" in outputs[0][0]["text"]
    assert outputs[2][0]["text"] == "STATUS 42 source error\n"
    assert json.loads(outputs[4][0]["text"]) == expected_draw(42)


def test_a_bad_variable_in_the_kernelspec_stops_the_check_before_any_kernel_starts(
    jupyter_data: Path, tmp_path: Path, capsys
) -> None:
    spec_file = jupyter_data / "kernels" / KERNEL / "kernel.json"
    spec = json.loads(spec_file.read_text())
    spec["env"]["IPYREPRO_RESEED"] = "sometimes"
    spec_file.write_text(json.dumps(spec))
    path = old_notebook(tmp_path / "old.ipynb")
    assert main(["check", str(path), "--quiet"]) == 2
    error = capsys.readouterr().err
    assert f"kernelspec {KERNEL!r}" in error and "IPYREPRO_RESEED='sometimes'" in error and "fix or unset it" in error
