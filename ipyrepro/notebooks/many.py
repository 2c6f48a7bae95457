"""`ipyrepro check PATH…`: many notebooks in one command, with one budget of kernels.

Each notebook is checked as `check` checks one (its own report, unchanged); the notebooks run side by
side so that no more than `jobs` kernels run at once in all. The result is a `ManyReport`: every
report, then a summary table (notebook, verdict, cells compared, first divergence, time); its exit
code is the worst of them. A notebook that cannot be read is an error row (exit 2); the others still run.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .check import check, default_jobs
from .discover import find_notebooks
from .fingerprint import FingerprintError
from .notebookfile import NotebookError
from .progress import SLOW_CELL_SECONDS, CheckProgress, LabelledCell, as_progress
from .reportmodel import VERDICTS

MANY_SCHEMA_VERSION = 2  # the document for several notebooks; one notebook's report keeps its own version
MANY_SCHEMA_FILE = "check-many.schema.json"


COMPARED = ("matched", "differs", "reproduced-error")  # the outcomes of cells compared on two sides or more


@dataclass
class NotebookResult:
    """One notebook's share: its report, or why it could not be checked (`error`), and how long it took.

    The row is read from the report's model (reportmodel.py), as its text, JSON and HTML are."""

    path: Path
    report: Any = None  # a CheckReport; None when `error`
    error: str | None = None
    seconds: float = 0.0
    _model: Any = field(default=None, repr=False)

    @property
    def model(self) -> Any:
        """The report's ReportModel, built once; None when the notebook could not be checked."""
        if self._model is None and self.report is not None:
            self._model = self.report.model()
        return self._model

    @property
    def exit_code(self) -> int:
        return 2 if self.model is None else self.model.exit_code

    @property
    def verdict(self) -> str:
        return VERDICTS[self.exit_code]

    def counts(self) -> tuple[int, int] | None:
        """(code cells compared, code cells), or None when nothing ran."""
        if self.model is None:
            return None
        return sum(outcome.status in COMPARED for outcome in self.model.cells), len(self.model.cells)

    def compared(self) -> str:
        """`4 of 6`: the code cells compared, of all code cells; `-` when nothing ran."""
        counts = self.counts()
        return "-" if counts is None else f"{counts[0]} of {counts[1]}"

    def first_cell(self) -> Any:
        """Where the notebook first went apart: the first divergent state, else the first differing cell."""
        if self.model is None:
            return None
        if self.model.first is not None:
            return self.model.first.cell
        return next((outcome.cell for outcome in self.model.cells if outcome.differences), None)

    def first_divergence(self) -> str:
        cell = self.first_cell()
        return cell.where() if cell is not None else "-"

    def row(self) -> dict[str, Any]:
        counts = self.counts()
        first = self.first_cell()
        return {
            "notebook": str(self.path),
            "verdict": self.verdict,
            "exit_code": self.exit_code,
            "cells": counts[1] if counts is not None else None,
            "compared": counts[0] if counts is not None else None,
            "first_divergence": first.ref() if first is not None else None,
            "seconds": round(self.seconds, 3),
            "error": self.error,
        }


@dataclass
class ManyReport:
    """The reports of several notebooks, in the order they were named; `exit_code` is the worst."""

    results: list[NotebookResult] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return max((result.exit_code for result in self.results), default=0)

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    def table(self) -> str:
        """The summary table, one row per notebook, in plain text that lines up in a terminal or a CI log."""
        header = ("notebook", "verdict", "cells compared", "first divergence", "time")
        rows = [
            (str(r.path), r.verdict, r.compared(), r.first_divergence(), f"{r.seconds:.1f} s") for r in self.results
        ]
        widths = [max(len(row[column]) for row in [header, *rows]) for column in range(len(header))]

        def line(row: Sequence[str]) -> str:
            return "  ".join(text.ljust(width) for text, width in zip(row, widths)).rstrip()

        counts = {verdict: sum(r.verdict == verdict for r in self.results) for verdict in VERDICTS.values()}
        total = ", ".join(f"{count} {verdict}" for verdict, count in counts.items() if count)
        return "\n".join(
            [
                line(header),
                line(["-" * width for width in widths]),
                *map(line, rows),
                f"{VERDICTS[self.exit_code]}: {len(self.results)} notebooks ({total}).",
            ]
        )

    def __str__(self) -> str:
        parts = []
        for result in self.results:
            parts.append(
                str(result.report) if result.report is not None else f"ipyrepro check {result.path}: {result.error}"
            )
        return "\n\n".join([*parts, "Summary:\n" + self.table()])

    def to_dict(self) -> dict[str, Any]:
        """The `--json` document for several notebooks (check-many.schema.json): the summary rows, and each
        notebook's report in the shape of check-report.schema.json."""
        return {
            "schema": MANY_SCHEMA_VERSION,
            "ok": self.ok,
            "exit_code": self.exit_code,
            "summary": [result.row() for result in self.results],
            "reports": [result.report.to_dict() for result in self.results if result.report is not None],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


def check_many(
    paths: Sequence[str | os.PathLike[str]],
    *,
    jobs: int | None = None,
    progress: CheckProgress | Callable[[str], None] | None = None,
    **options: Any,
) -> ManyReport:
    """Check every notebook `paths` name (files, and folders searched recursively: see discover.py).

    `options` are `check`'s. No more than `jobs` kernels run at once in all (default: two per notebook's
    runs, capped by the CPUs): each notebook gets up to `--runs` of them, and as many notebooks as fit
    run side by side. A folder without notebooks, or a missing path, raises NoNotebooks (a ValueError).
    """
    notebooks = find_notebooks(paths)
    against_saved = bool(options.get("against_saved"))
    runs = options.get("runs") or (1 if against_saved else 2)
    if jobs is not None and (isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1):
        raise ValueError(f"--jobs must be an integer >= 1; got {jobs!r}")
    budget = jobs if jobs is not None else default_jobs(runs * len(notebooks))
    per_notebook = max(1, min(runs, budget))
    side_by_side = max(1, budget // per_notebook)
    shown = as_progress(progress)

    def one(path: Path) -> NotebookResult:
        started = time.monotonic()
        result = NotebookResult(path)
        try:
            result.report = check(path, jobs=per_notebook, progress=NotebookProgress(shown, str(path)), **options)
        except (NotebookError, FingerprintError) as error:
            result.error = str(error)
        result.seconds = time.monotonic() - started
        shown.note(f"{path}: {result.verdict} ({result.seconds:.1f} s)")
        return result

    if side_by_side <= 1 or len(notebooks) <= 1:
        return ManyReport([one(path) for path in notebooks])
    with ThreadPoolExecutor(max_workers=min(side_by_side, len(notebooks)), thread_name_prefix="ipyrepro-many") as pool:
        return ManyReport(list(pool.map(one, notebooks)))


class NotebookProgress(CheckProgress):
    """One notebook's progress among several: whole lines that name the notebook, on the shared display."""

    def __init__(self, shown: CheckProgress, name: str, *, slow_after: float = SLOW_CELL_SECONDS) -> None:
        self.shown, self.name, self.slow_after = shown, name, slow_after

    def run_started(self, number: int, runs: int, kernel: str) -> None:
        self.shown.note(f"{self.name}: run {number} of {runs}: starting kernel {kernel!r}")

    def cell_finished(self, number: int, position: int, total: int, cell: LabelledCell, seconds: float) -> None:
        if seconds >= self.slow_after:
            self.shown.note(f"{self.name}: run {number}: {cell.label()} ({position} of {total}) took {seconds:.1f} s")

    def run_finished(self, number: int, cells_run: int, total: int, seconds: float, error: str | None) -> None:
        if error is None:
            self.shown.note(f"{self.name}: run {number}: done, {total} code cells in {seconds:.1f} s")
        else:
            self.shown.note(
                f"{self.name}: run {number}: stopped after {cells_run} of {total} code cells: {error.splitlines()[0]}"
            )

    def note(self, text: str) -> None:
        self.shown.note(f"{self.name}: {text}")


def many_schema() -> dict[str, Any]:
    """The JSON Schema of the several-notebooks document, as shipped with the package."""
    from importlib.resources import files

    return json.loads(files(__package__).joinpath(MANY_SCHEMA_FILE).read_text(encoding="utf-8"))


__all__ = ["MANY_SCHEMA_VERSION", "ManyReport", "NotebookResult", "check_many", "many_schema"]
