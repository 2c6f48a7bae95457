"""`check --save/--against` record only state that held still across the runs: a timestamp is no difference."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

pytestmark = pytest.mark.kernel


def test_a_value_that_differs_run_to_run_is_neither_saved_nor_compared(tmp_path: Path) -> None:
    cells = [new_code_cell("import time\nstarted = time.time()\nsteps = 3", id="clock"), new_code_cell("print(steps)")]
    nbformat.write(new_notebook(cells=cells), tmp_path / "clock.ipynb")

    def check(*options: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "ipyrepro", "check", "clock.ipynb", "--quiet", "--no-causes", *options]
        return subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600)

    saved = check("--save", "clock.json")
    assert saved.returncode == 0, saved.stdout + saved.stderr
    state = json.loads((tmp_path / "clock.json").read_text())["cells"][0]["state"]
    assert list(state) == ["steps"]  # `started` differed between the two runs here: not recorded
    again = check("--against", "clock.json")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "Against clock.json: OK" in again.stdout
    assert "State: all 2 code cells' recorded state matches bitwise" in again.stdout
