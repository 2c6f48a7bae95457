"""`ipyrepro lint`: what a saved notebook shows about how it ran, read from the file alone, fast, no kernel."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from ipyrepro.cli import main
from ipyrepro.notebooks.lint import lint_notebook

SAVED = Path(__file__).parent / "saved"


def saved(path: Path, *cells: tuple[str, int | None] | str, **metadata) -> Path:
    """A notebook as Jupyter saves it: markdown between cells, counts as given, a stream output per executed cell."""
    notebook = new_notebook(
        metadata={
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
            "language_info": {"name": "python", "version": "3.11.7"},
            **metadata,
        }
    )
    for number, cell in enumerate(cells):
        if isinstance(cell, str):
            markdown = new_markdown_cell(cell)
            del markdown["id"]
            notebook.cells.append(markdown)
            continue
        source, count = cell
        code = new_code_cell(source, execution_count=count)
        del code["id"]  # saved by an older Jupyter: no cell ids
        if count is not None:
            code.outputs = [new_output("stream", name="stdout", text=f"out {number}\n")]
        notebook.cells.append(code)
    notebook.nbformat_minor = 4
    nbformat.write(notebook, path)
    return path


def test_out_of_order_notebook_names_cell_name_and_counts(tmp_path: Path, capsys) -> None:
    path = saved(
        tmp_path / "fit.ipynb",
        "# Fit",
        ("import random\nrandom.seed(0)", 1),
        ("xs = [i / N for i in range(N)]", 4),
        "## Settings",
        ("N = 20", 3),
        ("print(len(xs))", 5),
    )
    assert main(["lint", str(path)]) == 1  # its speed is benchmarks/bench_lint.py's target, not a timed test
    out = capsys.readouterr().out
    assert "cell 5 of 6 (In [3]): saved as In [3] below cell 3 of 6, saved as In [4]" in out
    assert "cell 3 of 6 (In [4]): reads `N` at line 1, but no cell above binds it; cell 5 of 6 (In [3])" in out
    assert "1 finding" not in out and "2 findings in 1 notebook(s)" in out


def test_a_notebook_run_top_to_bottom_is_clean(tmp_path: Path, capsys) -> None:
    path = saved(
        tmp_path / "ok.ipynb",
        ("import math\nN = 3", 1),
        "text",
        ("def f(x):\n    return helper(x)\n", 2),  # read when called, not here
        ("squares = [n * n for n in range(N)]\nprint(squares, math.pi)", 3),
        ("", None),  # an empty cell never run is no finding
        ("total = 0\nfor value in squares:\n    total += value\n%time y = total", 4),
        ("helper = abs\nprint(f(-1), y)", 5),
    )
    assert main(["lint", str(path)]) == 0
    assert "clean (6 code cells)" in capsys.readouterr().out


def test_cells_never_executed_between_executed_ones(tmp_path: Path) -> None:
    path = saved(tmp_path / "n.ipynb", ("a = 1", 1), ("a = 2", None), ("print(a)", 2), ("print('tail')", None))
    [finding] = lint_notebook(path).findings
    assert finding.kind == "never-executed"
    assert finding.cell.where() == "cell 2 of 4"
    assert "between cell 1 of 4 (In [1]) and cell 3 of 4 (In [2])" in finding.text


def test_outputs_saved_by_another_kernel(tmp_path: Path) -> None:
    path = saved(
        tmp_path / "k.ipynb",
        ("x = 1", 1),
        language_info={"name": "R", "version": "4.3"},
    )
    [finding] = lint_notebook(path).findings
    assert finding.kind == "other-kernel"
    assert "kernelspec says a python kernel ('python3'), but the outputs were saved by a R kernel" in finding.text

    notebook = nbformat.read(saved(tmp_path / "v.ipynb", ("import lib", 1), ("lib.go()", 2)), 4)
    notebook.cells[1].outputs = [
        new_output(
            "error",
            ename="ValueError",
            evalue="bad",
            traceback=["File /usr/lib/python3.8/site-packages/lib/__init__.py:3, in go()", "ValueError: bad"],
        )
    ]
    nbformat.write(notebook, tmp_path / "v.ipynb")
    [finding] = lint_notebook(tmp_path / "v.ipynb").findings
    assert (finding.cell.where(), finding.name) == ("cell 2 of 2", "python3.8")
    assert "metadata.language_info says Python 3.11.7" in finding.text


def test_random_names_unseeded_draws_only_when_asked(tmp_path: Path, capsys) -> None:
    path = saved(
        tmp_path / "r.ipynb",
        ("import torch\nimport numpy as np\nfrom torch import nn", 1),
        ("w = torch.randn(3)\nlayer = nn.Linear(2, 2)\nnp.random.shuffle([1, 2])", 2),
        ("rng = np.random.default_rng(0)\nrng.normal()", 3),
        ("torch.manual_seed(0)\nv = torch.rand(2)", 4),
    )
    assert main(["lint", str(path)]) == 0
    capsys.readouterr()
    assert main(["lint", str(path), "--random", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    names = [(f["cell"]["position"], f["name"], f["line"]) for f in report["notebooks"][0]["findings"]]
    assert names == [(2, "torch.randn", 1), (2, "torch.nn.Linear", 2), (2, "numpy.random.shuffle", 3)]


def test_seeding_with_repro_on_counts(tmp_path: Path) -> None:
    path = saved(
        tmp_path / "s.ipynb", ("%load_ext ipyrepro\n%repro on --seed 3", 1), ("import torch\ntorch.randn(2)", 2)
    )
    assert lint_notebook(path, random=True).findings == []


def test_json_names_cell_refs_and_counts(tmp_path: Path, capsys) -> None:
    main(["lint", str(SAVED / "hidden-state.ipynb"), "--json"])
    report = json.loads(capsys.readouterr().out)
    assert report["schema"] == 1 and report["exit_code"] == 1
    kinds = {f["kind"]: f for f in report["notebooks"][0]["findings"]}
    assert kinds["read-before-bound"]["name"] == "N"
    assert kinds["read-before-bound"]["counts"] == {"cell 4 of 10": 30, "cell 7 of 10": 310}
    assert kinds["out-of-order"]["counts"] == {"cell 4 of 10": 30, "cell 2 of 10": 312}


def test_usage_errors_exit_2(tmp_path: Path, capsys) -> None:
    (tmp_path / "broken.ipynb").write_text("{not json")
    assert main(["lint", str(tmp_path / "broken.ipynb")]) == 2
    assert "not valid JSON" in capsys.readouterr().out
    assert main(["lint", str(tmp_path / "missing.ipynb")]) == 2
    assert "no such notebook or folder" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["lint"])
    assert exit_info.value.code == 2


def test_lint_imports_no_torch_and_starts_no_kernel(tmp_path: Path) -> None:
    path = saved(tmp_path / "n.ipynb", ("import torch\nx = torch.randn(2)", 1))
    probe = (
        "import sys\nfrom ipyrepro.cli import main\n"
        f"code = main(['lint', {str(path)!r}, '--random'])\n"
        "assert code == 1, code\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
        "assert 'jupyter_client' not in sys.modules, 'kernel machinery imported'\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(
    "source",
    [
        "%time y = f(1)\nprint(y)",
        "files = !ls -l\nx = 1",
        "for i in range(3):\n    %time z = i",
        "%load_ext ipyrepro\n%repro on --seed 3",
        "a, b = %sx ls\n# why?",
        "x = 1 if a != b else c % 2",
        "obj?",
        "%matplotlib inline\nimport numpy as np",
    ],
)
def test_cells_read_without_ipython_parse_as_ipython_would(source: str) -> None:
    """lint's quick reading of magics gives the tree IPython's own transformer gives."""
    import ast

    from IPython.core.inputtransformer2 import TransformerManager

    from ipyrepro.notebooks.hiddenstate import parse_python

    assert ast.dump(parse_python(source)) == ast.dump(ast.parse(TransformerManager().transform_cell(source)))


def test_a_notebook_of_magics_and_plain_code_is_linted_without_importing_ipython(tmp_path: Path) -> None:
    path = saved(tmp_path / "m.ipynb", ("%matplotlib inline\nimport math", 1), ("%time r = math.sqrt(N)", 2))
    probe = (
        "import sys\nfrom ipyrepro.notebooks.lint import lint_notebook\n"
        f"found = lint_notebook({str(path)!r}).findings\n"
        "assert [f.name for f in found] == [], found\n"
        "assert 'IPython' not in sys.modules, 'IPython imported'\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
