"""The check's report as text: errors, differences with their causes, reproduced errors, hidden state, verdict.

Every cell is named by its label (`cell 19 of 60 (code cell 12 of 40, id 'a4d6…')`), numbered
from 1 as an editor shows it, the same numbers as the JSON's `position` and the pytest items.
"""

from __future__ import annotations

from typing import Any

from .outputs import RAISES_TAG, traceback_tail
from .reportmodel import NO_CAUSE, NO_CAUSE_SAVED, ReportModel, build_model, summary
from .statecheck import inherits_text


def report_text(report: Any) -> str:
    """The whole report of a CheckReport, as `ipyrepro check` prints it, drawn from its outcome model."""
    model = build_model(report)
    lines = [model.header]
    lines += [f"Error in run {error.run}: {error.text}" for error in report.run_errors() if not error.reproduced]
    lines += _state_lines(model)
    for outcome in model.cells:
        for number, difference in enumerate(outcome.text_differences):
            lines.append(difference.text())
            if number:
                continue
            if outcome.inherits:  # an earlier divergence explains it (see statecheck.py)
                lines.append(f"    {inherits_text(outcome.inherits, report.position)}")
            lines += [f"    cause: {cause.text()}" for cause in outcome.own_causes]
            if outcome.no_cause:
                lines.append(f"    cause: {outcome.no_cause}")
    if model.hash_order_cells:
        lines.append("Reproduces here only because PYTHONHASHSEED is fixed (output changes with another one):")
        for index in model.hash_order_cells:
            outcome = model.cell(index)
            if outcome is None:
                continue
            lines.append(f"  {outcome.cell.label()}\n{outcome.cell.head()}")
            lines += [f"    cause: {cause.text()}" for cause in outcome.causes]
    if model.causes_status not in ("done", ""):
        lines.append(f"Causes: the diagnostic run {model.causes_status}")
    lines += _reproduced(report)
    lines += _hidden_state(report)
    if report.not_saved:
        lines.append("Not saved (no outputs or no execution count in the notebook, so not compared):")
        lines += [f"  {cell.label()}" for cell in report.not_saved]
    images = [d for outcome in model.cells for d in outcome.image_differences]
    if images:
        lines.append("Images (compared by exact bytes):")
        lines += [d.image_line() for d in images]
    lines += model.machine_lines  # --save / --against: the environment, the fingerprint, the first op
    lines.append(model.verdict_line)
    return "\n".join(lines)


def _reproduced(report: Any) -> list[str]:
    if not report.reproduced:
        return []
    where = "every run and the saved outputs" if report.against_saved else "every run"
    lines = [f"Reproduced errors (the same exception in {where}):"]
    for error in report.reproduced:
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
    if not model.first_divergence:
        return lines
    lines.append("First divergence: " + model.first_divergence)
    if model.first is not None:
        lines.append(model.first.cell.head())
    lines += [f"    cause: {cause.text()}" for cause in model.divergence_causes]
    return lines


__all__ = ["NO_CAUSE", "NO_CAUSE_SAVED", "report_text", "state_lines", "summary"]
