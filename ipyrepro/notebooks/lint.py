"""`ipyrepro lint NB…`: what the saved notebook itself shows about how it was run; no kernel, nothing runs.

Read from the file alone, in well under a second per notebook:

- saved execution counts that do not rise top to bottom (the notebook ran out of order);
- code cells never executed between executed ones (outputs below them came without them);
- names read before any cell above binds them, top to bottom (the analysis hiddenstate.py's finder
  uses): they only existed because a later cell ran first;
- outputs saved by another kernel than the metadata says: `metadata.kernelspec.language` against the
  `language_info` the kernel wrote, and Python versions named in saved tracebacks and warnings
  (`.../python3.8/...`) against `language_info.version`;
- with `random`, randomness visible in the code with no seed call above (lintrandom.py).

Each finding names the cell as an editor numbers it (`cell 3 of 12`), the name and the saved counts.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .hiddenstate import cell_bindings
from .lintrandom import Aliases, random_calls
from .notebookfile import Cell, NotebookError, load_notebook
from .reads import parse_cell, reads_before_binding

LINT_SCHEMA_VERSION = 1
KINDS = ("out-of-order", "never-executed", "read-before-bound", "other-kernel", "unseeded-random")
_PYTHON_IN_PATH = re.compile(r"[/\\]python(3\.\d+)[/\\]", re.IGNORECASE)


def counted(cell: Cell) -> str:
    """`In [5]` as saved, or `never executed`."""
    return f"In [{cell.execution_count}]" if cell.execution_count is not None else "never executed"


@dataclass(frozen=True)
class Finding:
    """One thing the saved notebook shows; `cell` is where it is, `other` the cell it is about, if any."""

    kind: str  # one of KINDS
    cell: Cell
    text: str
    name: str | None = None
    line: int | None = None
    other: Cell | None = None

    def counts(self) -> dict[str, int | None]:
        """The saved execution counts the finding rests on, by cell (`cell 3 of 12`)."""
        cells = [self.cell] + ([self.other] if self.other is not None else [])
        return {cell.where(): cell.execution_count for cell in cells}

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "cell": self.cell.ref(),
            "name": self.name,
            "line": self.line,
            "other_cell": self.other.ref() if self.other is not None else None,
            "counts": self.counts(),
            "text": self.text,
        }


@dataclass
class NotebookLint:
    """One notebook's findings, or why it could not be read (`error`, exit 2)."""

    path: Path
    findings: list[Finding] = field(default_factory=list)
    code_cells: int = 0
    error: str | None = None
    seconds: float = 0.0

    @property
    def exit_code(self) -> int:
        return 2 if self.error else 1 if self.findings else 0

    def text(self) -> str:
        if self.error:
            return f"{self.path}: {self.error}"
        if not self.findings:
            return f"{self.path}: clean ({self.code_cells} code cells)"
        return "\n".join(
            f"{self.path}: {finding.cell.where()} ({counted(finding.cell)}): {finding.text}"
            for finding in self.findings
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "notebook": str(self.path),
            "code_cells": self.code_cells,
            "exit_code": self.exit_code,
            "error": self.error,
            "seconds": round(self.seconds, 4),
            "findings": [finding.to_dict() for finding in self.findings],
        }


@dataclass
class LintReport:
    """`ipyrepro lint`'s result: exit 0 clean, 1 on findings, 2 when a notebook could not be read (2 wins)."""

    notebooks: list[NotebookLint]

    @property
    def exit_code(self) -> int:
        return max((notebook.exit_code for notebook in self.notebooks), default=0)

    def __str__(self) -> str:
        found = sum(len(notebook.findings) for notebook in self.notebooks)
        verdict = {0: "clean", 1: f"{found} finding{'s' * (found != 1)}", 2: "error"}[self.exit_code]
        lines = [notebook.text() for notebook in self.notebooks]
        return "\n".join([*lines, f"ipyrepro lint: {verdict} in {len(self.notebooks)} notebook(s)."])

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": LINT_SCHEMA_VERSION,
            "ok": self.exit_code == 0,
            "exit_code": self.exit_code,
            "notebooks": [notebook.to_dict() for notebook in self.notebooks],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


def lint(paths: Sequence[str | os.PathLike[str]], *, random: bool = False) -> LintReport:
    """Lint every notebook `paths` name (files, and folders as `check` searches them)."""
    from .discover import find_notebooks

    return LintReport([lint_notebook(path, random=random) for path in find_notebooks(paths)])


def lint_notebook(path: str | os.PathLike[str], *, random: bool = False) -> NotebookLint:
    """One notebook's findings, in cell order."""
    started = time.monotonic()
    result = NotebookLint(Path(path))
    try:
        cells, metadata = load_notebook(path)
    except NotebookError as error:
        result.error = str(error)
        return result
    result.code_cells = len(cells)
    findings = out_of_order(cells) + never_executed(cells) + read_before_bound(cells) + other_kernel(cells, metadata)
    if random:
        findings += unseeded_random(cells)
    result.findings = sorted(findings, key=lambda finding: (finding.cell.index, KINDS.index(finding.kind)))
    result.seconds = time.monotonic() - started
    return result


def out_of_order(cells: list[Cell]) -> list[Finding]:
    """Each cell saved with a count not above the count of the executed cell just above it."""
    executed = [cell for cell in cells if cell.execution_count is not None]
    return [
        Finding(
            "out-of-order",
            after,
            f"saved as In [{after.execution_count}] below {before.where()}, saved as In [{before.execution_count}]: "
            "the counts do not rise top to bottom, so the cells ran out of order (restart the kernel and run all, "
            "then save)",
            other=before,
        )
        for before, after in zip(executed, executed[1:])
        if after.execution_count <= before.execution_count  # type: ignore[operator]
    ]


def never_executed(cells: list[Cell]) -> list[Finding]:
    """Cells with code and no saved count, between executed cells."""
    found = []
    for position, cell in enumerate(cells):
        if cell.execution_count is not None or not cell.source.strip():
            continue
        above = next((c for c in reversed(cells[:position]) if c.execution_count is not None), None)
        below = next((c for c in cells[position + 1 :] if c.execution_count is not None), None)
        if above is not None and below is not None:
            found.append(
                Finding(
                    "never-executed",
                    cell,
                    f"never executed, between {above.where()} (In [{above.execution_count}]) and {below.where()} "
                    f"(In [{below.execution_count}]): the outputs below were saved without it",
                    other=below,
                )
            )
    return found


def read_before_bound(cells: list[Cell]) -> list[Finding]:
    """Names a cell reads that no cell above binds (top to bottom) and a later cell does."""
    parsed = [parse_cell(cell.source) for cell in cells]
    binds = [cell_bindings(cell.source).names for cell in cells]
    found = []
    above: set[str] = set()
    for position, (cell, tree) in enumerate(zip(cells, parsed)):
        reads, bound = reads_before_binding(*tree) if tree is not None else ({}, set())
        for name, line in reads.items():
            if name in above:
                continue
            later = next(((c, binds[i][name]) for i, c in enumerate(cells) if i > position and name in binds[i]), None)
            if later is None:  # bound by no cell: a `%run`, a star import, a typo; not hidden state
                continue
            binder, binding = later
            found.append(
                Finding(
                    "read-before-bound",
                    cell,
                    f"reads `{name}` at line {line}, but no cell above binds it; {binder.where()} ({counted(binder)}) "
                    f"binds it at line {binding.line} ({binding.how}): run top to bottom, `{name}` does not exist "
                    "yet here",
                    name,
                    line,
                    binder,
                )
            )
        above |= set(binds[position]) | bound
    return found


def other_kernel(cells: list[Cell], metadata: dict[str, Any]) -> list[Finding]:
    """Outputs saved by another kernel than the metadata says, as far as the file shows it."""
    found = []
    info = metadata.get("language_info") if isinstance(metadata.get("language_info"), dict) else {}
    spec = metadata.get("kernelspec") if isinstance(metadata.get("kernelspec"), dict) else {}
    executed = [cell for cell in cells if cell.execution_count is not None]
    language, ran = spec.get("language"), info.get("name")
    if executed and isinstance(language, str) and isinstance(ran, str) and language.lower() != ran.lower():
        found.append(
            Finding(
                "other-kernel",
                executed[0],
                f"metadata.kernelspec says a {language} kernel ({spec.get('name')!r}), but the outputs were saved by "
                f"a {ran} kernel (metadata.language_info); run all cells in the kernel you mean and save",
                ran,
            )
        )
    version = str(info.get("version") or "")
    minor = ".".join(version.split(".")[:2])
    if not minor or (ran or "python").lower() != "python":
        return found
    for cell in cells:
        for output in cell.saved_outputs:
            text = "\n".join(str(line) for line in output.get("traceback") or ()) + str(output.get("text") or "")
            other = next((m.group(1) for m in _PYTHON_IN_PATH.finditer(text) if m.group(1) != minor), None)
            if other is not None:
                found.append(
                    Finding(
                        "other-kernel",
                        cell,
                        f"its saved output names Python {other} (a path like .../python{other}/...), but "
                        f"metadata.language_info says Python {version}: this output came from another kernel",
                        f"python{other}",
                    )
                )
                break
    return found


def unseeded_random(cells: list[Cell]) -> list[Finding]:
    """Random draws in the code with no seed call above them (see lintrandom.py)."""
    aliases, seeded, found = Aliases(), False, []
    for cell in cells:
        tree = parse_cell(cell.source)
        if tree is None:
            continue
        calls, seeded = random_calls(tree[0], tree[1], aliases, seeded)
        for name in dict.fromkeys(name for name, _line in calls):
            line = next(line for called, line in calls if called == name)
            found.append(
                Finding(
                    "unseeded-random",
                    cell,
                    f"calls `{name}` at line {line} with no seed call above it (torch.manual_seed, "
                    "np.random.seed, random.seed, `%repro on`): its result changes from run to run",
                    name,
                    line,
                )
            )
    return found
