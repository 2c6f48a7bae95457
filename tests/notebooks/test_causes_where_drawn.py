"""Causes where the draw is: real `ipyrepro check --as-is` runs of notebooks that never seed anything.

The most common first cell imports torch and draws in the same cell; its draw is named even though torch was
not imported when the tracer started. A cause is only given for the divergent cell or one before it, never
a later cell that also draws; when nothing is found, the report says so in one line.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from tests.reports import cause_entries

pytestmark = pytest.mark.kernel

DRAWS = [
    new_markdown_cell("# Never seeded"),
    new_code_cell("import torch\nw = torch.randn(3)", id="draw"),
    new_code_cell("print(w.sum())", id="show"),
    new_code_cell("import numpy as np\nprint(np.random.rand(3).sum())", id="numpy"),
    new_code_cell("import random\nprint(random.random())", id="random"),
    new_code_cell("v = torch.rand(8, 8)\nprint(v.sum())", id="later"),
]
UNWATCHED = [
    new_code_cell("import os\nn = os.getpid()", id="pid"),
    new_code_cell("print(n)", id="show"),
]


def check(folder: Path, cells: list, name: str) -> str:
    notebook = new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3"}})
    nbformat.write(notebook, folder / name)
    done = subprocess.run(
        [sys.executable, "-m", "ipyrepro", "check", name, "--as-is", "--quiet"],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    return done.stdout


def test_draws_in_the_cell_that_imports_are_named_there_and_never_in_a_later_cell(tmp_path: Path) -> None:
    out = check(tmp_path, DRAWS, "draws.ipynb")
    lines = out.splitlines()
    first = lines.index(next(line for line in lines if line.startswith("First divergence: cell 2 of 6")))
    assert lines[first + 3].startswith("    cause: unseeded-generator at cell 2 of 6, line 2: `w = torch.randn(3)`")
    show = lines.index(next(line for line in lines if line.startswith("cell 3 of 6 (code cell 2 of 5, id 'show')")))
    between = "\n".join(lines[first:show])
    assert "cell 6 of 6" not in between.split("\n", 1)[1]  # no later cell is blamed for cell 2's divergence
    assert "cause: unseeded-generator at cell 4 of 6, line 2: `print(np.random.rand(3).sum())`" in out
    assert "cause: unseeded-generator at cell 5 of 6, line 2: `print(random.random())`" in out
    assert "cause: unseeded-generator at cell 6 of 6, line 1: `v = torch.rand(8, 8)`" in out


def test_no_cause_found_is_said_in_one_line(tmp_path: Path) -> None:
    out = check(tmp_path, UNWATCHED, "pid.ipynb")
    assert "First divergence: cell 1 of 2 (prints nothing): n differs (run 1 vs run 2)" in out
    found = cause_entries(out)
    assert found == [
        "    cause: none found: nothing the tracer watches (a draw from an unseeded generator, a clock, OS entropy, "
        "threads, a setting) ran in this cell; the value may come from a file, the network or a library ipyrepro "
        "does not watch"
    ], out
    assert "inherits n from cell 1 of 2" in out
