"""`ipyrepro check --html REPORT.html`: the check report as one self-contained web page.

A summary, then every code cell with its source; each difference side by side with the changed
characters highlighted, numbers that differ with their absolute and relative difference, images
that differ side by side with a heat map of the pixels that changed (computed with NumPy from the
decoded PNGs), causes linked to their line in the shown source, errors, and what else the report
carries (reproduced errors, hidden-state findings). Images are inlined as data: URIs and the page
has no script and no external resource, so it opens anywhere, offline.
"""

from __future__ import annotations

import base64
import binascii
import html
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..core import userfiles
from .htmldiff import number_differences, side_by_side
from .png import PngError, decode_png, encode_png

STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:0 auto;max-width:1200px;padding:1em 2em;color:#1b1b1b}
h1{font-size:1.5em}h2{font-size:1.15em;margin:0}h3{font-size:1em;margin:1em 0 .4em}
.summary td,.summary th{text-align:left;padding:2px 12px 2px 0}
.verdict{font-weight:700;padding:2px 8px;border-radius:4px;color:#fff}
.OK{background:#2e7d32}.DIFFERS{background:#c62828}.ERROR{background:#6a1b9a}
section.cell{border:1px solid #ddd;border-left:6px solid #9e9e9e;border-radius:4px;margin:1em 0;padding:.6em 1em}
section.differs{border-left-color:#c62828}section.error{border-left-color:#6a1b9a}section.matched{border-left-color:#2e7d32}
section.environment{border-left-color:#f9a825}h3 .kind{font-size:.8em;padding:0 .4em;border-radius:3px;background:#eee}
h3 .kind.environment{background:#fff3c4}h3 .kind.value{background:#ffd6d6}h3 .kind.numeric{background:#e3ecff}
.badge{font-size:.8em;padding:1px 6px;border-radius:3px;background:#eee;margin-left:.5em}
pre{background:#f7f7f7;padding:.5em;overflow-x:auto;margin:.3em 0}
.source .ln{display:inline-block;width:2.5em;color:#999;user-select:none}
.source>span{display:block;min-height:1.2em}.source .cause-line{background:#fff3cd}
table.diff{border-collapse:collapse;width:100%;table-layout:fixed;font:12px/1.35 ui-monospace,monospace}
table.diff td{vertical-align:top;white-space:pre-wrap;word-break:break-all;padding:0 4px;border-left:1px solid #eee}
table.diff th{font-weight:600;text-align:left;background:#fafafa}
td.del{background:#ffebe9}td.add{background:#e6ffec}td.empty{background:#f4f4f4}
td.del mark{background:#ff8182}td.add mark{background:#4ac26b}
table.numbers{border-collapse:collapse;font:12px ui-monospace,monospace}
table.numbers td,table.numbers th{border:1px solid #ddd;padding:1px 6px;text-align:right}
.images{display:flex;gap:1em;flex-wrap:wrap}.images figure{margin:0}
.images img{min-width:240px;max-width:360px;image-rendering:pixelated;border:1px solid #ccc}
figcaption{font-size:.85em;color:#555}
.cause{margin:.3em 0}.cause .kind{font-weight:600}
.note{color:#555}
"""


def write_html(report: Any, path: str | os.PathLike[str]) -> Path:
    """Write `report` (a CheckReport) as one HTML file at `path`, atomically; return the path."""
    target = Path(path)
    text = render_html(report)
    with userfiles.replacing(target) as out:
        out.write(text)
    return target


def render_html(report: Any) -> str:
    """The whole page as a string."""
    verdict = {0: "OK", 1: "DIFFERS"}.get(report.exit_code, "ERROR")
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        f"<title>ipyrepro check: {_e(Path(str(report.notebook)).name)}: {verdict}</title>",
        f"<style>{STYLE}</style></head><body>",
        _summary(report, verdict),
    ]
    parts += [_cell(report, cell) for cell in report.cells]
    parts.append(_extras(report))
    parts.append("</body></html>")
    return "\n".join(part for part in parts if part)


# -- summary -----------------------------------------------------------------------------


def _summary(report: Any, verdict: str) -> str:
    failing = [d for d in report.differences if getattr(d, "fails", True)]
    differing = sorted({d.cell.index for d in failing})
    images = sum(1 for d in failing if d.image)
    environment = sorted({d.cell.index for d in report.differences} - set(differing))
    rows = [
        ("Notebook", _e(str(report.notebook))),
        ("Verdict", f"<span class='verdict {verdict}'>{verdict}</span> (exit code {report.exit_code})"),
        ("Runs", f"{len(report.runs)} in fresh {_e(repr(report.kernel))} kernels, {_e(report.mode)}"),
        ("Code cells", str(len(report.cells))),
        ("Differing cells", f"{len(differing)} "
         f"({len(failing) - images} text/data outputs, {images} images)"),
    ]
    if environment:
        explained = dict.fromkeys(d.kind_text() for d in report.differences if not getattr(d, "fails", True))
        rows.append(("Environment only", f"{len(environment)} cells ({_e('; '.join(explained))})"))
    note = getattr(report, "kernel_note", "")
    if note:
        rows.append(("Kernel", _e(note)))
    causes = getattr(report, "causes", None)
    if causes is not None and getattr(causes, "status", "done") != "done":
        rows.append(("Causes", f"the diagnostic run {_e(causes.status)}"))
    table = "".join(f"<tr><th>{name}</th><td>{value}</td></tr>" for name, value in rows)
    errors = "".join(f"<li><pre>{_e(str(error))}</pre></li>" for error in report.errors)
    links = ", ".join(f"<a href='#cell-{index}'>{_e(_label(report, index))}</a>" for index in differing)
    explained_links = ", ".join(f"<a href='#cell-{index}'>{_e(_label(report, index))}</a>" for index in environment)
    return (
        f"<h1>ipyrepro check: {_e(Path(str(report.notebook)).name)}</h1>"
        f"<p class='note'>{_e(report.header())}</p><table class='summary'>{table}</table>"
        + (f"<h3>Errors</h3><ul>{errors}</ul>" if errors else "")
        + (f"<p>Differing: {links}</p>" if links else "")
        + (f"<p>Environment differences (they do not fail the check): {explained_links}</p>" if environment else "")
    )


def _label(report: Any, index: int) -> str:
    cell = next((cell for cell in report.cells if cell.index == index), None)
    return cell.label() if cell is not None else f"cell {index}"


# -- one cell ----------------------------------------------------------------------------


def _cell(report: Any, cell: Any) -> str:
    differences = [d for d in report.differences if d.cell.index == cell.index]
    errors = [run for run in report.runs if run.error and getattr(run, "error_cell", None) == cell.index]
    causes = list(report.cell_causes(cell.index)) if hasattr(report, "cell_causes") else []
    failing = [d for d in differences if getattr(d, "fails", True)]
    state, badge = (
        ("error", "a run stopped here") if errors
        else ("differs", "differs") if failing
        else ("environment", "environment only") if differences
        else ("matched", "matched") if _ran_everywhere(report, cell) else ("skipped", "not compared")
    )
    lines = {cause.line for cause in causes if getattr(cause, "line", None)}
    body = [f"<h2>{_e(cell.label())}<span class='badge'>{badge}</span></h2>", _source(cell, lines)]
    for run in errors:
        body.append(f"<h3>Run {run.number} stopped here</h3><pre>{_e(str(run.error))}</pre>")
    for difference in differences:
        body.append(_difference(report, difference))
    if causes:
        body.append("<h3>Causes</h3>" + "".join(_cause(cell, cause) for cause in causes))
    hash_order = getattr(getattr(report, "causes", None), "hash_order_cells", ()) or ()
    if cell.index in hash_order:
        body.append("<p class='note'>Reproduces only because PYTHONHASHSEED is fixed: the output changes with "
                    "another one.</p>")
    content = "".join(body)
    if state == "matched":  # folded: the page leads with what differs
        content = f"<details><summary>{_e(cell.label())} <span class='badge'>matched</span></summary>" + (
            f"{_source(cell, lines)}</details>"
        )
    return f"<section class='cell {state}' id='cell-{cell.index}'>{content}</section>"


def _ran_everywhere(report: Any, cell: Any) -> bool:
    return all(cell.index in run.outputs for run in report.runs) and len(report.runs) >= 2


def _source(cell: Any, marked: set[int]) -> str:
    rows = []
    for number, line in enumerate(cell.source.splitlines() or [""], 1):
        mark = " class='cause-line'" if number in marked else ""
        rows.append(f"<span id='cell-{cell.index}-L{number}'{mark}><span class='ln'>{number}</span>{_e(line)}</span>")
    return "<pre class='source'>" + "".join(rows) + "</pre>"


def _cause(cell: Any, cause: Any) -> str:
    line = getattr(cause, "line", None)
    location = _e(getattr(cause, "location", "") or "")
    where = f"<a href='#cell-{cell.index}-L{line}'>line {line}</a>" if line else location
    code = getattr(cause, "code", "")
    detail, fix = getattr(cause, "detail", ""), getattr(cause, "fix", "")
    return (
        f"<div class='cause'><span class='kind'>{_e(getattr(cause, 'kind', 'cause'))}</span> at {where}"
        + (f": <code>{_e(code)}</code>" if code else "")
        + (f"<br>{_e(detail)}" if detail else "")
        + (f"<br><b>Fix:</b> {_e(fix)}" if fix else "")
        + "</div>"
    )


# -- one difference ----------------------------------------------------------------------


def _difference(report: Any, difference: Any) -> str:
    first, other = difference.runs
    kind = getattr(difference, "kind", "value")
    explained = difference.kind_text() if hasattr(difference, "kind_text") else ""
    title = (
        f"<h3>{_e(difference.what)}: {_e(_side(first))} vs {_e(_side(other))} "
        f"<span class='kind {_e(kind)}'>{_e(kind)}</span>{(' ' + _e(explained)) if explained else ''}</h3>"
    )
    left = _output(report, first, difference.cell.index, difference.what)
    right = _output(report, other, difference.cell.index, difference.what)
    if difference.image:
        return title + _images(difference.what, left, right, first, other)
    if left is None or right is None:  # not found in the runs' outputs: show what the report kept
        return title + f"<pre>{_e(difference.diff or difference.detail)}</pre>"
    numbers = number_differences(left, right)
    table = ""
    if numbers:
        rows = "".join(
            f"<tr><td>{n.position}</td><td>{_e(n.left)}</td><td>{_e(n.right)}</td>"
            f"<td>{n.absolute:.6g}</td><td>{_relative(n.relative)}</td></tr>"
            for n in numbers
        )
        table = (
            f"<table class='numbers'><tr><th>#</th><th>run {first}</th><th>run {other}</th><th>abs diff</th>"
            f"<th>rel diff</th></tr>{rows}</table>"
        )
    return title + side_by_side(left, right, f"run {first}", f"run {other}") + table


def _side(number: int) -> str:
    return "saved" if number == 0 else f"run {number}"


def _relative(value: float) -> str:
    return "inf" if value == float("inf") else f"{value:.3g}"


def _output(report: Any, number: int, index: int, what: str) -> str | None:
    """The raw text (or base64 image) a run gave for output `what` of the cell, or None."""
    run = next((run for run in report.runs if run.number == number), None)
    if run is None or index not in run.outputs:
        return None
    pieces = []
    for output in run.outputs[index]:
        kind = output.get("output_type")
        if kind == "stream" and what in (output.get("name"), "outputs"):
            pieces.append(output.get("text", ""))
        elif kind == "error" and what in ("error", "outputs"):
            pieces.append(f"{output.get('ename')}: {output.get('evalue')}")
        elif kind in ("display_data", "execute_result"):
            for mime, value in output.get("data", {}).items():
                if mime == what or (what == "outputs" and not mime.startswith("image/")):
                    pieces.append(value if isinstance(value, str) else json.dumps(value, indent=1, sort_keys=True))
    if not pieces:
        return None
    return "".join(pieces) if what != "outputs" else "\n".join(pieces)


def _images(mime: str, left: str | None, right: str | None, first: int, other: int) -> str:
    if left is None or right is None:
        return "<p class='note'>the image is missing in one run</p>"
    figures = [_figure(mime, left, f"run {first}", "run-image"), _figure(mime, right, f"run {other}", "run-image")]
    note = ""
    if mime == "image/png":
        try:
            a, b = decode_png(_bytes(left)), decode_png(_bytes(right))
            if a.shape != b.shape:
                note = f"sizes differ: {a.shape[1]}x{a.shape[0]} vs {b.shape[1]}x{b.shape[0]} pixels: no heat map"
            else:
                heat, changed, largest = heat_map(a, b)
                caption = f"difference: {changed} of {a.shape[0] * a.shape[1]} pixels, largest {largest} of 255"
                figures.append(_figure("image/png", base64.b64encode(encode_png(heat)).decode(), caption, "heat-map"))
        except (PngError, binascii.Error, ValueError) as error:
            note = f"cannot compare the pixels: {error}"
    else:
        note = f"{mime} is compared by its bytes; a heat map needs PNG"
    return f"<div class='images'>{''.join(figures)}</div>" + (f"<p class='note'>{_e(note)}</p>" if note else "")


def _bytes(value: str) -> bytes:
    return base64.b64decode("".join(value.split()), validate=True)


def _figure(mime: str, value: str, caption: str, css: str) -> str:
    if mime == "image/svg+xml":
        value = base64.b64encode(value.encode()).decode()
    source = f"data:{_e(mime)};base64,{''.join(value.split())}"
    image = f"<img class='{css}' alt='{_e(caption)}' src='{source}'>"
    return f"<figure>{image}<figcaption>{_e(caption)}</figcaption></figure>"


def heat_map(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, int, int]:
    """Where two RGBA images differ: unchanged pixels as a faded grey copy of `a`, changed ones from
    yellow (small) to red (largest). Returns the picture, the changed pixel count and the largest change."""
    delta = np.abs(a.astype(np.int16) - b.astype(np.int16)).max(axis=2)
    largest = int(delta.max())
    grey = (a[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)) * (a[..., 3] / 255.0)
    faded = (235 + grey * 20 / 255).astype(np.uint8)
    out = np.repeat(faded[..., None], 3, axis=2)
    changed = delta > 0
    if largest:
        strength = delta[changed] / largest
        out[changed] = np.stack(
            [np.full_like(strength, 255), 220 * (1 - strength), np.zeros_like(strength)], axis=1
        ).astype(np.uint8)
    return out, int(changed.sum()), largest


# -- what other parts of the check add ---------------------------------------------------------


def _extras(report: Any) -> str:
    """Reproduced errors and hidden-state findings, when the report carries them."""
    sections = []
    for attribute, title in (("reproduced_errors", "Reproduced errors"), ("hidden_state", "Hidden state")):
        items = getattr(report, attribute, None)
        if not items:
            continue
        entries = "".join(f"<li>{_finding(item)}</li>" for item in items)
        sections.append(f"<section class='findings' id='{attribute.replace('_', '-')}'><h2>{title}</h2>"
                        f"<ul>{entries}</ul></section>")
    return "".join(sections)


def _finding(item: Any) -> str:
    index = getattr(item, "index", None)
    if index is None and getattr(item, "cell", None) is not None:
        index = getattr(item.cell, "index", None)
    text = item.text() if callable(getattr(item, "text", None)) else str(item)
    link = f"<a href='#cell-{index}'>cell</a>: " if isinstance(index, int) else ""
    return f"{link}<pre>{_e(text)}</pre>"


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)
