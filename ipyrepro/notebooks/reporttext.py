"""The check's report as text: errors, differences with their causes, reproduced errors, hidden state, verdict.

Every cell is named by its label (`cell 19 of 60 (code cell 12 of 40, id 'a4d6…')`), numbered
from 1 as an editor shows it, the same numbers as the JSON's `position` and the pytest items.
"""

from __future__ import annotations

from typing import Any

from .hiddenstate import KIND as HIDDEN_STATE
from .outputs import IGNORE_TAGS, RAISES_TAG, traceback_tail
from .savedenv import NUMERIC
from .statecheck import first_divergence_text, inherits_text, names_text, rng_text


def report_text(report: Any) -> str:
    """The whole report of a CheckReport, as `ipyrepro check` prints it."""
    lines = [report.header()]
    lines += _errors(report)
    lines += state_lines(report)
    # Causes printed under the first divergence are not repeated; with no divergent variable none were printed.
    listed = report.divergence_causes() if report.state.first is not None else []
    values = [d for d in report.failing if not d.image and d.kind != NUMERIC]
    images = [d for d in report.failing if d.image]
    shown: set[int] = set()
    uncaused: list[Any] = []
    for difference in values:
        lines.append(difference.text())
        index = difference.cell.index
        if index in shown:
            continue
        shown.add(index)
        inherited = report.state.inherits(index)
        if inherited:  # an earlier divergence explains it (see statecheck.py)
            lines.append(f"    {inherits_text(inherited, report.position)}")
        if report.causes is not None:
            found = [cause for cause in report.cell_causes(index) if cause.kind != HIDDEN_STATE]
            lines += [f"    cause: {cause.text()}" for cause in found if cause not in listed]
            if not found and not inherited and report.causes.status == "done":
                uncaused.append(difference.cell)
    lines += _kind_sections(report)
    if report.causes is not None and report.causes.hash_order_cells:
        lines.append("Reproduces here only because PYTHONHASHSEED is fixed (output changes with another one):")
        for index in report.causes.hash_order_cells:
            cell = next(cell for cell in report.cells if cell.index == index)
            lines.append(f"  {cell.label()}\n{cell.head()}")
            lines += [f"    cause: {cause.text()}" for cause in report.cell_causes(index)]
    if report.causes is not None and report.causes.status not in ("done", ""):
        lines.append(f"Causes: the diagnostic run {report.causes.status}")
    if uncaused:  # once, not a generic sentence per cell
        where = "; the saved outputs may come from other code, data or package versions" if report.against_saved else ""
        lines.append(f"No cause found for {_cells(uncaused)}{where}.")
    lines += _reproduced(report)
    lines += _hidden_state(report)
    if report.not_saved:
        why = (
            "no execution count: not run before saving, or (--strict) outputs saved without one"
            if report.strict
            else "no execution count and no outputs: not run before saving"
        )
        lines.append(f"Not saved ({why}; not compared):")
        lines += [f"  {cell.label()}" for cell in report.not_saved]
    if report.without_count:
        lines.append("Outputs saved without an execution count (compared anyway; --strict leaves them out):")
        lines += [f"  {cell.label()}" for cell in report.without_count]
    if images:
        lines.append("Images (compared by exact bytes):")
        lines += [d.image_line() for d in images]
    compared = summary(report)
    first = report.state.first
    if first is not None and not report.failing and report.compared:
        names = names_text(first.new) if first.new else rng_text(first.rngs)
        compared += f"; the state differs from {report.position(first.index)} ({names}), though no output shows it"
    if report.machines is not None:  # --save / --against: the environment, the fingerprint, the first op
        lines += report.machines.lines()
        if report.machines.differs and not report.failing:
            compared += f" here, but they differ from {report.machines.against_name}"
    verdict = {0: "OK", 1: "DIFFERS", 2: "ERROR"}[report.exit_code]
    lines.append(f"{verdict}: {compared}.")
    return "\n".join(lines)


def _cells(cells: list[Any]) -> str:
    """`cell 12` or `cells 12, 40`: positions as an editor shows them."""
    return ("cell " if len(cells) == 1 else "cells ") + ", ".join(str(cell.position) for cell in cells)


def _kind_sections(report: Any) -> list[str]:
    """The numeric differences, then the environment's, each in its own section."""
    lines = []
    numeric = [d for d in report.failing if d.kind == NUMERIC]
    if numeric:
        tolerance = f"--rtol {report_tolerance(report)}"
        lines.append(f"Numeric differences (the same text, numbers beyond the tolerance, {tolerance}):")
        lines += [f"  {d.cell.label()}: {d.what} differs {d.between()}: {d.kind_text()}" for d in numeric]
    environment = report.environment
    if environment:
        lines.append(
            "Environment differences (this machine is not the one the notebook was saved on; "
            "they do not fail the check):"
        )
        lines += [f"  {d.cell.label()}: {d.what}: {d.kind_text()}" for d in environment]
    return lines


def report_tolerance(report: Any) -> str:
    return f"{report.rtol:g}, --atol {report.atol:g}"


def _errors(report: Any) -> list[str]:
    """Each error once per run; one that follows from an earlier error is listed under it."""
    errors = [error for error in report.run_errors() if not error.reproduced and not error.environment]
    roots = {(error.run, error.cell.index) for error in errors if error.cell is not None and error.follows is None}
    lines = []
    for error in errors:
        if error.follows is not None and (error.run, error.follows.root.index) in roots:
            continue
        lines.append(f"Error in run {error.run}: {error.text}")
        if error.cell is None or error.follows is not None:
            continue
        for other in errors:
            if other.follows is not None and other.run == error.run and other.follows.root.index == error.cell.index:
                lines.append(f"  then: {other.text}")
    return lines


def _reproduced(report: Any) -> list[str]:
    if not report.reproduced:
        return []
    where = "every run and the saved outputs" if report.against_saved else "every run"
    lines = [f"Reproduced errors (the same exception in {where}):"]
    following = {cascade.cell.index: cascade for cascade in report.cascades}
    listed = {error.cell.index for error in report.reproduced}
    for error in report.reproduced:
        cascade = following.get(error.cell.index)
        if cascade is not None and cascade.root.index in listed:
            continue  # listed under the error it follows from
        if cascade is not None:
            lines.append(f"  {error.cell.label()}: {error.ename}: {error.evalue}; it {cascade.text()}")
            lines.append(f"    fix: {cascade.fix()}")
            continue
        tagged = (
            f"tagged {RAISES_TAG!r}"
            if error.expected
            else f"not tagged {RAISES_TAG!r}: tag the cell if the error is expected"
        )
        lines.append(f"  {error.cell.label()}: {error.ename}: {error.evalue} ({tagged})")
        lines.append(error.cell.head())
        frames = traceback_tail({"traceback": list(error.traceback)})
        if frames and not error.expected:
            lines.append(f"    Traceback (last frames):\n{frames}")
        after = [c for c in report.cascades if c.root.index == error.cell.index and c.cell.index in listed]
        for cascade in after:
            lines.append(f"    then {cascade.cell.label()} raised NameError for `{cascade.name}`: it {cascade.text()}")
        if after:
            lines.append(f"    fix: {after[0].fix()}")
    return lines


def _hidden_state(report: Any) -> list[str]:
    if not (report.hidden_state or report.out_of_order):
        return []
    lines = ["Hidden state:"]
    if report.out_of_order:
        lines.append(f"  {report.out_of_order}")
    for finding in report.hidden_state:
        lines.append(f"  {finding.cell.label()} raised {finding.ename}: {finding.evalue}: {finding.text()}")
        lines.append(f"    fix: {finding.fix()}")
    return lines


def summary(report: Any) -> str:
    """The verdict line's text: how many cells differ or matched, what was not compared, what raised."""
    total = len(report.cells)
    complete = sum(run.complete for run in report.runs)
    if report.stop_on_error and complete < 2 and not report.against_saved:
        return "nothing to compare (fewer than 2 complete runs)"
    if not report.compared:
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
    elif len(report.compared) == total and not environment:
        parts = [f"all {total} code cells matched"]
    elif not environment:
        parts = [f"{len(report.compared)} of {total} code cells compared, all matched"]
    else:
        matched = len(report.compared) - len(environment)
        parts = [f"{matched} of {total} code cells matched"]
    if environment:
        texts = [d.kind_text().split("; it follows")[0] for d in report.environment if d.cell.index in environment]
        explained = list(dict.fromkeys(texts))
        parts.append(f"{len(environment)} differ only by the environment ({'; '.join(explained[:3])})")
    not_saved = len(report.not_saved)
    if not_saved:
        parts.append(f"{not_saved} not saved")
    left = total - len(report.compared) - not_saved - sum(_ignored(cell) for cell in report.cells)
    if left > 0:
        parts.append(f"{left} not compared (they ran in fewer than 2 runs)")
    if report.reproduced:
        unexpected = sum(not error.expected for error in report.reproduced)
        parts.append(
            f"{len(report.reproduced)} raised the same error in every run ({unexpected} not tagged {RAISES_TAG!r})"
        )
    return "; ".join(parts)


def _ignored(cell: Any) -> bool:
    return any(tag in cell.tags for tag in IGNORE_TAGS)


def state_lines(report: Any) -> list[str]:
    """The first divergent cell, its code, and the causes traced from there (each once, strongest first)."""
    lines = [f"State digests: {error}" for error in report.state.errors]
    first = report.state.first
    if first is None:
        return lines

    def note(index: int) -> str:
        if any(d.cell.index == index for d in report.differences):
            return "its output differs"
        return "its output matches" if report.prints(index) else "prints nothing"

    lines.append("First divergence: " + (first_divergence_text(report.state, report.position, note) or ""))
    cell = next((cell for cell in report.cells if cell.index == first.index), None)
    if cell is not None:
        lines.append(cell.head())
    lines += [f"    cause: {cause.text()}" for cause in report.divergence_causes()]
    return lines
