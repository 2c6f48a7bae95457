"""Hidden state, named from the code and the saved execution counts alone: which later cell binds a missing name."""

from __future__ import annotations

from pathlib import Path

from ipyrepro.notebooks.hiddenstate import cell_bindings, find_hidden_state, out_of_order_text
from ipyrepro.notebooks.notebookfile import load_notebook

SAVED = Path(__file__).parent / "saved"


def error(ename: str, evalue: str, line: int = 1) -> dict:
    """An error output as a kernel sends it: IPython's traceback names the cell's line, with colours."""
    return {
        "ename": ename,
        "evalue": evalue,
        "traceback": [
            "\x1b[0;31m---------\x1b[0m",
            f"Cell \x1b[0;32mIn[7], line {line}\x1b[0m\n----> {line} ...",
            f"\x1b[0;31m{ename}\x1b[0m: {evalue}",
        ],
    }


def test_a_name_bound_only_by_a_later_cell_is_named_with_both_saved_counts() -> None:
    cells, _ = load_notebook(SAVED / "hidden-state.ipynb")
    by_position = {cell.position: cell for cell in cells}
    errors = {
        by_position[4].index: error("NameError", "name 'N' is not defined"),
        by_position[5].index: error("NameError", "name 'xs' is not defined", line=4),  # bound above: not hidden
    }
    (finding,) = find_hidden_state(cells, errors)
    assert finding.cell is by_position[4] and finding.binder is by_position[7] and finding.name == "N"
    assert finding.text() == (
        "`N` is assigned in cell 7 of 10 (code cell 4 of 6, id 'd2f64b74…'), line 1, after this cell: run top to "
        "bottom it does not exist yet here (that cell was saved as In [310]; this cell was saved as In [30], so when "
        "the notebook was saved `N` came from an earlier run of a cell or from a deleted one)."
    )
    cause = finding.to_cause()
    assert (cause.kind, cause.line, cause.code) == ("hidden-state", 1, "xs = [i / N for i in range(N)]")
    assert "move line 1 of cell 7 of 10" in cause.fix
    assert out_of_order_text(cells) == (
        "this notebook was saved after running its cells out of order: cell 2 of 10 (code cell 1 of 6, id "
        "'5de1840d…') was saved as In [312], above cell 4 of 10 (code cell 2 of 6, id '96b0dc75…'), saved as In [30]"
    )


def test_errors_that_no_later_cell_explains_are_not_hidden_state() -> None:
    optional, _ = load_notebook(SAVED / "optional-package.ipynb")
    errors = {
        optional[1].index: error("ModuleNotFoundError", "No module named 'wandb'"),
        optional[3].index: error("NameError", "name 'run' is not defined"),  # the failed cell above binds it
    }
    assert find_hidden_state(optional, errors) == []
    deliberate, _ = load_notebook(SAVED / "deliberate-error.ipynb")
    errors = {deliberate[1].index: error("IndexError", "index 3 is out of bounds for dimension 0 with size 3")}
    assert find_hidden_state(deliberate, errors) == []
    assert out_of_order_text(deliberate) == "" and out_of_order_text(optional) == ""


def write(path: Path, *sources: str, counts: tuple = ()) -> Path:
    import nbformat
    from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

    notebook = new_notebook()
    notebook.cells = [new_markdown_cell("# notes")]
    for number, source in enumerate(sources):
        cell = new_code_cell(source, id=f"c{number}")
        cell.execution_count = counts[number] if counts else None
        notebook.cells.append(cell)
    nbformat.write(notebook, path)
    return path


def test_modules_attributes_and_imports_bound_later_are_found(tmp_path: Path) -> None:
    path = write(
        tmp_path / "n.ipynb",
        "from helpers import scale\nimport helpers",
        "model = Net()\nmodel.forward(1)",
        "%%writefile helpers.py\ndef scale(x):\n    return 2 * x\n",
        "class Net:\n    def forward(self, x):\n        return x",
        counts=(5, 6, 2, 3),
    )
    cells, _ = load_notebook(path)
    found = find_hidden_state(
        cells,
        {
            cells[0].index: error("ImportError", "cannot import name 'scale' from 'helpers' (/tmp/helpers.py)"),
            cells[1].index: error("AttributeError", "'Net' object has no attribute 'forward'", line=2),
        },
    )
    assert [(f.cell.position, f.name, f.binder.position, f.binding.line, f.binding.how) for f in found] == [
        (2, "scale", 4, 2, "defined"),
        (3, "forward", 5, 2, "defined"),
    ]
    assert "before this cell's In [5]: when the notebook was saved it had been run out of order" in found[0].text()
    missing_module = find_hidden_state(
        cells, {cells[0].index: error("ModuleNotFoundError", "No module named 'helpers'")}
    )
    assert [(f.binder.position, f.binding.how) for f in missing_module] == [(4, "written as a module")]
    assert out_of_order_text(cells).startswith("this notebook was saved after running its cells out of order")


def test_bindings_follow_python_and_ipython_syntax() -> None:
    found = cell_bindings(
        "import torch.nn as nn, numpy\n"
        "from math import pi as PI\n"
        "for step, (x, *rest) in []: pass\n"
        "%time total = sum([])\n"
        "with open('f') as handle: pass\n"
        "def train():\n    global best\n    best = 1\n    local = 2\n"
        "!echo shell lines are skipped\n"
        "if (n := 3): obj.size = n\n"
    )
    assert {name: binding.line for name, binding in found.names.items()} == {
        "nn": 1,
        "numpy": 1,
        "PI": 2,
        "step": 3,
        "x": 3,
        "rest": 3,
        "total": 4,
        "handle": 5,
        "train": 6,
        "best": 8,
        "n": 11,
    }
    assert set(found.attributes) == {"size"}
    assert cell_bindings("%%bash\nN=3").names == {} and cell_bindings("def broken(:\n").names == {}
    assert set(cell_bindings("%%time\nN = 3").names) == {"N"}
