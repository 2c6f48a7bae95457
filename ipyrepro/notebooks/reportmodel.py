"""The check's report cell by cell: the one outcome model that the text, JSON and HTML reports all read.

Each code cell gets one `CellOutcome`: its status (the JSON schema's `outcome`), its differences,
its errors, whether every run raised the same exception, its hidden-state findings and causes, the
divergent names it inherits, and whether its state is where the runs first part. `ReportModel`
adds what belongs to the whole report: the first divergence, the causes traced from it, the side
names ("saved" with `--against-saved`) and the verdict line. Built once per rendering, in time
linear in cells and findings, so no face can tell another story than the others.
"""

from __future__ import annotations

import shlex
from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .hiddenstate import KIND as HIDDEN_STATE
from .outputs import IGNORE_TAGS, RAISES_TAG, SAVED, side_name
from .savedenv import ENVIRONMENT, NUMERIC, VALUE  # noqa: F401  (NUMERIC: the kind the numeric section lists)
from .statecheck import first_divergence_text, names_text, rng_text, summarised_text

if TYPE_CHECKING:
    from ..comparison.findings import Cause
    from .hiddenstate import HiddenState
    from .notebookfile import Cell
    from .statecheck import CellDivergence
    from .verdicts import ReproducedError

STATUSES = ("matched", "differs", "environment", "reproduced-error", "not-compared", "ignored", "not-saved", "empty")
VERDICTS = {0: "OK", 1: "DIFFERS", 2: "ERROR"}
NO_CAUSE = "no cause found"
NO_CAUSE_SAVED = "no cause found; the saved outputs may come from other code, data or package versions"


@dataclass(frozen=True)
class CellOutcome:
    """One code cell's share of the report.

    `status` is one of STATUSES (the `outcome` of `--json`; `environment` when every difference is one this
    machine explains). `causes` are the causes found for the cell; `own_causes` those the text lists under its
    differences (not hidden state, not already listed under the first divergence), and `no_cause` is set
    when a diagnostic run found none for a value difference (the report names those cells once, at the end).
    `divergence` is the state comparison's finding for the cell (None: its state matched);
    `first` marks the first divergent cell, `inherits` the divergent names it read from earlier cells.
    """

    cell: Cell
    status: str
    differences: tuple[Any, ...]  # report.Difference, text ones first as found, then images
    errors: tuple[Any, ...]  # report.RunError: untagged raises here and runs that stopped here
    reproduced: ReproducedError | None
    hidden_state: tuple[HiddenState, ...]
    causes: tuple[Cause, ...]
    own_causes: tuple[Cause, ...]
    no_cause: str
    inherits: dict[int, tuple[str, ...]]
    divergence: CellDivergence | None
    first: bool
    prints: bool
    raised: bool
    hash_order_only: bool
    follows: Any = None  # cascades.Cascade: its error follows from an earlier failed cell's

    @property
    def index(self) -> int:
        return self.cell.index

    @property
    def text_differences(self) -> tuple[Any, ...]:
        """The value differences of text and data (numeric and environment ones have their own sections)."""
        return tuple(d for d in self.differences if not d.image and d.kind == VALUE)

    @property
    def image_differences(self) -> tuple[Any, ...]:
        return tuple(d for d in self.differences if d.image and d.fails)

    @property
    def numeric_differences(self) -> tuple[Any, ...]:
        return tuple(d for d in self.differences if d.kind == NUMERIC and not d.image)

    @property
    def environment_differences(self) -> tuple[Any, ...]:
        return tuple(d for d in self.differences if d.kind == ENVIRONMENT)

    @property
    def state_differs(self) -> bool:
        """Whether a variable or global RNG began to differ (or was changed while divergent) in this cell."""
        return self.divergence is not None and bool(self.divergence.new or self.divergence.written or self.first)

    def state_text(self) -> str:
        """`w differs (run 1 vs run 2)` for a cell whose state differs, else ''."""
        divergence = self.divergence
        if divergence is None or not self.state_differs:
            return ""
        names = divergence.new or divergence.written
        runs = f"(run {divergence.runs[0]} vs run {divergence.runs[1]})"
        if names:
            return f"{names_text(names)} {'differs' if len(names) == 1 else 'differ'} {runs}"
        return f"the state of {rng_text(divergence.rngs)} differs {runs}; no variable differs"


@dataclass(frozen=True)
class ReportModel:
    """The whole report as the faces draw it: the cells' outcomes and what belongs to no single cell."""

    header: str
    exit_code: int
    verdict: str  # OK, DIFFERS or ERROR
    verdict_line: str  # `DIFFERS: 1 of 4 code cells differ (...).`
    cells: tuple[CellOutcome, ...]
    errors: tuple[Any, ...]  # report.RunError not at any cell (kernel start, setup), in run order
    first: CellOutcome | None  # the first divergent cell
    first_divergence: str  # the text after "First divergence: ", or ''
    divergence_causes: tuple[Cause, ...]
    divergence_no_cause: str  # the one line when the causes run found nothing at the first divergence, or ''
    later_causes: tuple[Cause, ...]  # where later divergences began, not listed under a differing output
    state_errors: tuple[str, ...]
    state_summarised: str | None  # values compared by a summary only (over the digest's budget), or None
    causes_status: str  # the diagnostic run: "done", why it stopped, or '' (none ran)
    hash_order_cells: tuple[int, ...]
    against_saved: bool
    out_of_order: str
    machine_lines: tuple[str, ...]
    as_is_hint: str  # after an OK under ipyrepro: how to check the notebook as written, or ''
    no_cause_line: str = ""  # `No cause found for cells 12, 40.`: once, at the end

    @property
    def no_cause_cells(self) -> tuple[CellOutcome, ...]:
        return tuple(outcome for outcome in self.cells if outcome.no_cause)

    def cell(self, index: int) -> CellOutcome | None:
        return next((outcome for outcome in self.cells if outcome.index == index), None)

    @staticmethod
    def side(number: int) -> str:
        """`run 2`, or `saved` for the outputs saved in the notebook (`--against-saved`)."""
        return side_name(number)

    def counts(self) -> dict[str, int]:
        """How many cells have each status."""
        found = dict.fromkeys(STATUSES, 0)
        for outcome in self.cells:
            found[outcome.status] += 1
        return found


def status_of(report: Any, cell: Any, differing: set[int], reproduced: set[int], not_saved: set[int]) -> str:
    """matched, differs, reproduced-error, not-compared, ignored, not-saved or empty (see the schema)."""
    if not cell.source.strip():
        return "empty"
    if any(tag in cell.tags for tag in IGNORE_TAGS):
        return "ignored"
    if cell.index in differing:
        mine = [d for d in report.differences if d.cell.index == cell.index]
        if any(d.fails for d in mine):
            return "differs"
        if any(d.kind == ENVIRONMENT for d in mine):
            return "environment"  # else numbers within the tolerance: matched, as the tolerance says
    if cell.index in reproduced:
        return "reproduced-error"
    if cell.index in not_saved:
        return "not-saved"
    return "matched" if cell.index in report.compared else "not-compared"


def build_model(report: Any) -> ReportModel:
    """The outcome model of a CheckReport (report.py)."""
    differences: dict[int, list[Any]] = defaultdict(list)
    for difference in report.differences:
        differences[difference.cell.index].append(difference)
    run_errors = report.run_errors()
    errors: dict[int, list[Any]] = defaultdict(list)
    for error in run_errors:
        if error.cell is not None:
            errors[error.cell.index].append(error)
    reproduced = {error.cell.index: error for error in report.reproduced}
    hidden: dict[int, list[Any]] = defaultdict(list)
    for finding in report.hidden_state:
        hidden[finding.cell.index].append(finding)
    not_saved = {cell.index for cell in report.not_saved}
    causes = report.causes
    by_cell = causes.by_cell if causes is not None else {}
    status = causes.status if causes is not None else ""
    # Causes printed under the first divergence are not repeated; with no divergent variable none were printed.
    listed = report.divergence_causes() if report.state.first is not None else []
    hash_order = tuple(causes.hash_order_cells) if causes is not None else ()
    first = report.state.first
    reference = next((run for run in report.runs if run.states or run.outputs), None)
    raised = {index for run in report.runs for index in run.raised} | {
        index
        for run in report.runs
        for index, outputs in run.outputs.items()
        if any(output.get("output_type") == "error" for output in outputs)
    }
    differing, reproduced_cells = set(differences), set(reproduced)
    raised_here = {index for run in report.runs for index in run.raised}
    following_from = {cascade.cell.index: cascade for cascade in report.cascades}
    following = set(following_from)
    outcomes = []
    for cell in report.cells:
        index = cell.index
        found = tuple(by_cell.get(index, ()))
        mine = [cause for cause in found if cause.kind != HIDDEN_STATE]
        inherited = report.state.inherits(index)
        # a cell that raised here (its error is listed) or whose error follows from an earlier one needs no cause
        explained = mine or inherited or status != "done" or index in raised_here or index in following
        text_differs = any(not d.image and d.fails for d in differences.get(index, ()))
        no_cause = "" if explained or not text_differs else NO_CAUSE_SAVED if report.against_saved else NO_CAUSE
        outcomes.append(
            CellOutcome(
                cell=cell,
                status=status_of(report, cell, differing, reproduced_cells, not_saved),
                differences=tuple(differences.get(index, ())),
                errors=tuple(errors.get(index, ())),
                reproduced=reproduced.get(index),
                hidden_state=tuple(hidden.get(index, ())),
                causes=found,
                own_causes=tuple(cause for cause in mine if cause not in listed),
                no_cause=no_cause,
                inherits=inherited,
                divergence=report.state.cells.get(index),
                first=first is not None and first.index == index,
                prints=bool(reference is not None and reference.outputs.get(index)),
                raised=index in raised,
                hash_order_only=index in hash_order,
                follows=following_from.get(index),
            )
        )
    by_index = {outcome.index: outcome for outcome in outcomes}
    uncaused = [outcome.cell for outcome in outcomes if outcome.no_cause]
    no_cause_line = ""
    if uncaused:  # once, not a generic sentence per cell
        where = "; the saved outputs may come from other code, data or package versions" if report.against_saved else ""
        no_cause_line = f"No cause found for {cells_text(uncaused)}{where}."
    first_text = ""
    if first is not None:
        first_text = first_divergence_text(report.state, report.position, lambda i: _note(by_index.get(i))) or ""
    return ReportModel(
        header=report.header(),
        exit_code=report.exit_code,
        verdict=VERDICTS[report.exit_code],
        verdict_line=f"{VERDICTS[report.exit_code]}: {verdict_text(report)}.",
        cells=tuple(outcomes),
        errors=tuple(error for error in run_errors if error.cell is None),
        first=by_index.get(first.index) if first is not None else None,
        first_divergence=first_text,
        divergence_causes=tuple(listed),
        divergence_no_cause=NO_DIVERGENCE_CAUSE if first is not None and not listed and status == "done" else "",
        later_causes=tuple(
            cause
            for cause in getattr(causes, "later", ())
            if cause.cell not in {d.cell.position for d in report.differences if not d.image}
        ),
        state_errors=tuple(report.state.errors),
        state_summarised=summarised_text(report.state),
        causes_status=status,
        hash_order_cells=hash_order,
        against_saved=report.against_saved,
        out_of_order=report.out_of_order,
        machine_lines=tuple(report.machines.lines()) if report.machines is not None else (),
        as_is_hint=as_is_hint(report),
        no_cause_line=no_cause_line,
    )


NO_DIVERGENCE_CAUSE = (
    "none found: nothing the tracer watches (a draw from an unseeded generator, a clock, OS entropy, threads, "
    "a setting) ran in this cell; the value may come from a file, the network or a library ipyrepro does not watch"
)


def as_is_hint(report: Any) -> str:
    """An OK under ipyrepro says nothing of the notebook as written: name the command that checks that."""
    if report.exit_code != 0 or report.seed is None:
        return ""
    return f"as written (without ipyrepro): `ipyrepro check {shlex.quote(report.notebook)} --as-is`"


def cells_text(cells: list[Any]) -> str:
    """`cell 12` or `cells 12, 40`: positions as an editor shows them."""
    return ("cell " if len(cells) == 1 else "cells ") + ", ".join(str(cell.position) for cell in cells)


def _note(outcome: CellOutcome | None) -> str:
    """What the first divergent cell's output did: differs, matches, or there was none."""
    if outcome is not None and any(d.fails for d in outcome.differences):
        return "its output differs"
    return "its output matches" if outcome is not None and outcome.prints else "prints nothing"


def verdict_text(report: Any) -> str:
    """The verdict line's text after `OK: ` / `DIFFERS: ` / `ERROR: `."""
    compared = summary(report)
    first = report.state.first
    if first is not None and not report.failing and report.compared:
        names = names_text(first.new) if first.new else rng_text(first.rngs)
        compared += f"; the state differs from {report.position(first.index)} ({names}), though no output shows it"
    if report.machines is not None and report.machines.differs and not report.failing:
        compared += f" here, but they differ from {report.machines.against_name}"
    return compared


def summary(report: Any) -> str:
    """How many cells differ or matched, what was not compared, what raised."""
    total = len(report.cells)
    complete = sum(run.complete for run in report.runs)
    if report.stop_on_error and complete < 2 and not report.against_saved:
        return "nothing to compare (fewer than 2 complete runs)"
    if not report.compared:
        if any(run.fatal for run in report.runs):
            runs = len(report.runs)
            return f"nothing to compare (the kernel could not start in {runs} run{'s' if runs != 1 else ''})"
        return "nothing to compare (no cell ran in 2 runs)" if not report.against_saved else "nothing to compare"
    failing = report.failing
    differing = {d.cell.index for d in failing}
    images = sum(d.image for d in failing)
    environment = {d.cell.index for d in report.environment} - differing
    if differing:
        parts = [
            f"{len(differing)} of {total} code cells differ ({len(failing) - images} text/data outputs, "
            f"{images} images)"
        ]
    elif environment:
        parts = [f"{len(report.compared) - len(environment)} of {total} code cells matched"]
    elif len(report.compared) == total:
        parts = [f"all {total} code cells matched"]
    else:
        parts = [f"{len(report.compared)} of {total} code cells compared, all matched"]
    if environment:
        texts = [d.kind_text().split("; it follows")[0] for d in report.environment if d.cell.index in environment]
        shown = list(dict.fromkeys(part for text in texts for part in text.split("; ")))
        more = f"; and {len(shown) - 3} more" if len(shown) > 3 else ""
        parts.append(f"{len(environment)} differ only by the environment ({'; '.join(shown[:3])}{more})")
    within = {d.cell.index for d in report.differences if d.within_tolerance} - differing - environment
    if within:
        parts.append(f"{len(within)} matched within the tolerance")
    not_saved = len(report.not_saved)
    if not_saved:
        parts.append(f"{not_saved} not saved")
    ignored = sum(any(tag in cell.tags for tag in IGNORE_TAGS) for cell in report.cells)
    left = total - len(report.compared) - not_saved - ignored
    if left > 0:
        parts.append(f"{left} not compared (they ran in fewer than 2 runs)")
    if report.reproduced:
        unexpected = sum(not error.expected for error in report.reproduced)
        parts.append(
            f"{len(report.reproduced)} raised the same error in every run ({unexpected} not tagged {RAISES_TAG!r})"
        )
    return "; ".join(parts)


__all__ = [
    "NO_CAUSE",
    "NO_CAUSE_SAVED",
    "SAVED",
    "STATUSES",
    "CellOutcome",
    "ReportModel",
    "build_model",
    "summary",
    "verdict_text",
]
