"""`ipyrepro check --save/--against/--trace-ops`: bad input fails before any kernel starts, saying why."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from ipyrepro.cli import main


@pytest.fixture
def notebook(tmp_path: Path) -> Path:
    path = tmp_path / "nb.ipynb"
    nbformat.write(new_notebook(cells=[new_code_cell("print(1)")]), path)
    return path


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--trace-ops"], "--trace-ops records a trace for --save or --against"),
        (["--save", "missing-folder/out.json"], "does not exist"),
        (["--against", "nowhere.json"], "does not exist; write one with `ipyrepro check NB --save FILE.json`"),
        (["--save", "same.json", "--against", "same.json"], "--save 'same.json' is the --against file"),
    ],
)
def test_bad_file_options_fail_before_running(
    notebook: Path, monkeypatch: pytest.MonkeyPatch, capsys, options: list[str], message: str
) -> None:
    monkeypatch.chdir(notebook.parent)
    (notebook.parent / "same.json").write_text("{}")
    assert main(["check", str(notebook), "--quiet", *options]) == 2
    captured = capsys.readouterr()
    assert message in captured.err
    assert "run 1" not in captured.out + captured.err
    assert not (notebook.parent / "missing-folder").exists()


def test_against_a_fingerprint_without_cells_is_refused(notebook: Path, capsys) -> None:
    env_only = notebook.parent / "env.json"
    from ipyrepro.env.numerics import numerics_environment

    document = {"format": "ipyrepro.notebook-fingerprint", "schema": 1, "environment": numerics_environment()}
    env_only.write_text(json.dumps(document))
    assert main(["check", str(notebook), "--quiet", "--against", str(env_only)]) == 2
    assert '"cells" must be a list of cell records' in capsys.readouterr().err
