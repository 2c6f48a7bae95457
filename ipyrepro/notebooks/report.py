"""The check's report: the runs, what differed cell by cell, the causes, the exit code, text and JSON."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..comparison.findings import Cause
from .checkcauses import CheckCauses
from .hiddenstate import KIND as HIDDEN_STATE
from .notebookfile import Cell
from .outputs import (
    ANSI,
    IGNORE_TAGS,
    RAISES_TAG,
    SAVED,
    Comparison,
    Item,
    full_diff,
    short_diff,
    side_name,
    traceback_tail,
)
from .savedenv import ENVIRONMENT, NUMERIC
from .statecheck import (
    CellState,
    StateReport,
    inherits_text,
)

if TYPE_CHECKING:
    from .cascades import Cascade
    from .hiddenstate import HiddenState
    from .reportmodel import ReportModel
    from .verdicts import ReproducedError

# -- running ---------------------------------------------------------------------------

STOP_KINDS = ("kernel-start", "setup", "kernel-died", "timeout", "kernel", "cell-raised")


@dataclass
class Run:
    """One execution of the notebook: the outputs of each code cell that ran, the cells that raised
    unexpectedly, and where and why the run ended early (`error`), if it did."""

    number: int
    outputs: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    error: str | None = None  # why the run ended before the last cell; None: it reached the end
    fatal: bool = False  # the kernel could not start: every further run would fail the same way
    error_cell: int | None = None  # the index of the cell the run stopped at; None: not at a cell
    collected: Any = None  # --save/--against: the kernel's environment and op trace (run 1), or an error text
    stop_kind: str = ""  # one of STOP_KINDS when the run ended early
    raised: dict[int, dict[str, Any] | None] = field(default_factory=dict)  # untagged cells that raised
    states: dict[int, CellState] = field(default_factory=dict)  # cell index -> state digests after it
    state_error: str | None = None  # why the kernel could not digest its state, first time (digests go on)
    state_failures: int = 0  # cells after which the digest failed (their states are missing)

    def note_state_error(self, error: str) -> None:
        """One cell's digest failed: the first reason is kept, the others counted; later cells are still digested."""
        self.state_failures += 1
        if self.state_error is None:
            self.state_error = error
        else:
            first = self.state_error.split(" (and ")[0]
            self.state_error = f"{first} (and {self.state_failures - 1} more cells)"

    @property
    def complete(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class RunError:
    """Something that makes the check exit 2: an untagged cell that raised, or a run that ended early."""

    run: int
    cell: Cell | None
    kind: str  # one of STOP_KINDS
    text: str
    error: dict[str, Any] | None = None  # the error output, when a cell raised
    reproduced: bool = False  # the same exception in every run: listed once, under reproduced errors
    stopped_run: bool = False
    follows: Cascade | None = None  # a NameError for a name an earlier failed cell was to bind
    environment: str = ""  # what on this machine explains it (a package missing here): it does not fail the check

    def to_dict(self) -> dict[str, Any]:
        error = self.error or {}
        return {
            "run": self.run,
            "cell": self.cell.ref() if self.cell is not None else None,
            "kind": self.kind,
            "ename": error.get("ename"),
            "evalue": error.get("evalue"),
            "traceback": [ANSI.sub("", str(line)) for line in error.get("traceback") or ()],
            "reproduced": self.reproduced,
            "stopped_run": self.stopped_run,
            "text": f"run {self.run}: {self.text}",
            "follows_from": self.follows.to_dict() if self.follows is not None else None,
            "environment": self.environment or None,
        }


@dataclass(frozen=True)
class Difference:
    cell: Cell
    runs: tuple[int, int]  # SAVED (0) is the outputs saved in the notebook
    what: str  # the output that differs: stdout, text/plain, image/png, "outputs" (different outputs)
    detail: str
    image: bool = False
    diff: str = ""  # the full unified diff, for --json
    values: tuple[str, str] = ("", "")  # both sides as compared
    kind: str = "value"  # savedenv.KINDS: value, numeric (numbers beyond the tolerance), environment
    explained: str = ""  # environment: what explains it ("torch 1.12.1+cu113 there, 2.13.0+cpu here")
    largest_relative: float | None = None  # numeric: the largest relative difference of its numbers
    within_tolerance: bool = False  # numeric, against the saved outputs: within --rtol/--atol, reported, not failing

    @property
    def fails(self) -> bool:
        """Whether it fails the check: values and numbers beyond the tolerance do; the environment does not."""
        return self.kind != ENVIRONMENT and not self.within_tolerance

    def kind_text(self) -> str:
        """What the report says after the difference: its explanation or its largest relative difference."""
        if self.kind == ENVIRONMENT:
            return self.explained or "the environment"
        if self.kind == NUMERIC and self.largest_relative is not None:
            within = " (within the tolerance: it does not fail the check)" if self.within_tolerance else ""
            return f"numbers only, largest relative difference {self.largest_relative:.3g}{within}"
        return ""

    def between(self) -> str:
        return f"between {side_name(self.runs[0])} and {side_name(self.runs[1])}".replace("saved", "the saved outputs")

    def text(self) -> str:
        return f"{self.cell.label()}: {self.what} differs {self.between()}\n{self.cell.head()}\n{self.detail}"

    def image_line(self) -> str:
        return f"  {self.cell.label()}: {self.what} differs {self.between()}" + (
            f" ({self.detail.strip()})" if self.detail else ""
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "cell": self.cell.ref(),
            "mime": "outputs" if self.what == LIST_OF_OUTPUTS else self.what,
            "image": self.image,
            "sides": [
                {"run": "saved" if number == SAVED else number, "value": value}
                for number, value in zip(self.runs, self.values)
            ],
            "detail": self.detail,
            "diff": self.diff,
            "kind": self.kind,
            "explained": self.explained,
            "largest_relative": self.largest_relative,
            "within_tolerance": self.within_tolerance,
        }


LIST_OF_OUTPUTS = "the list of outputs"


@dataclass
class CheckReport:
    """What `check` found; `exit_code` is 0 (all matched), 1 (something differed) or 2 (a cell not tagged
    raises-exception raised, or a run ended early; 2 wins)."""

    notebook: str
    kernel: str
    mode: str
    runs: list[Run]
    cells: list[Cell]
    differences: list[Difference] = field(default_factory=list)
    causes: CheckCauses | None = None  # diagnostic kernel's causes (when something differed) and hidden state
    kernel_note: str = ""  # e.g. --as-is replaced an ipyrepro kernel with a plain one
    seed: int | None = None  # the seed and re-seed mode the runs were set up with (None: --as-is)
    reseed: str | None = None
    machines: Any = None  # --save / --against: a machines.MachineResult

    against_saved: bool = False
    rtol: float = 0.0  # the tolerance numbers in text were compared with
    atol: float = 0.0
    requested: int = 0  # the runs asked for; more than len(runs) when the kernel could not start
    saved_mode: str = ""  # against saved: why the runs ran in this mode (as the notebook was saved, or an option)
    strict: bool = False  # --strict: no environment patterns, outputs saved without a count not compared
    stop_on_error: bool = False
    reproduced: list[ReproducedError] = field(default_factory=list)
    compared: set[int] = field(default_factory=set)  # indexes of the cells compared on at least two sides
    not_saved: list[Cell] = field(default_factory=list)  # --against-saved: not run when saved (no count, no outputs)
    without_count: list[Cell] = field(default_factory=list)  # outputs saved without an execution count, compared
    hidden_state: list[HiddenState] = field(default_factory=list)
    cascades: list[Cascade] = field(default_factory=list)  # NameErrors that follow from an earlier failed cell
    explained_errors: dict[int, str] = field(default_factory=dict)  # against saved: errors a missing package explains
    out_of_order: str = ""  # the sentence saying the saved execution counts do not rise, or ''

    def run_errors(self) -> list[RunError]:
        """Every error, run by run: untagged cells that raised, then how the run ended early."""
        by_index = {cell.index: cell for cell in self.cells}
        reproduced = {error.cell.index for error in self.reproduced}
        cascades = {cascade.cell.index: cascade for cascade in self.cascades}
        found = []
        for run in self.runs:
            for index, error in sorted(run.raised.items()):
                cell, follows = by_index[index], cascades.get(index)
                found.append(
                    RunError(
                        run.number,
                        cell,
                        "cell-raised",
                        raised_text(cell, error, follows),
                        error,
                        index in reproduced,
                        follows=follows,
                        environment=self.explained_errors.get(index, ""),
                    )
                )
            if run.error is not None:
                cell = by_index.get(run.error_cell) if run.error_cell is not None else None
                found.append(RunError(run.number, cell, run.stop_kind or "kernel", run.error, stopped_run=True))
        return found

    state: StateReport = field(default_factory=lambda: StateReport(enabled=False))  # per-cell state digests

    @property
    def errors(self) -> list[str]:
        found = [f"run {error.run}: {error.text}" for error in self.run_errors() if not error.environment]
        if self.machines is not None and self.machines.error:
            found.append(f"run 1: {self.machines.error}")
        return found

    @property
    def ok(self) -> bool:
        return not self.errors and not self.failing and not (self.machines is not None and self.machines.differs)

    @property
    def failing(self) -> list[Difference]:
        """The differences that fail the check: values, and numbers beyond the tolerance (not the environment)."""
        return [d for d in self.differences if d.fails]

    @property
    def environment(self) -> list[Difference]:
        """The differences this machine explains (against the saved outputs): reported, exit 0."""
        return [d for d in self.differences if d.kind == ENVIRONMENT]

    @property
    def exit_code(self) -> int:
        return 2 if self.errors else 0 if self.ok else 1

    def header(self) -> str:
        started = len(self.runs)
        runs = f"{started} run(s) in fresh {self.kernel!r} kernels"
        if self.requested > started:  # the kernel could not start: the runs after the first were not tried
            runs = f"{started} of {self.requested} runs in fresh {self.kernel!r} kernels (the kernel could not start)"
        saved = ", compared with the saved outputs" if self.against_saved else ""
        return f"ipyrepro check {self.notebook}: {runs}, {self.mode}{saved}" + (
            f"; {self.kernel_note}" if self.kernel_note else ""
        )

    def __str__(self) -> str:
        from .reporttext import report_text

        return report_text(self)

    def position(self, index: int) -> str:
        """`cell 8 of 36` for the cell at `index`."""
        cell = next((cell for cell in self.cells if cell.index == index), None)
        return cell.where() if cell is not None else f"cell {index + 1}"

    def divergence_causes(self) -> list[Cause]:
        """The causes traced from the first divergence on, each once, strongest first."""
        return list(self.causes.ranked) if self.causes is not None else []

    def prints(self, index: int) -> bool:
        """Whether the cell printed or displayed anything in the reference run."""
        run = next((run for run in self.runs if run.states or run.outputs), None)
        return bool(run is not None and run.outputs.get(index))

    def _first_of(self, index: int) -> Difference | None:
        return next((d for d in self.differences if d.cell.index == index and not d.image), None)

    def cell_causes(self, index: int) -> list[Cause]:
        """The causes found for the cell at `index` (empty when none, or when no diagnostic run was made)."""
        return self.causes.by_cell.get(index, []) if self.causes is not None else []

    def model(self) -> ReportModel:
        """The report cell by cell, as every face (text, JSON, HTML) draws it (reportmodel.py)."""
        from .reportmodel import build_model

        return build_model(self)

    def to_dict(self) -> dict[str, Any]:
        """The `--json` report; its shape is `check-report.schema.json`, version SCHEMA_VERSION."""
        from .checkjson import report_dict

        return report_dict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, allow_nan=False)


def raised_text(cell: Cell, error: dict[str, Any] | None, follows: Cascade | None = None) -> str:
    """`cell 4 of 9 (...) raised NameError: ...`, the cell's first lines and the traceback's last frames; an error
    that follows from an earlier one says so and points at it instead."""
    reason = f"{error['ename']}: {error['evalue']}" if error else "an error"
    if follows is not None:
        return f"{cell.label()} raised {reason}; it {follows.text()}\n    fix: {follows.fix()}"
    frames = traceback_tail(error)
    return (
        f"{cell.label()} raised {reason} (not tagged {RAISES_TAG!r}: tag the cell if the error is expected)\n"
        f"{cell.head()}" + (f"\n    Traceback (last frames):\n{frames}" if frames else "")
    )


def _current(run: Run, cells: list[Cell]) -> str:
    pending = [cell for cell in cells if cell.index not in run.outputs]
    return pending[0].label() if pending else "after the last cell"


def cell_differences(
    cell: Cell, a: list[Item], b: list[Item], runs: tuple[int, int], comparison: Comparison
) -> list[Difference]:
    if [item.label for item in a] != [item.label for item in b]:
        shown = [", ".join(item.label for item in items) or "no output" for items in (a, b)]
        names = [side_name(number) for number in runs]
        detail = f"      {names[0]}: {shown[0]}\n      {names[1]}: {shown[1]}"
        return [Difference(cell, runs, LIST_OF_OUTPUTS, detail, values=(shown[0], shown[1]))]
    found = []
    for x, y in zip(a, b):
        if x.image:
            if x.value != y.value:
                found.append(
                    Difference(
                        cell,
                        runs,
                        x.label,
                        f"{len(x.value)} vs {len(y.value)} characters of base64",
                        image=True,
                        values=(x.value, y.value),
                    )
                )
        elif not comparison.same_text(x.value, y.value):
            found.append(text_difference(cell, runs, x, y))
    return found


def text_difference(cell: Cell, runs: tuple[int, int], x: Item, y: Item, **extra: Any) -> Difference:
    """A text output that differs between two sides, with its short and full diff (`extra`: kind and the like)."""
    return Difference(
        cell,
        runs,
        x.label,
        short_diff(x.value, y.value, *runs),
        diff=full_diff(x.value, y.value, *runs),
        values=(x.value, y.value),
        **extra,
    )


# -- per-cell verdicts -------------------------------------------------------------------


@dataclass(frozen=True)
class CellResult:
    """One code cell's share of a check, for faces that report per cell (the pytest plugin).

    `errors` are this cell's: it raised unexpectedly (once when every run raised the same), a run
    ended at it, or a run failed before any cell (kernel start, `%repro on`); `compared` is False
    when it ran on fewer than two sides, `not_saved` when --against-saved had no saved outputs for it.
    """

    cell: Cell
    differences: tuple[Difference, ...]
    errors: tuple[str, ...]
    compared: bool
    ignored: bool
    not_saved: bool = False

    @property
    def ok(self) -> bool:
        return self.compared and not self.errors and not any(d.fails for d in self.differences)

    def text(self, report: CheckReport) -> str:
        """The lines of `ipyrepro check`'s report that concern this cell, under the report's header."""
        lines = [report.header()] + [f"Error in {error}" for error in self.errors]
        lines += [d.text() for d in self.differences if not d.image]
        if self.differences:
            first = report.state.first
            if first is not None and first.index < self.cell.index:
                from .reporttext import state_lines

                lines += state_lines(report)
            inherited = report.state.inherits(self.cell.index)
            if inherited:
                lines.append(f"    {inherits_text(inherited, report.position)}")
            lines += [
                f"    cause: {cause.text()}"
                for cause in report.cell_causes(self.cell.index)
                if cause.kind != HIDDEN_STATE
            ]
        images = [d.image_line() for d in self.differences if d.image]
        if images:
            lines += ["Images (compared by exact bytes):", *images]
        for finding in report.hidden_state:
            if finding.cell.index == self.cell.index:
                lines += [f"Hidden state: {finding.text()}", f"    fix: {finding.fix()}"]
        return "\n".join(lines)


def cell_results(report: CheckReport) -> list[CellResult]:
    """The report split by code cell, in notebook order: what each cell's own verdict rests on."""
    run_errors = report.run_errors()
    not_saved = {cell.index for cell in report.not_saved}
    results = []
    for cell in report.cells:
        mine = [error for error in run_errors if error.cell is None or error.cell.index == cell.index]
        errors = [f"run {error.run}: {error.text}" for error in mine if not error.reproduced]
        if any(error.reproduced for error in mine):
            first = next(error for error in mine if error.reproduced)
            errors.insert(0, f"every run: {first.text}")
        differences = tuple(d for d in report.differences if d.cell.index == cell.index)
        ignored = any(tag in cell.tags for tag in IGNORE_TAGS)
        compared = cell.index in report.compared
        results.append(CellResult(cell, differences, tuple(errors), compared, ignored, cell.index in not_saved))
    return results


# -- state ---------------------------------------------------------------------------------
