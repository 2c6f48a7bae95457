"""`ipyrepro check` on notebooks as people save them: cells that raise, hidden state, saved outputs, one numbering.

The notebooks in saved/ were made by running their cells in a real kernel in the order their
author did: outputs present, markdown between code cells, execution counts out of order, one
without cell ids (nbformat 4.4). Each stops a top-to-bottom run at a cell that raises.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from ipyrepro.cli import main
from ipyrepro.notebook_check import check
from ipyrepro.notebooks.checkjson import validate

SAVED = Path(__file__).parent / "saved"


def verdict(out: str) -> str:
    """The report's verdict line (an OK under ipyrepro is followed by the `--as-is` hint)."""
    return next(line for line in reversed(out.splitlines()) if line.startswith(("OK: ", "DIFFERS: ", "ERROR: ")))


def copy(name: str, folder: Path) -> Path:
    return Path(shutil.copy(SAVED / name, folder / name))


def edit(path: Path, change) -> None:
    notebook = json.loads(path.read_text())
    change([cell for cell in notebook["cells"] if cell["cell_type"] == "code"])
    path.write_text(json.dumps(notebook))


@pytest.mark.kernel
def test_a_name_defined_by_a_later_cell_is_compared_past_and_explained_as_hidden_state(tmp_path: Path) -> None:
    report = check(copy("hidden-state.ipynb", tmp_path), runs=2, as_is=True)
    data = json.loads(report.to_json())
    validate(data)
    assert report.exit_code == 2 and data["exit_code"] == 2
    assert [cell["outcome"] for cell in data["cells"]] == [
        "matched",
        "reproduced-error",
        "reproduced-error",
        "matched",
        "reproduced-error",
        "matched",
    ]
    assert [(e["cell"]["position"], e["ename"]) for e in data["reproduced_errors"]] == [
        (4, "NameError"),
        (5, "NameError"),
        (8, "NameError"),
    ]
    (finding,) = data["hidden_state"]["findings"]
    assert (finding["cell"]["position"], finding["name"], finding["bound_in"]["position"]) == (4, "N", 7)
    assert (finding["cell"]["execution_count"], finding["bound_in"]["execution_count"]) == (30, 310)
    assert data["hidden_state"]["saved_out_of_order"] is True
    (causes,) = data["causes"]
    assert causes["cell"]["position"] == 4 and [c["kind"] for c in causes["causes"]] == ["hidden-state"]
    assert [c.kind for c in report.causes.by_cell[report.cells[1].index]] == ["hidden-state"]
    text = str(report)
    assert "  cell 4 of 10 (code cell 2 of 6, id '96b0dc75…'): NameError: name 'N' is not defined" in text
    assert "`N` is assigned in cell 7 of 10 (code cell 4 of 6, id 'd2f64b74…'), line 1" in text
    assert "saved as In [310]; this cell was saved as In [30]" in text
    assert "this notebook was saved after running its cells out of order" in text
    assert text.splitlines()[-1] == (
        "ERROR: all 6 code cells matched; 3 raised the same error in every run (3 not tagged 'raises-exception')."
    )


@pytest.mark.kernel
def test_a_deliberate_index_error_in_a_notebook_without_ids_is_a_reproduced_error(tmp_path: Path, capsys) -> None:
    path = copy("deliberate-error.ipynb", tmp_path)
    assert main(["check", str(path), "--quiet", "--json"]) == 2
    data = json.loads(capsys.readouterr().out)
    validate(data)
    assert [(c["position"], c["code_position"], c["id"], c["outcome"]) for c in data["cells"]] == [
        (2, 1, None, "matched"),
        (4, 2, None, "reproduced-error"),
        (6, 3, None, "matched"),
        (7, 4, None, "matched"),
    ]
    (error,) = data["reproduced_errors"]
    assert (error["ename"], error["expected"], error["runs"]) == ("IndexError", False, [1, 2])
    assert error["cell"]["label"] == "cell 4 of 7 (code cell 2 of 4)"
    assert [(e["run"], e["kind"], e["reproduced"]) for e in data["errors"]] == [
        (1, "cell-raised", True),
        (2, "cell-raised", True),
    ]
    assert data["differences"] == [] and data["hidden_state"]["findings"] == []


@pytest.mark.kernel
def test_a_missing_optional_package_is_compared_past(tmp_path: Path) -> None:
    report = check(copy("optional-package.ipynb", tmp_path), runs=2, as_is=True)
    validate(report.to_dict())
    assert report.exit_code == 2 and report.differences == []
    assert [(e.cell.position, e.ename) for e in report.reproduced] == [(3, "ModuleNotFoundError"), (6, "NameError")]
    assert report.hidden_state == []  # `run` is bound by the cell above that raised, not by a later one
    assert report.compared == {cell.index for cell in report.cells}
    assert "epoch 4:" in report.runs[1].outputs[report.cells[2].index][0]["text"]


@pytest.mark.kernel
def test_against_saved_passes_on_matching_outputs_and_names_the_edited_cell(tmp_path: Path, capsys) -> None:
    path = copy("deliberate-error.ipynb", tmp_path)

    def tag(cells: list) -> None:
        cells[1]["metadata"]["tags"] = ["raises-exception"]
        cells[3]["execution_count"] = None  # its outputs saved without a count: compared anyway, unless --strict

    edit(path, tag)
    assert main(["check", str(path), "--against-saved", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "compared with the saved outputs" in out.splitlines()[0]
    assert "Reproduced errors (the same exception in every run and the saved outputs):" in out
    assert "Outputs saved without an execution count (compared anyway; --strict leaves them out):\n  cell 7 of 7" in out
    assert verdict(out) == (
        "OK: all 4 code cells matched; 1 raised the same error in every run (0 not tagged 'raises-exception')."
    )
    assert main(["check", str(path), "--against-saved", "--strict", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "Not saved (no execution count: not run before saving, or (--strict) outputs saved without one; " in out
    assert verdict(out) == (
        "OK: 3 of 4 code cells compared, all matched; 1 not saved; "
        "1 raised the same error in every run (0 not tagged 'raises-exception')."
    )

    def change(cells: list) -> None:
        cells[2]["outputs"][0]["data"]["text/plain"] = ["tensor(3)"]

    edit(path, change)
    assert main(["check", str(path), "--against-saved", "--quiet", "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    validate(data)
    (difference,) = data["differences"]
    assert difference["cell"]["label"] == "cell 6 of 7 (code cell 3 of 4)" and difference["mime"] == "text/plain"
    assert difference["sides"] == [{"run": "saved", "value": "tensor(3)"}, {"run": 1, "value": "tensor(2)"}]
    assert data["not_saved"] == [] and [cell["position"] for cell in data["without_count"]] == [7]
    assert difference["kind"] == "value" and data["exit_code"] == 1


@pytest.mark.kernel
def test_a_kernel_that_dies_ends_that_run_only(tmp_path: Path) -> None:
    from nbformat.v4 import new_code_cell

    from .test_notebook_check import write

    path = write(
        tmp_path / "n.ipynb",
        new_code_cell("print('before')", id="before"),
        new_code_cell(
            "import os\nif not os.path.exists('died'):\n    open('died', 'w').close()\n    os._exit(3)", id="die"
        ),
        new_code_cell("print('after')", id="after"),
    )
    report = check(path, runs=2, as_is=True, jobs=1)
    assert report.exit_code == 2 and report.compared == {0}
    (error,) = report.run_errors()
    assert (error.run, error.kind, error.cell.position) == (1, "kernel-died", 2)
    assert report.runs[1].outputs[2][0]["text"] == "after\n"
    assert str(report).splitlines()[-1] == (
        "ERROR: 1 of 3 code cells compared, all matched; 2 not compared (they ran in fewer than 2 runs)."
    )
