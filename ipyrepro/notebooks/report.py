"""The check's report: the runs, what differed cell by cell, the causes, the exit code, text and JSON."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from ..comparison.findings import Cause
from .checkcauses import CheckCauses
from .notebookfile import Cell
from .outputs import IGNORE_TAGS, Comparison, Item, full_diff, output_items, short_diff

# -- running ---------------------------------------------------------------------------


@dataclass
class Run:
    """One execution of the notebook: the outputs of each code cell, or where and why it stopped."""

    number: int
    outputs: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    error: str | None = None
    fatal: bool = False  # the kernel could not start: every further run would fail the same way
    error_cell: int | None = None  # the index of the cell the run stopped at; None: not at a cell

    @property
    def complete(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class Difference:
    cell: Cell
    runs: tuple[int, int]
    what: str  # the output that differs: stdout, text/plain, image/png, "outputs" (different outputs)
    detail: str
    image: bool = False
    diff: str = ""  # the full unified diff, for --json

    def text(self) -> str:
        return f"{self.cell.label()}: {self.what} differs between run {self.runs[0]} and run {self.runs[1]}\n" + (
            f"{self.cell.head()}\n{self.detail}"
        )

    def image_line(self) -> str:
        return f"  {self.cell.label()}: {self.what} differs between run {self.runs[0]} and run {self.runs[1]}" + (
            f" ({self.detail.strip()})" if self.detail else ""
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.cell.index,
            "code_index": self.cell.code_index,
            "cell_id": self.cell.cell_id,
            "source": self.cell.source,
            "runs": list(self.runs),
            "output": self.what,
            "image": self.image,
            "detail": self.detail,
            "diff": self.diff,
        }


@dataclass
class CheckReport:
    """What `check` found; `exit_code` is 0 (all matched), 1 (something differed) or 2 (errors)."""

    notebook: str
    kernel: str
    mode: str
    runs: list[Run]
    cells: list[Cell]
    differences: list[Difference] = field(default_factory=list)
    causes: CheckCauses | None = None  # from the diagnostic kernel, run only when something differed
    kernel_note: str = ""  # e.g. --as-is replaced an ipyrepro kernel with a plain one

    @property
    def errors(self) -> list[str]:
        return [f"run {run.number}: {run.error}" for run in self.runs if run.error]

    @property
    def ok(self) -> bool:
        return not self.errors and not self.differences

    @property
    def exit_code(self) -> int:
        return 2 if self.errors else 1 if self.differences else 0

    def header(self) -> str:
        runs = f"{len(self.runs)} run(s) in fresh {self.kernel!r} kernels"
        return f"ipyrepro check {self.notebook}: {runs}, {self.mode}" + (
            f"; {self.kernel_note}" if self.kernel_note else ""
        )

    def __str__(self) -> str:
        lines = [self.header()]
        lines += [f"Error in {text}" for text in self.errors]
        text = [d for d in self.differences if not d.image]
        images = [d for d in self.differences if d.image]
        for difference in text:
            lines.append(difference.text())
            if difference is self._first_of(difference.cell.index) and self.causes is not None:
                found = self.cell_causes(difference.cell.index)
                lines += [f"    cause: {cause.text()}" for cause in found]
                if not found and self.causes.status == "done":
                    lines.append("    cause: none ran in this cell; it may use a value from an earlier differing cell")
        if self.causes is not None and self.causes.hash_order_cells:
            lines.append("Reproduces here only because PYTHONHASHSEED is fixed (output changes with another one):")
            for index in self.causes.hash_order_cells:
                cell = next(cell for cell in self.cells if cell.index == index)
                lines.append(f"  {cell.label()}\n{cell.head()}")
                lines += [f"    cause: {cause.text()}" for cause in self.cell_causes(index)]
        if self.causes is not None and self.causes.status != "done":
            lines.append(f"Causes: the diagnostic run {self.causes.status}")
        if images:
            lines.append("Images (compared by exact bytes):")
            lines += [d.image_line() for d in images]
        complete = sum(run.complete for run in self.runs)
        if complete < 2:
            compared = "nothing to compare (fewer than 2 complete runs)"
        else:
            cells = {d.cell.index for d in self.differences}
            compared = (
                f"{len(cells)} of {len(self.cells)} code cells differ ({len(text)} text/data outputs, "
                f"{len(images)} images)"
                if cells
                else f"all {len(self.cells)} code cells matched"
            )
        verdict = {0: "OK", 1: "DIFFERS", 2: "ERROR"}[self.exit_code]
        lines.append(f"{verdict}: {compared}.")
        return "\n".join(lines)

    def _first_of(self, index: int) -> Difference | None:
        return next((d for d in self.differences if d.cell.index == index and not d.image), None)

    def cell_causes(self, index: int) -> list[Cause]:
        """The causes found for the cell at `index` (empty when none, or when no diagnostic run was made)."""
        return self.causes.by_cell.get(index, []) if self.causes is not None else []

    def to_dict(self) -> dict[str, Any]:
        causes = self.causes.by_cell if self.causes is not None else {}
        return {
            "notebook": self.notebook,
            "kernel": self.kernel,
            "mode": self.mode,
            "kernel_note": self.kernel_note,
            "runs": len(self.runs),
            "ok": self.ok,
            "exit_code": self.exit_code,
            "errors": self.errors,
            "differences": [
                {**d.to_dict(), "causes": [c.to_dict() for c in self.cell_causes(d.cell.index)]}
                for d in self.differences
            ],
            "causes": [
                {
                    "index": cell.index,
                    "cell_id": cell.cell_id,
                    "hash_order_only": cell.index in self.causes.hash_order_cells,  # type: ignore[union-attr]
                    "causes": [c.to_dict() for c in causes[cell.index]],
                }
                for cell in self.cells
                if cell.index in causes
            ],
            "causes_run": self.causes.status if self.causes is not None else None,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
TRACEBACK_FRAMES_SHOWN = 3
TRACEBACK_FRAME_LINES = 8


def traceback_tail(error: dict[str, Any] | None, frames: int = TRACEBACK_FRAMES_SHOWN) -> str:
    """The last frames of a kernel error's traceback, without colours: where in the cell it raised, by line."""
    if not error or not isinstance(error.get("traceback"), list):
        return ""
    entries = [_ANSI.sub("", str(entry)) for entry in error["traceback"]]
    # IPython sends a header, one entry per frame ("Cell In[3], line 2" and the lines around it), and the error.
    body = [entry for entry in entries[1:-1] if entry.strip()] if len(entries) > 2 else entries
    kept = []
    for entry in body[-frames:]:
        lines = entry.rstrip("\n").splitlines()
        kept += lines[:TRACEBACK_FRAME_LINES] + (["..."] if len(lines) > TRACEBACK_FRAME_LINES else [])
    return "\n".join(f"    | {line}" for line in kept)


def _current(run: Run, cells: list[Cell]) -> str:
    pending = [cell for cell in cells if cell.index not in run.outputs]
    return pending[0].label() if pending else "after the last cell"


def _compare(report: CheckReport, comparison: Comparison) -> None:
    complete = [run for run in report.runs if run.complete]
    if len(complete) < 2:
        return
    first = complete[0]
    for other in complete[1:]:
        for cell in report.cells:
            if any(tag in cell.tags for tag in IGNORE_TAGS):
                continue
            report.differences += _cell_differences(
                cell,
                output_items(first.outputs[cell.index], comparison),
                output_items(other.outputs[cell.index], comparison),
                (first.number, other.number),
                comparison,
            )


def _cell_differences(
    cell: Cell, a: list[Item], b: list[Item], runs: tuple[int, int], comparison: Comparison
) -> list[Difference]:
    if [item.label for item in a] != [item.label for item in b]:
        shown = [", ".join(item.label for item in items) or "no output" for items in (a, b)]
        detail = f"      run {runs[0]}: {shown[0]}\n      run {runs[1]}: {shown[1]}"
        return [Difference(cell, runs, "the list of outputs", detail)]
    found = []
    for x, y in zip(a, b):
        if x.image:
            if x.value != y.value:
                found.append(
                    Difference(
                        cell, runs, x.label, f"{len(x.value)} vs {len(y.value)} characters of base64", image=True
                    )
                )
        elif not comparison.same_text(x.value, y.value):
            found.append(
                Difference(
                    cell, runs, x.label, short_diff(x.value, y.value, *runs), diff=full_diff(x.value, y.value, *runs)
                )
            )
    return found


# -- per-cell verdicts -------------------------------------------------------------------


@dataclass(frozen=True)
class CellResult:
    """One code cell's share of a check, for faces that report per cell (the pytest plugin).

    `errors` are the runs that stopped at this cell, or failed before any cell (kernel start,
    `%repro on`); `compared` is False when fewer than two complete runs left nothing to compare.
    """

    cell: Cell
    differences: tuple[Difference, ...]
    errors: tuple[str, ...]
    compared: bool
    ignored: bool

    @property
    def ok(self) -> bool:
        return self.compared and not self.errors and not self.differences

    def text(self, report: CheckReport) -> str:
        """The lines of `ipyrepro check`'s report that concern this cell, under the report's header."""
        lines = [report.header()] + [f"Error in {error}" for error in self.errors]
        lines += [d.text() for d in self.differences if not d.image]
        if self.differences:
            lines += [f"    cause: {cause.text()}" for cause in report.cell_causes(self.cell.index)]
        images = [d.image_line() for d in self.differences if d.image]
        if images:
            lines += ["Images (compared by exact bytes):", *images]
        return "\n".join(lines)


def cell_results(report: CheckReport) -> list[CellResult]:
    """The report split by code cell, in notebook order: what each cell's own verdict rests on."""
    complete = sum(run.complete for run in report.runs) >= 2
    results = []
    for cell in report.cells:
        errors = tuple(
            f"run {run.number}: {run.error}"
            for run in report.runs
            if run.error and run.error_cell in (None, cell.index)
        )
        differences = tuple(d for d in report.differences if d.cell.index == cell.index)
        ignored = any(tag in cell.tags for tag in IGNORE_TAGS)
        results.append(CellResult(cell, differences, errors, complete, ignored))
    return results
