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
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) <= 5, lines
    assert sorted(line.split(":")[0] for line in lines) == ["run 1", "run 1 of 2", "run 2", "run 2 of 2"]
    assert f"run 1: done, {CELLS} code cells in" in done.stderr
    assert "\x1b[" not in done.stderr  # no escape codes in a log


@pytest.mark.kernel
def test_a_slow_cell_gets_its_own_line_with_its_label_and_time(tmp_path: Path) -> None:
    notebook = _long_notebook(tmp_path, slow_cell="import time\ntime.sleep(2.5)")
    lines: list[str] = []
    report = check(notebook, runs=2, jobs=2, causes=False, progress=PlainProgress(lines.append, slow_after=2.0))
    assert report.exit_code == 0, str(report)
    slow = [line for line in lines if " · " in line]
    assert len(slow) == 2, lines  # one per run: only the slow cell
    # c30 is the 34th cell of 66 (markdown after c0, c10, c20): named once, as an editor numbers it
    assert all(re.fullmatch(r"run \d: cell 34 of 66 · \d+\.\d s", line) for line in slow), slow
    assert len(lines) == 6


@pytest.mark.kernel
def test_on_a_tty_each_run_is_one_live_line(tmp_path: Path) -> None:
    notebook = _long_notebook(tmp_path)
    controller, terminal = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "ipyrepro", "check", str(notebook), "--no-causes"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=terminal,
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
        assert f"done, {CELLS} code cells · " in line and f"{CELLS}/{CELLS}" not in line  # the count once
        assert re.search(r"· \d+\.\d s$", line.rstrip())  # the elapsed time
    assert textwrap.dedent(process.stdout.read().decode()).startswith("ipyrepro check")  # the report itself


DIFFERING = [
    "import numpy as np",
    "rng = np.random.default_rng()  # unseeded: differs every run\nrng.random()",
    "total = 1 + 1\ntotal",
]


@pytest.mark.kernel
def test_the_causes_run_has_its_own_progress_and_long_cause_lines_wrap_at_words(tmp_path: Path) -> None:
    notebook = new_notebook(cells=[new_code_cell(code, id=f"d{n}") for n, code in enumerate(DIFFERING)])
    path = tmp_path / "differs.ipynb"
    nbformat.write(notebook, path)
    lines: list[str] = []
    report = check(path, runs=2, jobs=1, progress=PlainProgress(lines.append))
    assert report.exit_code == 1, str(report)
    causes = [line for line in lines if line.startswith("causes: ")]
    assert causes[0] == "causes: starting one more kernel to trace 1 code cell"
    assert "causes: tracing cell 2 of 3" in causes
    assert re.fullmatch(r"causes: done in \d+\.\d s", causes[-1]), causes
    assert lines.index(causes[0]) > max(i for i, line in enumerate(lines) if line.startswith("run 2: done"))
    text = str(report)
    [cause] = report.cell_causes(report.differences[0].cell.index)
    assert len(f"    cause: {cause.text()}") > 120, "the test needs a cause longer than a line"
    start = text.index("    cause: ")
    shown = text[start : text.index("\n", text.index(cause.text().split()[-1], start))]
    assert " ".join(shown.split()) == " ".join(f"cause: {cause.text()}".split()), "wrapped only between words"
    assert len(shown.splitlines()) > 1 and all(len(line) <= 120 for line in shown.splitlines()), shown
    assert "as written (without ipyrepro)" not in text  # the hint follows an OK only


@pytest.mark.kernel
def test_an_ok_under_ipyrepro_hints_at_checking_the_notebook_as_written(tmp_path: Path, capsys) -> None:
    from ipyrepro.cli import main

    notebook = new_notebook(cells=[new_code_cell("import torch\ntorch.rand(2)", id="a")])
    path = tmp_path / "my notebook.ipynb"
    nbformat.write(notebook, path)
    assert main(["check", str(path), "--quiet"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-2].startswith("OK: ")
    assert lines[-1] == f"as written (without ipyrepro): `ipyrepro check '{path}' --as-is`"
    assert main(["check", str(path), "--quiet", "--as-is"]) == 1  # as written, torch.rand is not seeded
    assert "as written (without ipyrepro)" not in capsys.readouterr().out
