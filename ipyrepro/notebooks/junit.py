"""`ipyrepro check --junit FILE`: the check as a JUnit XML file, the format GitHub, GitLab and Jenkins read.

One `<testsuite>` per notebook (in one `<testsuites>`), one `<testcase>` per compared code cell: a
`<failure>` for a cell whose outputs differ, with the diff as its text; an `<error>` for an exception
not tagged `raises-exception` (or a run that stopped at the cell). A run that failed before any cell
(a kernel that could not start) is one more `<testcase>` with its error. The classname is the notebook's
path and the name the cell's label, so a CI page lists `nb.ipynb` › `cell 3 of 12 (code cell 2 of 8)`.
"""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..core import userfiles
from .many import COMPARED

_INVALID_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")  # XML 1.0 cannot hold these


def _clean(text: str) -> str:
    return _INVALID_XML.sub("?", text)


def _failure_text(difference: Any) -> str:
    """The difference with its whole diff when there is one (the report's text shows a short one)."""
    if not difference.diff:
        return difference.text()
    return f"{difference.cell.label()}: {difference.what} differs {difference.between()}\n{difference.diff}"


def notebook_suite(report: Any, seconds: float | None = None) -> ET.Element:
    """One notebook's testsuite, read from the report's model (reportmodel.py), as its text and HTML are."""
    model = report.model()
    notebook = _clean(str(report.notebook))
    suite = ET.Element("testsuite", name=notebook)
    counts = {"tests": 0, "failures": 0, "errors": 0}
    for outcome in model.cells:
        if outcome.status not in COMPARED and not outcome.errors:
            continue
        case = ET.SubElement(suite, "testcase", classname=notebook, name=_clean(outcome.cell.label()), file=notebook)
        counts["tests"] += 1
        if outcome.errors:
            counts["errors"] += 1
            first = outcome.errors[0]
            detail = first.error or {}
            message = f"{detail.get('ename')}: {detail.get('evalue')}" if detail else first.text.splitlines()[0]
            kind = str(detail.get("ename") or first.kind)
            element = ET.SubElement(case, "error", message=_clean(message), type=_clean(kind))
            element.text = _clean("\n\n".join(f"run {error.run}: {error.text}" for error in outcome.errors))
        elif outcome.differences:
            counts["failures"] += 1
            first = outcome.differences[0]
            what = ", ".join(dict.fromkeys(d.what for d in outcome.differences))
            message = f"{what} differs between {model.side(first.runs[0])} and {model.side(first.runs[1])}"
            element = ET.SubElement(case, "failure", message=_clean(message), type="OutputDiffers")
            element.text = _clean("\n\n".join(_failure_text(d) for d in outcome.differences))
    for error in model.errors:  # a run that failed before reaching any cell
        case = ET.SubElement(suite, "testcase", classname=notebook, name=f"run {error.run}")
        counts["tests"] += 1
        counts["errors"] += 1
        element = ET.SubElement(case, "error", message=_clean(error.text.splitlines()[0]), type=error.kind)
        element.text = _clean(error.text)
    for name, count in counts.items():
        suite.set(name, str(count))
    suite.set("skipped", "0")
    if seconds is not None:
        suite.set("time", f"{seconds:.3f}")
    suite.set("timestamp", datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S"))
    return suite


def junit_tree(reports: list[tuple[Any, float | None]]) -> ET.ElementTree:
    """`<testsuites>` over (report, seconds) pairs, with the totals CI pages show."""
    root = ET.Element("testsuites", name="ipyrepro check")
    totals = {"tests": 0, "failures": 0, "errors": 0}
    seconds = 0.0
    for report, taken in reports:
        suite = notebook_suite(report, taken)
        root.append(suite)
        for name in totals:
            totals[name] += int(suite.get(name, "0"))
        seconds += taken or 0.0
    for name, count in totals.items():
        root.set(name, str(count))
    root.set("time", f"{seconds:.3f}")
    return ET.ElementTree(root)


def write_junit(reports: list[tuple[Any, float | None]], path: str | os.PathLike[str]) -> Path:
    """Write the JUnit file for `reports` at `path`, atomically; return the path."""
    tree = junit_tree(reports)
    ET.indent(tree)
    target = Path(path)
    with userfiles.replacing(target, shared=True) as out:  # read by CI, not private
        out.write("<?xml version='1.0' encoding='utf-8'?>\n" + ET.tostring(tree.getroot(), encoding="unicode"))
    return target
