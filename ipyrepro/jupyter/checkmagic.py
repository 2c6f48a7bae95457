"""`%repro check [PATH] [options]` and the panel's "Check this notebook": parse, call `check`, show.

The logic is the notebooks layer's (`notebooks/check.py`, `notebooks/selfcheck.py`); here are the
options, the live progress in the cell's output, and the display of the report.
"""

from __future__ import annotations

import argparse
import contextvars
import threading
import time
from pathlib import Path
from typing import Any

from ..notebooks.progress import CheckProgress, LabelledCell


def check_arguments(parser: argparse.ArgumentParser) -> None:
    """`%repro check`'s options: `ipyrepro check`'s that make sense for one notebook inside Jupyter."""
    from ..core import arguments
    from ..core.validation import RESEED_MODES

    parser.add_argument(
        "path",
        nargs="?",
        help="the notebook to check (default: this kernel's notebook, from JPY_SESSION_NAME or VS Code)",
    )
    parser.add_argument(
        "--runs", type=arguments.runs, default=None, help="fresh kernels (default 2; 1 with --against-saved)"
    )
    parser.add_argument("--against-saved", action="store_true", help="compare with the outputs saved in the file")
    parser.add_argument("--as-is", action="store_true", help="run it untouched: no `%%repro on` in the kernels")
    parser.add_argument("--seed", type=arguments.seed, default=None, help="the seed (default: the kernel's, else 0)")
    parser.add_argument("--reseed", choices=RESEED_MODES, default=None, help="re-seed mode (default: the kernel's)")
    parser.add_argument("--kernel", default=None, help="kernelspec to run (default: the notebook's)")
    parser.add_argument("--jobs", type=arguments.jobs, default=None, metavar="N", help="kernels at once")
    parser.add_argument("--timeout", type=arguments.timeout, default=600, help="seconds per cell (0: no limit)")
    parser.add_argument("--sanitize", action="append", default=[], metavar="REGEX", help="also replace matches")
    parser.add_argument("--rtol", type=arguments.tolerance, default=0.0, help="relative tolerance (default 0)")
    parser.add_argument("--atol", type=arguments.tolerance, default=0.0, help="absolute tolerance (default 0)")
    parser.add_argument("--no-causes", action="store_true", help="no diagnostic kernel when something differs")
    parser.add_argument("--no-state", action="store_true", help="do not digest each kernel's state")
    parser.add_argument("--stop-on-error", action="store_true", help="end a run at an unexpected exception")


def options_from(args: argparse.Namespace) -> dict[str, Any]:
    """`check`'s keyword arguments from the parsed options."""
    if args.runs is not None and args.runs < 2 and not args.against_saved:
        raise ValueError("--runs must be 2 or more (one run has nothing to compare with), or use --against-saved")
    return {
        "runs": args.runs,
        "against_saved": args.against_saved,
        "as_is": args.as_is,
        "seed": args.seed,
        "reseed": args.reseed,
        "kernel": args.kernel,
        "jobs": args.jobs,
        "timeout": args.timeout or None,
        "sanitize": args.sanitize,
        "rtol": args.rtol,
        "atol": args.atol,
        "causes": not args.no_causes,
        "state": not args.no_state,
        "stop_on_error": args.stop_on_error,
    }


def check_here(shell: Any, repro_state: Any, path: str | None = None, **options: Any) -> Any:
    """Check `path` (default: this kernel's notebook) in fresh kernels, with live progress in the output;
    return a CheckDisplay (the report, shown as HTML with a text fallback), or None when it cannot run here."""
    import os

    from ..notebooks.check import check
    from ..notebooks.selfcheck import SKIPPED, UNKNOWN, CheckDisplay, in_check_kernel, kernel_notebook, stale_warning

    if in_check_kernel():
        print(SKIPPED)
        return None
    notebook = path if path is not None else kernel_notebook(shell.user_ns)
    if notebook is None:
        print(UNKNOWN)
        return None
    notebook = os.path.expanduser(str(notebook))
    if path is None:  # the kernel's own notebook: is the file what the cells here show?
        hooks = repro_state.shell_hooks.get(id(shell))
        warning = stale_warning(Path(notebook), getattr(hooks, "last_cell_finished", None))
        if warning:
            print(warning)
    progress = CellProgress(str(notebook))
    try:
        report = check(notebook, progress=progress, **options)
    finally:
        progress.close()
    return CheckDisplay(report)


class CellProgress(CheckProgress):
    """Live progress in the cell's output: one line per run, updated in place (one display, updated)."""

    def __init__(self, notebook: str) -> None:
        from IPython.display import display

        self._lock = threading.Lock()
        self._context = contextvars.copy_context()  # runs report from worker threads: show in this cell
        self._runs: dict[int, str] = {}
        self._notes: list[str] = []
        self._started = time.monotonic()
        self._title = f"ipyrepro check {notebook}"
        self._handle = display({"text/plain": f"{self._title}: starting"}, raw=True, display_id=True)

    def _show(self, final: str = "") -> None:
        lines = [self._title + (f": {final}" if final else "")]
        lines += [self._runs[number] for number in sorted(self._runs)] + self._notes[-3:]
        if self._handle is not None:
            self._context.copy().run(self._handle.update, {"text/plain": "\n".join(lines)}, raw=True)

    def _set(self, number: int, text: str) -> None:
        with self._lock:
            self._runs[number] = text
            self._show()

    def run_started(self, number: int, runs: int, kernel: str) -> None:
        self._set(number, f"  run {number} of {runs}: starting kernel {kernel!r}")

    def cell_started(self, number: int, position: int, total: int, cell: LabelledCell) -> None:
        self._set(number, f"  run {number}: {position} of {total}: {cell.label()}")

    def run_finished(self, number: int, cells_run: int, total: int, seconds: float, error: str | None) -> None:
        if error is None:
            self._set(number, f"  run {number}: done, {total} code cells in {seconds:.1f} s")
        else:
            self._set(number, f"  run {number}: stopped after {cells_run} of {total}: {error.splitlines()[0]}")

    def note(self, text: str) -> None:
        with self._lock:
            self._notes.append(f"  {text}")
            self._show()

    def close(self) -> None:
        with self._lock:
            self._show(f"finished in {time.monotonic() - self._started:.1f} s")
