"""`%repro check` inside a notebook: which file the kernel belongs to, whether it is saved, and no recursion.

The check runs the notebook *file* in fresh kernels, as `ipyrepro check` does; the kernel asking only
names the file and shows the report. Which notebook a kernel belongs to is known from its frontend:
Jupyter Server sets `JPY_SESSION_NAME` in the kernel's environment (the notebook's path when the kernel
started), VS Code puts `__vsc_ipynb_file__` in the user namespace. Every kernel a check starts carries
CHECK_KERNEL_VAR, so a notebook that checks itself does nothing inside its own check.
"""

from __future__ import annotations

import html
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.validation import CHECK_KERNEL_VAR

SESSION_VAR = "JPY_SESSION_NAME"
VSCODE_NAME = "__vsc_ipynb_file__"
SKIPPED = (
    "%repro check: skipped: this kernel is one of an `ipyrepro check`'s (IPYREPRO_CHECK_KERNEL is set), so it "
    "does not start another check of its own"
)
UNKNOWN = (
    "%repro check: which notebook this kernel belongs to is not known (no JPY_SESSION_NAME from Jupyter Server, "
    "no __vsc_ipynb_file__ from VS Code); name it: %repro check path/to/notebook.ipynb"
)


def in_check_kernel(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether this process is a kernel that `ipyrepro check` started (then `%repro check` does nothing)."""
    return bool(environ.get(CHECK_KERNEL_VAR))


def kernel_notebook(user_ns: Mapping[str, Any], environ: Mapping[str, str] = os.environ) -> Path | None:
    """The notebook file this kernel belongs to, as its frontend tells it, or None when none says."""
    vscode = user_ns.get(VSCODE_NAME)
    if isinstance(vscode, str) and vscode:
        return Path(vscode)
    session = environ.get(SESSION_VAR, "")
    if not session:
        return None
    path = Path(session)
    if path.is_absolute() or path.exists():
        return path
    beside = Path(path.name)  # an older Jupyter Server gave the path from its root; the kernel runs beside it
    return beside if beside.exists() else path


def stale_warning(path: Path, last_change: float | None) -> str | None:
    """A warning when the file on disk is older than the last cell run here: the check runs the file."""
    try:
        saved = path.stat().st_mtime
    except OSError:
        return None
    if last_change is None or saved >= last_change:
        return None
    return (
        f"Warning: {path} was last saved at {_clock(saved)}, before the last cell ran here ({_clock(last_change)}); "
        "the check runs the file on disk: save the notebook first to check what you see"
    )


def _clock(stamp: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(stamp))


@dataclass
class CheckDisplay:
    """A check's report as a notebook shows it: the HTML report inline, the text report as the fallback.

    `report` is the CheckReport (`.exit_code`, `.differences`, `.to_dict()`), the same object the text,
    JSON and HTML come from."""

    report: Any

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, str]:
        return {"text/plain": str(self.report), "text/html": inline_html(self.report)}

    def __repr__(self) -> str:
        return str(self.report)


def inline_html(report: Any) -> str:
    """The HTML report in a sandboxed frame: its styles stay off the notebook's page and no script runs."""
    from .htmlreport import render_html

    page = render_html(report)
    verdict = {0: "OK", 1: "DIFFERS"}.get(report.exit_code, "ERROR")
    title = html.escape(f"ipyrepro check {report.notebook}: {verdict}", quote=True)
    return (
        f"<iframe sandbox title='{title}' srcdoc=\"{html.escape(page, quote=True)}\" "
        "style='width:100%;height:36em;border:1px solid #ccc;border-radius:4px'></iframe>"
    )
