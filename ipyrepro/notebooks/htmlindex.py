"""`ipyrepro check PATH… --html DIR`: one HTML report per notebook, and an index page that links them.

The index is the summary table of the run (notebook, verdict, cells compared, first divergence, time);
like the reports it is one static page: every text escaped, no script, and a Content-Security-Policy
that allows nothing but inline styles and data: images.
"""

from __future__ import annotations

import html
import os
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ..core import userfiles
from ..core.userfiles import PathProblem, expand
from .htmlreport import CSP
from .reportmodel import VERDICTS

INDEX = "index.html"
STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:0 auto;max-width:1100px;padding:1em 2em;color:#1b1b1b}
table{border-collapse:collapse}td,th{text-align:left;padding:3px 14px 3px 0;border-bottom:1px solid #eee}
.verdict{font-weight:700;padding:2px 8px;border-radius:4px;color:#fff}
.OK{background:#2e7d32}.DIFFERS{background:#c62828}.ERROR{background:#6a1b9a}
pre{background:#f7f7f7;padding:.4em;white-space:pre-wrap;margin:.2em 0}
"""


def validate_folder(path: str | os.PathLike[str]) -> Path:
    """The `--html DIR` folder, checked before any kernel starts: a folder, or a new name in a folder that exists."""
    folder = expand(path, "--html")
    if folder.exists() and not folder.is_dir():
        raise PathProblem(
            f"cannot write the reports into {str(folder)!r}: it is a file; with several notebooks --html "
            "names a folder (one report per notebook and an index.html)"
        )
    if not folder.exists() and not folder.parent.is_dir():
        raise PathProblem(
            f"cannot write the reports into {str(folder)!r}: the folder {str(folder.parent)!r} does not exist"
        )
    if folder.exists() and not os.access(folder, os.W_OK):
        raise PathProblem(f"cannot write the reports into {str(folder)!r}: not writable")
    return folder


def report_names(paths: list[Path]) -> list[str]:
    """A file name per notebook: its path below the notebooks' common folder (folders joined by `__`), unique,
    ending in `.html`."""
    resolved = [path.resolve() for path in paths]
    common = Path(os.path.commonpath([path.parent for path in resolved])) if resolved else Path()
    names: list[str] = []
    for path in resolved:
        base = "__".join(path.relative_to(common).parts)
        name, number = f"{base}.html", 2
        while name in names:
            name, number = f"{base}-{number}.html", number + 1
        names.append(name)
    return names


def planned_files(folder: Path, paths: list[Path]) -> list[Path]:
    """Every file `write_reports` will write for `paths`: the reports and the index."""
    return [folder / name for name in report_names(paths)] + [folder / INDEX]


def write_reports(many: Any, folder: str | os.PathLike[str]) -> Path:
    """Write each notebook's report and the index into `folder` (created if missing); return the index's path."""
    from .htmlreport import write_html

    target = Path(folder)
    target.mkdir(exist_ok=True)
    names = report_names([result.path for result in many.results])
    for result, name in zip(many.results, names):
        if result.report is not None:
            write_html(result.report, target / name)
    index = target / INDEX
    with userfiles.replacing(index, shared=True) as out:  # a page to open and share
        out.write(render_index(many, names))
    return index


def render_index(many: Any, names: list[str]) -> str:
    """The index page: the summary table, each notebook linked to its report."""
    e = html.escape
    rows = []
    for result, name in zip(many.results, names):
        notebook = e(str(result.path))
        link = f"<a href='{e(quote(name))}'>{notebook}</a>" if result.report is not None else notebook
        error = f"<pre>{e(result.error)}</pre>" if result.error else ""
        rows.append(
            f"<tr><td>{link}{error}</td><td><span class='verdict {result.verdict}'>{result.verdict}</span></td>"
            f"<td>{e(result.compared())}</td><td>{e(result.first_divergence())}</td>"
            f"<td>{result.seconds:.1f} s</td></tr>"
        )
    verdict = VERDICTS[many.exit_code]
    return "\n".join(
        [
            "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
            f"<meta http-equiv='Content-Security-Policy' content=\"{CSP}\">",
            "<meta name='viewport' content='width=device-width, initial-scale=1'>",
            f"<title>ipyrepro check: {len(many.results)} notebooks: {verdict}</title>",
            f"<style>{STYLE}</style></head><body>",
            f"<h1>ipyrepro check: {len(many.results)} notebooks <span class='verdict {verdict}'>{verdict}</span></h1>",
            "<table><tr><th>notebook</th><th>verdict</th><th>cells compared</th><th>first divergence</th>"
            "<th>time</th></tr>",
            *rows,
            "</table></body></html>",
        ]
    )
