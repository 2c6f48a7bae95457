"""Errors that follow from an earlier error: a `NameError` for a name a cell that raised was to bind.

`from helper_functions import plot_loss_curves` fails when helper_functions.py cannot import torchvision;
every later cell that calls `plot_loss_curves` then raises `NameError`. Those are one error, not seven:
the report groups them under the cell that raised first, and the fix points there. Found from the code
(hiddenstate.py's name analysis) and the error outputs alone; nothing runs.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .hiddenstate import cell_bindings, error_line, missing_from

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_FILE_FRAME = re.compile(r'File (?:"([^"]+)", line (\d+)|(\S+?):(\d+))')
_MODULE = re.compile(r"No module named '([^']+)'")


@dataclass(frozen=True)
class Cascade:
    """`cell` raised `NameError` for `name`, which `origin` (a cell that raised before it) was to bind;
    `root` is the first error of the chain (the origin itself unless the origin follows from another)."""

    cell: Any  # notebookfile.Cell
    name: str
    origin: Any
    root: Any
    ename: str  # the root's error
    evalue: str
    where: str  # `helper_functions.py line 170`, or `line 3` (of the root cell)

    def error_text(self) -> str:
        """`ModuleNotFoundError: torchvision`, else `ename: evalue`."""
        module = _MODULE.search(self.evalue)
        if self.ename == "ModuleNotFoundError" and module:
            return f"{self.ename}: {module.group(1)}"
        return f"{self.ename}: {self.evalue}"

    def text(self) -> str:
        """`follows from cell 55: `ModuleNotFoundError: torchvision` in helper_functions.py line 170`."""
        where = f" at {self.where}" if self.where.startswith("line") else f" in {self.where}" if self.where else ""
        return f"follows from cell {self.root.position}: `{self.error_text()}`{where}"

    def fix(self) -> str:
        return (
            f"fix the first error, in {self.root.label()}; `{self.name}` was to be bound by "
            f"{'that cell' if self.origin is self.root else self.origin.label()}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "cell": self.cell.ref(),
            "name": self.name,
            "origin": self.origin.ref(),
            "root": self.root.ref(),
            "ename": self.ename,
            "evalue": self.evalue,
            "where": self.where,
            "text": self.text(),
            "fix": self.fix(),
        }


def find_cascades(cells: Sequence[Any], errors: Mapping[int, Mapping[str, Any]]) -> list[Cascade]:
    """For each cell that raised `NameError` (`errors`: cell index -> its error output), the nearest earlier cell
    that raised and binds the name at or after the line it raised at."""
    order = list(cells)
    found: dict[int, Cascade] = {}
    for position, cell in enumerate(order):
        error = errors.get(cell.index)
        missing = missing_from(str(error.get("ename", "")), str(error.get("evalue", ""))) if error else None
        if missing is None or missing.kind != "name":
            continue
        for earlier in reversed(order[:position]):
            failed = errors.get(earlier.index)
            if not failed:
                continue
            binding = cell_bindings(earlier.source).names.get(missing.name)
            raised_at = error_line(failed.get("traceback"))
            if binding is None or (raised_at is not None and binding.line < raised_at):
                continue
            root, root_error = earlier, failed
            if earlier.index in found:  # the origin follows from another error itself: point at the first
                first = found[earlier.index]
                root, root_error = first.root, errors[first.root.index]
            found[cell.index] = Cascade(
                cell,
                missing.name,
                earlier,
                root,
                str(root_error.get("ename", "")),
                str(root_error.get("evalue", "")),
                raised_where(root_error.get("traceback")),
            )
            break
    return list(found.values())


def raised_where(traceback: Any) -> str:
    """Where an error was raised: `helper_functions.py line 170` for a file, `line 3` for the cell itself."""
    if not isinstance(traceback, list):
        return ""
    last = ""
    for entry in traceback:
        text = _ANSI.sub("", str(entry))
        for match in _FILE_FRAME.finditer(text):
            path, line = (match.group(1), match.group(2)) if match.group(1) else (match.group(3), match.group(4))
            if _library(path):
                continue
            last = f"{os.path.basename(path.rstrip(','))} line {line}"
    if last:
        return last
    line = error_line(traceback)
    return f"line {line}" if line is not None else ""


def _library(path: str) -> bool:
    """Frames of Python's own import machinery and installed packages are not where the user's error is."""
    return path.startswith("<frozen") or "site-packages" in path or "dist-packages" in path


def explain_errors(report: Any) -> None:
    """Against the saved outputs (without --strict): a cell that raised here for a package missing here, where
    the saved outputs show no such error, and the errors that follow from it, are this machine's; their
    differences become `environment` ones and they do not fail the check."""
    from dataclasses import replace

    from .savedenv import ENVIRONMENT, installed_here, missing_here
    from .verdicts import error_output

    if not report.against_saved or report.strict:
        return
    saved = {cell.index: cell.saved_outputs for cell in report.cells}
    for run in report.runs:
        for index, error in run.raised.items():
            if not error or index in report.explained_errors:
                continue
            package = missing_here(str(error.get("ename", "")), str(error.get("evalue", "")), installed_here)
            if package and not any(output.get("output_type") == "error" for output in saved.get(index, ())):
                report.explained_errors[index] = f"{package} missing here"
    for cascade in report.cascades:
        why = report.explained_errors.get(cascade.root.index)
        if why and error_output(list(saved.get(cascade.cell.index, ()))) is None:
            report.explained_errors[cascade.cell.index] = f"{why}; it {cascade.text()}"
    report.differences = [
        replace(d, kind=ENVIRONMENT, explained=report.explained_errors[d.cell.index])
        if d.cell.index in report.explained_errors and d.fails
        else d
        for d in report.differences
    ]
