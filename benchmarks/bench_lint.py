"""What `ipyrepro lint` costs, as ratios to baselines measured in the same run.

    python benchmarks/bench_lint.py [--rounds 5] [--cells 60]

`ipyrepro lint` reads a saved notebook and runs nothing, so a pre-commit hook can call it on every commit:

1. One notebook of `--cells` code cells (markdown between them, counts out of order, a hidden-state read,
   IPython magics in a few cells) in a fresh process: `ipyrepro lint NB` against the same interpreter
   starting and importing the CLI (`python -c "import ipyrepro.cli"`).   Target: <= 2x.
2. In one process, the lint of that notebook against reading it with `json.load` (the floor of any
   reader).                                                          No target: reported, with the absolute time.

Rounds are interleaved so machine drift hits baseline and subject alike; medians are shown.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def notebook(cells: int) -> dict:
    body = []
    for number in range(cells):
        body.append({"cell_type": "markdown", "metadata": {}, "source": f"## Step {number}"})
        source = f"x{number} = x{number - 1} + 1\nprint(x{number})" if number else "x0 = N"
        if number % 10 == 5:
            source = f"%time y{number} = sum(range(100))\n" + source
        body.append(
            {
                "cell_type": "code",
                "execution_count": cells - number if number == cells - 1 else number + 1,
                "metadata": {},
                "outputs": [{"output_type": "stream", "name": "stdout", "text": f"{number}\n"}],
                "source": source,
            }
        )
    body.append({"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [], "source": "N = 1"})
    return {
        "nbformat": 4,
        "nbformat_minor": 4,
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
        "cells": body,
    }


def timed(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, capture_output=True, check=False)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--cells", type=int, default=60)
    args = parser.parse_args()
    from ipyrepro.notebooks.lint import lint_notebook

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "nb.ipynb"
        path.write_text(json.dumps(notebook(args.cells)))
        base, lint = [], []
        inner_base, inner = [], []
        for _ in range(args.rounds):
            base.append(timed([sys.executable, "-c", "import ipyrepro.cli"]))
            lint.append(timed([sys.executable, "-m", "ipyrepro", "lint", str(path)]))
            start = time.perf_counter()
            json.loads(path.read_text())
            inner_base.append(time.perf_counter() - start)
            start = time.perf_counter()
            found = lint_notebook(path)
            inner.append(time.perf_counter() - start)
        fresh, importing = statistics.median(lint), statistics.median(base)
        print(
            f"1. fresh process: lint {fresh * 1000:.0f} ms vs start + import {importing * 1000:.0f} ms: "
            f"{fresh / importing:.2f}x (target <= 2x)"
        )
        within, reading = statistics.median(inner), statistics.median(inner_base)
        print(
            f"2. in one process: lint {within * 1000:.1f} ms vs json.load {reading * 1000:.2f} ms: "
            f"{within / reading:.0f}x ({len(found.findings)} findings, {args.cells} code cells)"
        )


if __name__ == "__main__":
    main()
