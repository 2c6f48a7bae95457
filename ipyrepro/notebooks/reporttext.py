"""The check's report as text: errors, differences with their causes, reproduced errors, hidden state, verdict.

Every cell is named by its label (`cell 19 of 60 (code cell 12 of 40, id 'a4d6…')`), numbered
from 1 as an editor shows it, the same numbers as the JSON's `position` and the pytest items.
"""

from __future__ import annotations

import textwrap
from typing import Any

from .outputs import RAISES_TAG, traceback_tail
from .reportmodel import NO_CAUSE, NO_CAUSE_SAVED, ReportModel, build_model, summary
from .statecheck import inherits_text


def report_text(report: Any) -> str:
    """The whole report of a CheckReport, as `ipyrepro check` prints it, drawn from its outcome model."""
    model = build_model(report)
    lines = [model.header]
    lines += _errors(report)
    lines += _state_lines(model)
    for outcome in model.cells:
        for number, difference in enumerate(outcome.text_differences):
            lines.append(difference.text())
            if number:
                continue
            if outcome.inherits:  # an earlier divergence explains it (see statecheck.py)
                lines.append(f"    {inherits_text(outcome.inherits, report.position)}")
            lines += [cause_line(cause) for cause in outcome.own_causes]
    lines += _kind_sections(model, report)
    if model.hash_order_cells:
        lines.append("Reproduces here only because PYTHONHASHSEED is fixed (output changes with another one):")
        for index in model.hash_order_cells:
            outcome = model.cell(index)
            if outcome is None:
                continue
            lines.append(f"  {outcome.cell.label()}\n{outcome.cell.head()}")
            lines += [cause_line(cause) for cause in outcome.causes]
    if model.causes_status not in ("done", ""):
        lines.append(f"Causes: the diagnostic run {model.causes_status}")
    if model.no_cause_line:
        lines.append(model.no_cause_line)
    lines += _reproduced(report)
    lines += _hidden_state(report)
    lines += _not_saved(report)
    images = [d for outcome in model.cells for d in outcome.image_differences]
    if images:
        lines.append("Images (compared by exact bytes):")
        lines += [d.image_line() for d in images]
    lines += model.machine_lines  # --save / --against: the environment, the fingerprint, the first op
    lines.append(model.verdict_line)
    if model.as_is_hint:
        lines.append(model.as_is_hint)
    return "\n".join(lines)


WIDTH = 120  # a cause line longer than this is wrapped at a word boundary, never inside a word


def cause_line(cause: Any) -> str:
    """`    cause: …`, wrapped at word boundaries (a terminal would break it mid-word)."""
    return wrapped(f"    cause: {cause.text()}")


def wrapped(line: str) -> str:
    """`line` in lines of at most WIDTH columns where it has spaces, continued under its text."""
    indent = " " * (len(line) - len(line.lstrip()) + 2)
    return textwrap.fill(
        line, WIDTH, subsequent_indent=indent, break_long_words=False, break_on_hyphens=False, drop_whitespace=True
    )


def _kind_sections(model: ReportModel, report: Any) -> list[str]:
    """The numeric differences, then the environment's, each in its own section."""
    lines = []
    numeric = [outcome for outcome in model.cells if outcome.numeric_differences]
    if numeric:
        tolerance = f"--rtol {report.rtol:g}, --atol {report.atol:g}"
        lines.append(f"Numeric differences (the same text but for numbers; {tolerance}):")
    for outcome in numeric:
        for d in outcome.numeric_differences:
            lines += [d.text(), f"    {d.kind_text()}"]
        if not outcome.text_differences:  # else listed under its value difference
            if outcome.inherits:
                lines.append(f"    {inherits_text(outcome.inherits, report.position)}")
            lines += [cause_line(cause) for cause in outcome.own_causes]
    environment = [d for outcome in model.cells for d in outcome.environment_differences]
    if environment:
        lines.append(
            "Environment differences (this machine is not the one the notebook was saved on; "
            "they do not fail the check):"
        )
        lines += [f"  {d.cell.label()}: {d.what}: {d.kind_text()}" for d in environment]
    return lines


def _not_saved(report: Any) -> list[str]:
    lines = []
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
    return lines


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


def state_lines(report: Any) -> list[str]:
    """The first divergent cell, its code, and the causes traced from there (each once, strongest first)."""
    return _state_lines(build_model(report))


def _state_lines(model: ReportModel) -> list[str]:
    lines = [f"State digests: {error}" for error in model.state_errors]
    if model.state_summarised is not None:
        lines.append(model.state_summarised)
    if not model.first_divergence:
        return lines
    lines.append("First divergence: " + model.first_divergence)
    if model.first is not None:
        lines.append(model.first.cell.head())
    lines += [cause_line(cause) for cause in model.divergence_causes]
    if model.divergence_no_cause:
        lines.append(wrapped(f"    cause: {model.divergence_no_cause}"))
    if model.later_causes:
        lines.append("  Where later divergences began (their own causes, not the first one's):")
        lines += [cause_line(cause) for cause in model.later_causes]
    return lines


__all__ = ["NO_CAUSE", "NO_CAUSE_SAVED", "report_text", "state_lines", "summary"]
