"""The check's `--json` shape, against the JSON Schema shipped with the package, from runs' outputs alone."""

from __future__ import annotations

import copy
from pathlib import Path

import jsonschema
import pytest

from ipyrepro.notebooks.check import add_hidden_state
from ipyrepro.notebooks.checkjson import schema, validate
from ipyrepro.notebooks.notebookfile import load_notebook
from ipyrepro.notebooks.outputs import Comparison
from ipyrepro.notebooks.report import CheckReport, Run
from ipyrepro.notebooks.verdicts import compare, saved_outputs

SAVED = Path(__file__).parent / "saved"
NAME_ERROR = {"output_type": "error", "ename": "NameError", "evalue": "name 'N' is not defined", "traceback": []}


def report_for(against_saved: bool) -> CheckReport:
    """hidden-state.ipynb as two runs made it: its 4th cell raised in both, its last printed another line in run 2."""
    cells, _ = load_notebook(SAVED / "hidden-state.ipynb")
    runs = [Run(1), Run(2)]
    for run in runs:
        for cell in cells:
            run.outputs[cell.index] = saved_outputs(cell)
        run.outputs[cells[1].index] = [NAME_ERROR]
        run.raised[cells[1].index] = NAME_ERROR
    runs[1].outputs[cells[-1].index] = [{"output_type": "stream", "name": "stdout", "text": "False True\n"}]
    report = CheckReport("hidden-state.ipynb", "python3", "as written (--as-is)", runs, cells)
    report.against_saved = against_saved
    compare(report, Comparison.build())
    add_hidden_state(report)
    return report


def test_run_against_run_json_has_the_schemas_shape_and_names_cells_by_both_numberings() -> None:
    data = report_for(against_saved=False).to_dict()
    validate(data)
    assert data["schema"] == 2 and data["exit_code"] == 2 and data["ok"] is False
    assert [cell["outcome"] for cell in data["cells"]] == [
        "matched",
        "reproduced-error",
        "matched",
        "matched",
        "matched",
        "differs",
    ]
    (difference,) = data["differences"]
    assert difference["cell"]["position"] == 10 and difference["cell"]["index"] == 9
    assert difference["sides"] == [{"run": 1, "value": "True True\n"}, {"run": 2, "value": "False True\n"}]
    assert [(e["run"], e["kind"], e["cell"]["position"], e["reproduced"]) for e in data["errors"]] == [
        (1, "cell-raised", 4, True),
        (2, "cell-raised", 4, True),
    ]
    assert data["hidden_state"]["findings"][0]["bound_in"]["position"] == 7
    assert [c["kind"] for c in data["causes"][0]["causes"]] == ["hidden-state"]


def test_against_saved_json_names_the_saved_side() -> None:
    report = report_for(against_saved=True)
    data = report.to_dict()
    validate(data)
    # cell 4 raised in both runs but was saved with its output: a difference, not a reproduced error
    assert [(d["cell"]["position"], [side["run"] for side in d["sides"]]) for d in data["differences"]] == [
        (4, ["saved", 1]),
        (4, ["saved", 2]),
        (10, ["saved", 2]),
    ]
    # saved with an execution count and no outputs: they ran and printed nothing, compared (both empty)
    assert data["not_saved"] == []
    assert [cell["outcome"] for cell in data["cells"] if cell["position"] in (2, 7)] == ["matched", "matched"]
    assert data["reproduced_errors"] == []
    assert "between the saved outputs and run 2" in str(report)


def test_the_schema_rejects_what_a_script_could_not_read() -> None:
    data = report_for(against_saved=False).to_dict()
    for path, value in (
        (("cells", 0, "position"), 0),
        (("errors", 0, "ename"), 3),
        (("differences", 0, "sides"), [{"run": 1, "value": "x"}]),
        (("schema",), 1),
        (("hidden_state", "findings", 0, "missing"), "variable"),
        (("differences", 0, "kind"), "cosmetic"),
        (("cells", 0, "outcome"), "explained"),
    ):
        broken = copy.deepcopy(data)
        target = broken
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
        with pytest.raises(jsonschema.ValidationError):
            validate(broken)
    assert schema()["properties"]["schema"]["const"] == 2
    jsonschema.Draft202012Validator.check_schema(schema())  # the shipped file is itself a valid JSON Schema
