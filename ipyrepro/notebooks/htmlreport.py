"""`ipyrepro check --html REPORT.html`: the terminal report, drawn, as one self-contained web page.

Drawn from the same outcome model as the text and JSON reports (reportmodel.py), so it cannot tell
another story: the verdict line, the first divergence and what it reached, every code cell with its
status (differs, matched, ignored, not compared, reproduced error, not saved), the divergent names a
cell inherits, errors, hidden state and causes linked to their line in the shown source. Each
difference is drawn side by side with the changed characters marked (htmldiff.py), numbers that
differ with their absolute and relative difference, images beside their counterpart with a heat map
(htmlimages.py).

Security model: every value from the notebook or its outputs is escaped, images are inlined only
as validated base64 of a known type, and the page's Content-Security-Policy forbids every script
and every request, so opening a report runs nothing and fetches nothing, even if an escape slipped.
"""

from __future__ import annotations

import html
import os
from pathlib import Path
from typing import Any

from ..core import userfiles
from .hiddenstate import KIND as HIDDEN_STATE
from .htmldiff import number_differences, side_by_side
from .htmlimages import Pictures, heat_map
from .outputs import IGNORE_TAGS, RAISES_TAG, side_name
from .report import LIST_OF_OUTPUTS
from .reportmodel import CellOutcome, ReportModel, build_model

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:0 auto;max-width:1200px;padding:1em 2em;color:#1b1b1b}
h1{font-size:1.5em}h2{font-size:1.15em;margin:0}h3{font-size:1em;margin:1em 0 .4em}
.summary td,.summary th{text-align:left;padding:2px 12px 2px 0;vertical-align:top}
.verdict{font-weight:700;padding:2px 8px;border-radius:4px;color:#fff}
.OK{background:#2e7d32}.DIFFERS{background:#c62828}.ERROR{background:#6a1b9a}
section.cell{border:1px solid #ddd;border-left:6px solid #9e9e9e;border-radius:4px;margin:1em 0;padding:.6em 1em}
section.differs{border-left-color:#c62828}section.error{border-left-color:#6a1b9a}
section.matched{border-left-color:#2e7d32}section.reproduced-error{border-left-color:#ef6c00}
section.diverges{border-left-color:#f9a825}
.badge,.flag{font-size:.8em;padding:1px 6px;border-radius:3px;background:#eee;margin-left:.5em}
.flag{background:#fff3cd}
pre{background:#f7f7f7;padding:.5em;overflow-x:auto;margin:.3em 0;white-space:pre-wrap}
.source .ln{display:inline-block;width:2.5em;color:#999;user-select:none}
.source>span{display:block;min-height:1.2em}.source .cause-line{background:#fff3cd}
table.diff{border-collapse:collapse;width:100%;table-layout:fixed;font:12px/1.35 ui-monospace,monospace}
table.diff td{vertical-align:top;white-space:pre-wrap;word-break:break-all;padding:0 4px;border-left:1px solid #eee}
table.diff th{font-weight:600;text-align:left;background:#fafafa}
td.del{background:#ffebe9}td.add{background:#e6ffec}td.empty{background:#f4f4f4}
td.del mark{background:#ff8182}td.add mark{background:#4ac26b}
td.skip,span.skip{color:#777;font-style:italic;background:#f4f4f4}
table.numbers{border-collapse:collapse;font:12px ui-monospace,monospace}
table.numbers td,table.numbers th{border:1px solid #ddd;padding:1px 6px;text-align:right}
.images{display:flex;gap:1em;flex-wrap:wrap}.images figure{margin:0}
.images img{min-width:240px;max-width:360px;image-rendering:pixelated;border:1px solid #ccc}
figcaption{font-size:.85em;color:#555}
.cause{margin:.3em 0}.cause .kind{font-weight:600}
.note{color:#555}
"""
BADGES = {
    "matched": "matched",
    "differs": "differs",
    "ignored": "ignored (tagged to be ignored: run, not compared)",
    "not-compared": "not compared (ran in fewer than 2 runs)",
    "reproduced-error": "reproduced error",
    "not-saved": "not saved (no outputs or no execution count in the notebook)",
    "empty": "empty",
}


def write_html(report: Any, path: str | os.PathLike[str]) -> Path:
    """Write `report` (a CheckReport) as one HTML file at `path`, atomically, with the usual permissions."""
    target = Path(path)
    text = render_html(report)
    with userfiles.replacing(target, shared=True) as out:  # a file to open and share, not a private 0600 one
        out.write(text)
    return target


def render_html(report: Any) -> str:
    """The whole page as a string."""
    model = build_model(report)
    name = _e(Path(str(report.notebook)).name)
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        f"<title>ipyrepro check: {name}: {model.verdict}</title>",
        f"<style>{STYLE}</style></head><body>",
        f"<h1>ipyrepro check: {name}</h1>",
        _summary(report, model),
    ]
    parts += [_cell(report, model, outcome) for outcome in model.cells]
    parts.append(_findings(report, model))
    parts.append("</body></html>")
    return "\n".join(part for part in parts if part)


# -- summary -----------------------------------------------------------------------------


def _summary(report: Any, model: ReportModel) -> str:
    counts = model.counts()
    statuses = ", ".join(f"{count} {status.replace('-', ' ')}" for status, count in counts.items() if count)
    rows = [
        ("Notebook", _e(report.notebook)),
        ("Verdict", f"<span class='verdict {model.verdict}'>{model.verdict}</span> (exit code {model.exit_code})"),
        ("Result", _e(model.verdict_line)),
        ("Runs", f"{len(report.runs)} in fresh {_e(repr(report.kernel))} kernels, {_e(report.mode)}"),
        ("Code cells", f"{len(model.cells)}: {_e(statuses)}"),
    ]
    if report.kernel_note:
        rows.append(("Kernel", _e(report.kernel_note)))
    if model.causes_status not in ("done", ""):
        rows.append(("Causes", f"the diagnostic run {_e(model.causes_status)}"))
    rows += [("State digests", _e(error)) for error in model.state_errors]
    table = "".join(f"<tr><th>{name}</th><td>{value}</td></tr>" for name, value in rows)
    parts = [f"<p class='note'>{_e(model.header)}</p><table class='summary'>{table}</table>"]
    if model.errors:
        errors = "".join(f"<li><pre>{_e(f'run {error.run}: {error.text}')}</pre></li>" for error in model.errors)
        parts.append(f"<h3>Errors</h3><ul>{errors}</ul>")
    if model.first_divergence and model.first is not None:
        link = f"<a href='#cell-{model.first.index}'>{_e(model.first.cell.label())}</a>"
        causes = "".join(f"<li>{_e(cause.text())}</li>" for cause in model.divergence_causes)
        parts.append(
            f"<div id='first-divergence'><h3>First divergence: {link}</h3><p>{_e(model.first_divergence)}</p>"
            + (f"<ul>{causes}</ul>" if causes else "")
            + "</div>"
        )
    differing = [outcome for outcome in model.cells if outcome.status == "differs"]
    if differing:
        links = ", ".join(f"<a href='#cell-{o.index}'>{_e(o.cell.label())}</a>" for o in differing)
        parts.append(f"<p>Differing: {links}</p>")
    if model.machine_lines:
        parts.append(f"<h3>Machines</h3><pre>{_e(chr(10).join(model.machine_lines))}</pre>")
    if model.out_of_order:
        parts.append(f"<p class='note'>Hidden state: {_e(model.out_of_order)}</p>")
    return "".join(parts)


# -- one cell ----------------------------------------------------------------------------


def _cell(report: Any, model: ReportModel, outcome: CellOutcome) -> str:
    cell = outcome.cell
    unexpected = [error for error in outcome.errors if not error.reproduced]
    css = "error" if unexpected else "diverges" if outcome.status == "matched" and outcome.state_differs else ""
    flags = []
    if outcome.first:
        flags.append("first divergence")
    elif outcome.state_differs:
        flags.append("state differs")
    if outcome.inherits:
        flags.append("inherits")
    if any(error.stopped_run for error in unexpected):
        flags.append("a run stopped here")
    elif unexpected:
        flags.append("raised")
    if outcome.hidden_state:
        flags.append("hidden state")
    status = outcome.status
    heading = (
        f"<h2>{_e(cell.label())}<span class='badge'>{_e(BADGES[status])}</span>"
        + "".join(f"<span class='flag'>{_e(flag)}</span>" for flag in flags)
        + "</h2>"
    )
    causes = [cause for cause in outcome.causes if cause.kind != HIDDEN_STATE]
    marked = {cause.line for cause in causes if isinstance(cause.line, int) and _at(cause, cell.index)}
    body = [heading, _source(cell, marked)]
    if status == "ignored":
        tags = ", ".join(tag for tag in cell.tags if tag in IGNORE_TAGS)
        body.append(f"<p class='note'>Tagged {_e(tags)}: its outputs are not compared.</p>")
    if outcome.state_differs:
        body.append(f"<p class='state'>State: {_e(outcome.state_text())}</p>")
    if outcome.inherits:
        body.append(f"<p class='inherits'>{_inherits(report, outcome.inherits)}</p>")
    for error in unexpected:
        title = f"Run {error.run} stopped here" if error.stopped_run else f"Error in run {error.run}"
        body.append(f"<h3>{title}</h3><pre>{_e(error.text)}</pre>")
    if outcome.reproduced is not None:
        body.append(_reproduced(model, outcome))
    pictures = Pictures()  # one cell's images, each decoded once
    body += [_difference(difference, pictures) for difference in outcome.differences]
    if causes or outcome.no_cause:
        shown = "".join(_cause(cell, cause) for cause in causes)
        if outcome.no_cause:
            shown += f"<p class='note'>{_e(outcome.no_cause)}</p>"
        body.append("<h3>Causes</h3>" + shown)
    for finding in outcome.hidden_state:
        body.append(
            f"<h3>Hidden state</h3><p>{_e(finding.ename)}: {_e(finding.evalue)}: {_e(finding.text())}</p>"
            f"<p><b>Fix:</b> {_e(finding.fix())}</p>"
        )
    if outcome.hash_order_only:
        body.append(
            "<p class='note'>Reproduces only because PYTHONHASHSEED is fixed: the output changes with another one.</p>"
        )
    content = "".join(body)
    if status in ("matched", "empty") and len(body) == 2:  # nothing to say: folded, the page leads with what differs
        content = (
            f"<details><summary>{_e(cell.label())} <span class='badge'>{status}</span></summary>{body[1]}</details>"
        )
    classes = " ".join(name for name in ("cell", status, css) if name)
    return f"<section class='{classes}' id='cell-{cell.index}'>{content}</section>"


def _at(cause: Any, index: int) -> bool:
    """Whether the cause's line is in the cell at `index` (a cause may name its cell by position)."""
    return cause.cell is None or cause.cell == index + 1


def _inherits(report: Any, inherited: dict[int, tuple[str, ...]]) -> str:
    parts = [
        f"{_e(', '.join(names))} from <a href='#cell-{int(origin)}'>{_e(report.position(origin))}</a>"
        for origin, names in inherited.items()
    ]
    return "inherits " + ", ".join(parts)


def _source(cell: Any, marked: set[int]) -> str:
    rows = []
    for number, line in enumerate(cell.source.splitlines() or [""], 1):
        mark = " class='cause-line'" if number in marked else ""
        rows.append(f"<span id='cell-{cell.index}-L{number}'{mark}><span class='ln'>{number}</span>{_e(line)}</span>")
    return "<pre class='source'>" + "".join(rows) + "</pre>"


def _cause(cell: Any, cause: Any) -> str:
    line = cause.line if isinstance(cause.line, int) else None
    where = f"<a href='#cell-{cell.index}-L{line}'>line {line}</a>" if line and _at(cause, cell.index) else ""
    where = where or _e(cause.where())
    return (
        f"<div class='cause'><span class='kind'>{_e(cause.kind)}</span> at {where}"
        + (f": <code>{_e(cause.code)}</code>" if cause.code else "")
        + (f"<br>{_e(cause.detail)}" if cause.detail else "")
        + (f"<br><b>Fix:</b> {_e(cause.fix)}" if cause.fix else "")
        + "</div>"
    )


def _reproduced(model: ReportModel, outcome: CellOutcome) -> str:
    error = outcome.reproduced
    assert error is not None
    where = "every run and the saved outputs" if model.against_saved else "every run"
    tagged = (
        f"tagged {RAISES_TAG!r}" if error.expected else f"not tagged {RAISES_TAG!r}: tag the cell if it is expected"
    )
    return (
        f"<h3>Reproduced error</h3><p>The same exception in {where}: {_e(error.ename)}: {_e(error.evalue)} "
        f"({_e(tagged)})</p>"
    )


# -- one difference ----------------------------------------------------------------------


def _difference(difference: Any, pictures: Pictures) -> str:
    names = (side_name(difference.runs[0]), side_name(difference.runs[1]))
    what = "the list of outputs" if difference.what == LIST_OF_OUTPUTS else difference.what
    title = f"<h3>{_e(what)}: {_e(names[0])} vs {_e(names[1])}</h3>"
    left, right = (str(value) for value in difference.values)
    if difference.image and difference.what != "image/svg+xml":
        return title + pictures.pair(difference.what, difference.values, names)
    if difference.what == LIST_OF_OUTPUTS:
        return title + f"<pre>{_e(difference.detail)}</pre>"
    note = "<p class='note'>compared as text, without whitespace</p>" if difference.image else ""
    numbers = number_differences(left, right)
    table = ""
    if numbers:
        rows = "".join(
            f"<tr><td>{n.position}</td><td>{_e(n.left)}</td><td>{_e(n.right)}</td>"
            f"<td>{n.absolute:.6g}</td><td>{_relative(n.relative)}</td></tr>"
            for n in numbers
        )
        table = (
            f"<table class='numbers'><tr><th>#</th><th>{_e(names[0])}</th><th>{_e(names[1])}</th><th>abs diff</th>"
            f"<th>rel diff</th></tr>{rows}</table>"
        )
    return title + note + side_by_side(left, right, names[0], names[1]) + table


def _relative(value: float) -> str:
    return "inf" if value == float("inf") else f"{value:.3g}"


# -- what belongs to no single cell ------------------------------------------------------------


def _findings(report: Any, model: ReportModel) -> str:
    """Reproduced errors, hidden state and cells not saved, listed as the text report lists them, linked."""
    sections = []
    reproduced = [o for o in model.cells if o.reproduced is not None]
    if reproduced:
        items = "".join(
            f"<li><a href='#cell-{o.index}'>{_e(o.cell.label())}</a>: {_e(o.reproduced.ename)}: "
            f"{_e(o.reproduced.evalue)}</li>"
            for o in reproduced
            if o.reproduced is not None
        )
        sections.append(f"<section class='findings' id='reproduced-errors'><h2>Reproduced errors</h2><ul>{items}</ul>")
    hidden = [(o, finding) for o in model.cells for finding in o.hidden_state]
    if hidden:
        items = "".join(
            f"<li><a href='#cell-{o.index}'>{_e(o.cell.label())}</a> raised {_e(finding.ename)}: "
            f"{_e(finding.evalue)}: {_e(finding.text())}<br><b>Fix:</b> {_e(finding.fix())}</li>"
            for o, finding in hidden
        )
        sections.append(f"<section class='findings' id='hidden-state'><h2>Hidden state</h2><ul>{items}</ul>")
    not_saved = [o for o in model.cells if o.status == "not-saved"]
    if not_saved:
        items = "".join(f"<li><a href='#cell-{o.index}'>{_e(o.cell.label())}</a></li>" for o in not_saved)
        sections.append(
            "<section class='findings' id='not-saved'><h2>Not saved (no outputs or no execution count in the "
            f"notebook, so not compared)</h2><ul>{items}</ul>"
        )
    return "</section>".join(sections) + ("</section>" if sections else "")


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


__all__ = ["CSP", "heat_map", "render_html", "write_html"]
