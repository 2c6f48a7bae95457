"""Cell by cell: which outputs differ, which errors reproduced, which cells could not be compared.

An error is an output like any other. Every cell that ran in at least two of the sides compared
(the runs, and with `--against-saved` the outputs saved in the notebook) is compared; the same
exception type and message on every side is a reproduced error, not a difference. Only with
`--stop-on-error` are runs that stopped early left out, as `ipyrepro check` did before.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from .notebookfile import Cell
from .outputs import IGNORE_TAGS, RAISES_TAG, SAVED, Comparison, Item, output_items, side_name
from .report import LIST_OF_OUTPUTS, Difference, cell_differences, text_difference
from .savedenv import ENVIRONMENT, NUMERIC, classify_image, classify_text, installed_here, missing_here


@dataclass(frozen=True)
class ReproducedError:
    """A cell that raised the same exception on every side it was compared on."""

    cell: Cell
    ename: str
    evalue: str
    traceback: tuple[str, ...]
    runs: tuple[int, ...]  # SAVED (0) for the saved outputs

    @property
    def expected(self) -> bool:
        return RAISES_TAG in self.cell.tags

    def to_dict(self) -> dict[str, Any]:
        return {
            "cell": self.cell.ref(),
            "ename": self.ename,
            "evalue": self.evalue,
            "traceback": list(self.traceback),
            "runs": ["saved" if number == SAVED else number for number in self.runs],
            "expected": self.expected,
        }


@dataclass(frozen=True)
class Side:
    """One side of the comparison: a run's outputs by cell index, or the saved ones (number SAVED)."""

    number: int
    outputs: Mapping[int, list[dict[str, Any]]]

    @property
    def name(self) -> str:
        return side_name(self.number)


def ignored(cell: Cell) -> bool:
    return any(tag in cell.tags for tag in IGNORE_TAGS)


def compare(report: Any, comparison: Comparison) -> None:
    """Fill `report`'s differences, reproduced errors, compared cells and (against saved) not-saved cells."""
    if report.stop_on_error:  # as before: only runs that reached the end are compared
        runs = [run for run in report.runs if run.complete]
        if len(runs) < 2 and not report.against_saved:
            return
    else:
        runs = [run for run in report.runs if run.outputs]
    sides = [Side(run.number, run.outputs) for run in runs]
    if report.against_saved:
        saved = [cell for cell in report.cells if was_saved(cell, report.strict)]
        report.not_saved = [cell for cell in report.cells if cell not in saved]
        report.without_count = [cell for cell in saved if cell.execution_count is None]
        sides.insert(0, Side(SAVED, {cell.index: saved_outputs(cell) for cell in saved}))
    for cell in report.cells:
        present = [side for side in sides if cell.index in side.outputs]
        if ignored(cell) or len(present) < 2 or (report.against_saved and present[0].number != SAVED):
            continue
        report.compared.add(cell.index)
        base, *others = present
        base_items = output_items(base.outputs[cell.index], comparison)
        found = []
        for other in others:
            other_items = output_items(other.outputs[cell.index], comparison)
            pair = cell_differences(cell, base_items, other_items, (base.number, other.number), comparison)
            environment = base.number == SAVED and not report.strict
            if base.number == SAVED:  # numbers within the tolerance are reported against the saved outputs
                pair += within_tolerance(cell, base_items, other_items, (base.number, other.number), comparison)
            found += [with_kind(d, other.outputs[cell.index], environment) for d in pair]
        report.differences += found
        reproduced = _reproduced(cell, present, comparison)
        if reproduced is not None:
            report.reproduced.append(reproduced)


def within_tolerance(
    cell: Cell, a: list[Item], b: list[Item], runs: tuple[int, int], comparison: Comparison
) -> list[Difference]:
    """The text outputs that differ, but only within --rtol/--atol: `numeric` differences that do not fail."""
    if not (comparison.rtol or comparison.atol) or [x.label for x in a] != [y.label for y in b]:
        return []
    return [
        text_difference(cell, runs, x, y, kind=NUMERIC, within_tolerance=True)
        for x, y in zip(a, b)
        if not x.image and x.value != y.value and comparison.same_text(x.value, y.value)
    ]


def with_kind(difference: Difference, here: list[dict[str, Any]], environment: bool) -> Difference:
    """The difference with its kind (savedenv.py); `environment` allows that kind (against the saved outputs,
    without --strict). A run that raised for a package missing here is the environment's."""
    there, mine = difference.values
    if difference.what == LIST_OF_OUTPUTS:
        error = error_output(here)
        package = error and missing_here(str(error["ename"]), str(error["evalue"]), installed_here)
        if environment and package:
            return replace(difference, kind=ENVIRONMENT, explained=f"{package} missing here")
        return difference
    if difference.image:
        kind = classify_image(_decoded(there), _decoded(mine), environment)
    else:
        kind = classify_text(there, mine, difference.cell.source, environment)
    within = difference.within_tolerance and kind.kind == NUMERIC
    return replace(
        difference,
        kind=kind.kind,
        explained=kind.explained,
        largest_relative=kind.largest_relative,
        within_tolerance=within,
    )


def _decoded(value: str) -> bytes:
    import base64
    import binascii

    try:
        return base64.b64decode(value[:64] + "=" * (-len(value[:64]) % 4))
    except (binascii.Error, ValueError):
        return b""


def was_saved(cell: Cell, strict: bool) -> bool:
    """Whether the notebook holds what this cell showed: it ran (an execution count; no outputs is an empty
    output, compared), or it has outputs saved without a count (compared, unless `strict`)."""
    return cell.execution_count is not None or (bool(cell.saved_outputs) and not strict)


def _reproduced(cell: Cell, sides: list[Side], comparison: Comparison) -> ReproducedError | None:
    errors = [error_output(side.outputs[cell.index]) for side in sides]
    if not all(errors):
        return None
    if len({comparison.clean(f"{error['ename']}: {error['evalue']}") for error in errors}) != 1:  # type: ignore[index]
        return None
    fresh = next((error for side, error in zip(sides, errors) if side.number != SAVED), errors[0])
    assert fresh is not None
    return ReproducedError(
        cell,
        str(fresh["ename"]),
        str(fresh["evalue"]),
        tuple(str(line) for line in fresh.get("traceback") or ()),
        tuple(side.number for side in sides),
    )


def error_output(outputs: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The last error among a cell's outputs (what it raised), or None."""
    errors = [output for output in outputs if output.get("output_type") == "error"]
    return errors[-1] if errors else None


def saved_outputs(cell: Cell) -> list[dict[str, Any]]:
    """The cell's saved outputs in the shape a run's have: texts joined, consecutive streams merged.

    nbformat stores multi-line texts as lists of lines and may split one stream into several
    outputs; anything that is not an output nbformat 4 defines is left out.
    """
    found: list[dict[str, Any]] = []
    for output in cell.saved_outputs:
        kind = output.get("output_type")
        if kind == "stream":
            name, text = str(output.get("name", "stdout")), _text(output.get("text", ""))
            last = found[-1] if found else None
            if last and last["output_type"] == "stream" and last["name"] == name:
                last["text"] += text
            else:
                found.append({"output_type": "stream", "name": name, "text": text})
        elif kind == "error":
            traceback = output.get("traceback")
            found.append(
                {
                    "output_type": "error",
                    "ename": str(output.get("ename", "")),
                    "evalue": str(output.get("evalue", "")),
                    "traceback": [str(line) for line in traceback] if isinstance(traceback, list) else [],
                }
            )
        elif kind in ("execute_result", "display_data") and isinstance(output.get("data"), dict):
            data = {str(mime): _text(value) for mime, value in output["data"].items()}
            found.append({"output_type": kind, "data": data, "metadata": {}})
    return found


def _text(value: Any) -> Any:
    """nbformat's multi-line strings (lists of lines) joined; JSON values (widgets, Vega) kept."""
    if isinstance(value, list) and all(isinstance(line, str) for line in value):
        return "".join(value)
    return value
