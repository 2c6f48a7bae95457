"""`ipyrepro check` progress fits a terminal: a live line per run on a TTY, a handful of lines in a CI log."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
import textwrap
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from ipyrepro.notebooks.check import check
from ipyrepro.notebooks.progress import PlainProgress

CELLS = 60
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def _long_notebook(folder: Path, slow_cell: str = "") -> Path:
    """60 code cells, markdown between some, as a real notebook has; `slow_cell` is one more code line 30."""
    notebook = new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3"}})
    for number in range(CELLS):
        code = slow_cell if (number == 30 and slow_cell) else f"value_{number} = {number} * 2\nvalue_{number}"
        notebook.cells.append(new_code_cell(code, id=f"c{number}"))
        if number % 10 == 0:
            notebook.cells.append(new_markdown_cell(f"## Part {number // 10}"))
    path = folder / "long.ipynb"
    nbformat.write(notebook, path)
    return path


@pytest.mark.kernel
def test_a_60_cell_check_prints_a_handful_of_lines_in_a_log(tmp_path: Path) -> None:
    notebook = _long_notebook(tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "ipyrepro", "check", str(notebook), "--no-causes"],
        capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) <= 5, lines
    assert sorted(line.split(":")[0] for line in lines) == ["run 1", "run 1 of 2", "run 2", "run 2 of 2"]
    assert f"run 1: done, {CELLS} code cells in" in done.stderr
    assert "\x1b[" not in done.stderr  # no escape codes in a log


@pytest.mark.kernel
def test_a_slow_cell_gets_its_own_line_with_its_label_and_time(tmp_path: Path) -> None:
    notebook = _long_notebook(tmp_path, slow_cell="import time\ntime.sleep(1.5)")
    lines: list[str] = []
    report = check(notebook, runs=2, jobs=2, causes=False, progress=PlainProgress(lines.append, slow_after=1.0))
    assert report.exit_code == 0, str(report)
    slow = [line for line in lines if "took" in line]
    assert len(slow) == 2, lines  # one per run: only the slow cell
    assert all(re.search(r"run \d: cell .*'c30'.* took \d+\.\d s", line) for line in slow), slow
    assert len(lines) == 6


@pytest.mark.kernel
def test_on_a_tty_each_run_is_one_live_line(tmp_path: Path) -> None:
    notebook = _long_notebook(tmp_path)
    controller, terminal = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "ipyrepro", "check", str(notebook), "--no-causes"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=terminal,
        env={**os.environ, "COLUMNS": "120", "TERM": "xterm"},
    )
    os.close(terminal)
    seen = b""
    while True:
        ready, _, _ = select.select([controller], [], [], 600)
        if not ready:
            break
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # the process closed the terminal
            break
        if not chunk:
            break
        seen += chunk
    assert process.wait(timeout=60) == 0
    os.close(controller)
    raw = seen.decode(errors="replace")
    assert "\x1b[" in raw  # redrawn in place, not appended
    final = ANSI.sub("", raw).replace("\r\n", "\n")
    shown = [line for line in re.split(r"[\r\n]", final) if line.strip()]
    last = {n: [line for line in shown if line.lstrip().startswith(f"run {n}/2")][-1] for n in (1, 2)}
    for line in last.values():
        assert f"{CELLS}/{CELLS}" in line and "done" in line
        assert re.search(r"\d+:\d\d:\d\d", line)  # the elapsed time
    assert textwrap.dedent(process.stdout.read().decode()).startswith("ipyrepro check")  # the report itself
