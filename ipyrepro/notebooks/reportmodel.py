"""The check's report cell by cell: the one outcome model that the text, JSON and HTML reports all read.

Each code cell gets one `CellOutcome`: its status (the JSON schema's `outcome`), its differences,
its errors, whether every run raised the same exception, its hidden-state findings and causes, the
divergent names it inherits, and whether its state is where the runs first part. `ReportModel`
adds what belongs to the whole report: the first divergence, the causes traced from it, the side
names ("saved" with `--against-saved`) and the verdict line. Built once per rendering, in time
linear in cells and findings, so no face can tell another story than the others.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .hiddenstate import KIND as HIDDEN_STATE
from .outputs import IGNORE_TAGS, RAISES_TAG, SAVED, side_name
from .statecheck import first_divergence_text, names_text, rng_text

if TYPE_CHECKING:
    from ..comparison.findings import Cause
    from .hiddenstate import HiddenState
    from .notebookfile import Cell
    from .statecheck import CellDivergence
    from .verdicts import ReproducedError

STATUSES = ("matched", "differs", "reproduced-error", "not-compared", "ignored", "not-saved", "empty")
VERDICTS = {0: "OK", 1: "DIFFERS", 2: "ERROR"}
NO_CAUSE = "none ran in this cell; it may use a value from an earlier differing cell"
NO_CAUSE_SAVED = (
    "none ran in this cell; the saved output may have come from other code, data or package versions, "
    "or from a value of an earlier differing cell"
)


@dataclass(frozen=True)
class CellOutcome:
    """One code cell's share of the report.

    `status` is one of STATUSES (the `outcome` of `--json`). `causes` are the causes found for the
    cell; `own_causes` those the text lists under its differences (not hidden state, not already
    listed under the first divergence), and `no_cause` the line said when a diagnostic run found
    none. `divergence` is the state comparison's finding for the cell (None: its state matched);
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

    @property
    def index(self) -> int:
        return self.cell.index

    @property
    def text_differences(self) -> tuple[Any, ...]:
        return tuple(d for d in self.differences if not d.image)

    @property
    def image_differences(self) -> tuple[Any, ...]:
        return tuple(d for d in self.differences if d.image)

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
    state_errors: tuple[str, ...]
    causes_status: str  # the diagnostic run: "done", why it stopped, or '' (none ran)
    hash_order_cells: tuple[int, ...]
    against_saved: bool
    out_of_order: str
    machine_lines: tuple[str, ...]

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
        return "differs"
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
    listed = report.divergence_causes()
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
    outcomes = []
    for cell in report.cells:
        index = cell.index
        found = tuple(by_cell.get(index, ()))
        mine = [cause for cause in found if cause.kind != HIDDEN_STATE]
        inherited = report.state.inherits(index)
        explained = mine or inherited or status != "done"
        text_differs = any(not d.image for d in differences.get(index, ()))
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
            )
        )
    by_index = {outcome.index: outcome for outcome in outcomes}
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
        state_errors=tuple(report.state.errors),
        causes_status=status,
        hash_order_cells=hash_order,
        against_saved=report.against_saved,
        out_of_order=report.out_of_order,
        machine_lines=tuple(report.machines.lines()) if report.machines is not None else (),
    )


def _note(outcome: CellOutcome | None) -> str:
    """What the first divergent cell's output did: differs, matches, or there was none."""
    if outcome is not None and outcome.differences:
        return "its output differs"
    return "its output matches" if outcome is not None and outcome.prints else "prints nothing"


def verdict_text(report: Any) -> str:
    """The verdict line's text after `OK: ` / `DIFFERS: ` / `ERROR: `."""
    compared = summary(report)
    first = report.state.first
    if first is not None and not report.differences and report.compared:
        names = names_text(first.new) if first.new else rng_text(first.rngs)
        compared += f"; the state differs from {report.position(first.index)} ({names}), though no output shows it"
    if report.machines is not None and report.machines.differs and not report.differences:
        compared += f" here, but they differ from {report.machines.against_name}"
    return compared


def summary(report: Any) -> str:
    """How many cells differ or matched, what was not compared, what raised."""
    total = len(report.cells)
    complete = sum(run.complete for run in report.runs)
    if report.stop_on_error and complete < 2 and not report.against_saved:
        return "nothing to compare (fewer than 2 complete runs)"
    if not report.compared:
        return "nothing to compare (no cell ran in 2 runs)" if not report.against_saved else "nothing to compare"
    differing = {d.cell.index for d in report.differences}
    images = sum(d.image for d in report.differences)
    if differing:
        parts = [
            f"{len(differing)} of {total} code cells differ ({len(report.differences) - images} text/data outputs, "
            f"{images} images)"
        ]
    elif len(report.compared) == total:
        parts = [f"all {total} code cells matched"]
    else:
        parts = [f"{len(report.compared)} of {total} code cells compared, all matched"]
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
