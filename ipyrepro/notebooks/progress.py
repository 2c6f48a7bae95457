"""Progress of a notebook check that fits a terminal.

A check runs N kernels over M cells; printing a line per cell per run gives 120 lines for a 60-cell
notebook. Instead, `check` reports events to a `CheckProgress`, and the terminal gets:

- on a TTY, one live line per run (a `rich` progress bar with the cell position and the elapsed time);
- elsewhere (CI logs, a pipe), one line when a run starts and one when it ends, plus one line for each
  cell slower than `SLOW_CELL_SECONDS`;
- with `--quiet`, nothing.

Each line names its cell once, as an editor numbers it: `cell 3 of 10 · 5.5 s`. The causes run (one more
kernel, traced, when something differed) gets a progress line of its own, as a run does.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import IO, Any, Protocol

SLOW_CELL_SECONDS = 5.0  # a cell that runs longer gets its own line on a non-TTY
CAUSES = 0  # the live display's key for the causes run (runs are numbered from 1)


class LabelledCell(Protocol):
    def label(self) -> str: ...


def cell_text(cell: LabelledCell) -> str:
    """`cell 3 of 10`: where the cell is, once (its full label also repeats the code-cell numbering and id)."""
    position, count = getattr(cell, "position", None), getattr(cell, "cell_count", None)
    if position is None:
        return cell.label()
    return f"cell {position} of {count}" if count else f"cell {position}"


class CheckProgress:
    """What a check tells about its progress; this base class shows nothing (`--quiet`).

    Runs can be in flight at once (`--jobs`), so the methods are called from several threads.
    """

    def run_started(self, number: int, runs: int, kernel: str) -> None:
        """Run `number` of `runs` starts its kernel."""

    def cell_started(self, number: int, position: int, total: int, cell: LabelledCell) -> None:
        """Run `number` starts the `position`-th code cell of `total` (1-based)."""

    def cell_finished(self, number: int, position: int, total: int, cell: LabelledCell, seconds: float) -> None:
        """Run `number` finished a cell after `seconds`."""

    def run_finished(self, number: int, cells_run: int, total: int, seconds: float, error: str | None) -> None:
        """Run `number` ended: all cells ran, or `error` says where it stopped."""

    def causes_started(self, cells: int) -> None:
        """The causes run starts one more kernel to trace the `cells` code cells that differed (or led there)."""

    def causes_cell(self, position: int, total: int, cell: LabelledCell, tracing: bool) -> None:
        """The causes run reached the `position`-th code cell of `total`; `tracing`: under the tracer."""

    def causes_finished(self, seconds: float, status: str) -> None:
        """The causes run ended: `status` is "done" or says why not."""

    def note(self, text: str) -> None:
        """Anything else worth one line."""

    def close(self) -> None:
        """The check is over: a live display is removed."""


class PlainProgress(CheckProgress):
    """Whole lines for logs: run start and end, slow cells, notes. `write` receives one line at a time."""

    def __init__(self, write: Callable[[str], None], *, slow_after: float = SLOW_CELL_SECONDS) -> None:
        self.write = write
        self.slow_after = slow_after
        self._lock = threading.Lock()

    def _say(self, text: str) -> None:
        with self._lock:
            self.write(text)

    def run_started(self, number: int, runs: int, kernel: str) -> None:
        self._say(f"run {number} of {runs}: starting kernel {kernel!r}")

    def cell_finished(self, number: int, position: int, total: int, cell: LabelledCell, seconds: float) -> None:
        if seconds >= self.slow_after:
            self._say(f"run {number}: {cell_text(cell)} · {seconds:.1f} s")

    def run_finished(self, number: int, cells_run: int, total: int, seconds: float, error: str | None) -> None:
        if error is None:
            self._say(f"run {number}: done, {total} code cells in {seconds:.1f} s")
        else:
            self._say(
                f"run {number}: stopped after {cells_run} of {total} code cells ({seconds:.1f} s): "
                f"{error.splitlines()[0]}"
            )

    def causes_started(self, cells: int) -> None:
        traced = f"{cells} code cell{'s' if cells != 1 else ''}"
        self._say(f"causes: starting one more kernel to trace {traced}")

    def causes_cell(self, position: int, total: int, cell: LabelledCell, tracing: bool) -> None:
        if tracing:
            self._say(f"causes: tracing {cell_text(cell)}")

    def causes_finished(self, seconds: float, status: str) -> None:
        self._say(f"causes: {status} in {seconds:.1f} s")

    def note(self, text: str) -> None:
        self._say(text)


class SaidProgress(CheckProgress):
    """Only the causes run, as lines to `say` (for callers of `find_causes` with no progress display)."""

    def __init__(self, say: Callable[[str], None]) -> None:
        self._plain = PlainProgress(say)

    def causes_started(self, cells: int) -> None:
        self._plain.causes_started(cells)

    def causes_cell(self, position: int, total: int, cell: LabelledCell, tracing: bool) -> None:
        self._plain.causes_cell(position, total, cell, tracing)

    def causes_finished(self, seconds: float, status: str) -> None:
        self._plain.causes_finished(seconds, status)


class LiveProgress(CheckProgress):
    """One live line per run on a terminal, drawn by `rich`: a bar, the cell position, the elapsed time.

    `guard` wraps every draw (the pytest plugin passes one that suspends output capturing); with a
    guard the display is redrawn on events only, never from rich's background thread.
    """

    def __init__(
        self,
        stream: IO[str] | None = None,
        *,
        guard: Callable[[], AbstractContextManager[Any]] | None = None,
        transient: bool = False,
    ) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn

        self._guard = guard or nullcontext
        console = Console(file=stream, stderr=stream is None, force_terminal=True)
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[cell]} · {task.elapsed:.1f} s"),
            console=console,
            auto_refresh=guard is None,
            transient=transient,
            redirect_stdout=False,  # never swap sys.stdout/stderr: pytest's capturing owns them in the plugin
            redirect_stderr=False,
        )
        self._tasks: dict[int, Any] = {}
        self._causes_total = 0
        self._lock = threading.Lock()
        with self._guard():
            self._progress.start()

    def _draw(self, change: Callable[[], None]) -> None:
        with self._lock, self._guard():
            change()
            self._progress.refresh()

    def run_started(self, number: int, runs: int, kernel: str) -> None:
        def change() -> None:
            self._tasks[number] = self._progress.add_task(f"run {number}/{runs}", total=None, cell="starting kernel")

        self._draw(change)

    def cell_started(self, number: int, position: int, total: int, cell: LabelledCell) -> None:
        task = self._tasks.get(number)
        if task is not None:
            self._draw(lambda: self._progress.update(task, total=total, completed=position - 1, cell=cell_text(cell)))

    def cell_finished(self, number: int, position: int, total: int, cell: LabelledCell, seconds: float) -> None:
        task = self._tasks.get(number)
        if task is not None:
            self._draw(lambda: self._progress.update(task, completed=position))

    def run_finished(self, number: int, cells_run: int, total: int, seconds: float, error: str | None) -> None:
        task = self._tasks.get(number)
        if task is None:
            return
        state = f"done, {total} code cells" if error is None else f"stopped: {error.splitlines()[0][:60]}"
        self._draw(
            lambda: (
                self._progress.update(task, total=total or 1, completed=cells_run, cell=state),
                self._progress.stop_task(task),
            )
        )

    def causes_started(self, cells: int) -> None:
        def change() -> None:
            self._tasks[CAUSES] = self._progress.add_task("causes", total=None, cell="starting one more kernel")

        self._draw(change)

    def causes_cell(self, position: int, total: int, cell: LabelledCell, tracing: bool) -> None:
        task = self._tasks.get(CAUSES)
        self._causes_total = total
        text = f"tracing {cell_text(cell)}" if tracing else cell_text(cell)
        if task is not None:
            self._draw(lambda: self._progress.update(task, total=total, completed=position - 1, cell=text))

    def causes_finished(self, seconds: float, status: str) -> None:
        task = self._tasks.get(CAUSES)
        if task is not None:
            total = self._causes_total or 1
            self._draw(
                lambda: (
                    self._progress.update(task, total=total, completed=total, cell=status),
                    self._progress.stop_task(task),
                )
            )

    def note(self, text: str) -> None:
        self._draw(lambda: self._progress.console.print(text, markup=False, highlight=False))

    def close(self) -> None:
        with self._lock, self._guard():
            self._progress.stop()


def as_progress(progress: CheckProgress | Callable[[str], None] | None) -> CheckProgress:
    """`check(progress=...)` takes a CheckProgress, a function receiving lines (as PlainProgress), or None."""
    if progress is None:
        return CheckProgress()
    if isinstance(progress, CheckProgress):
        return progress
    return PlainProgress(progress)


@contextmanager
def terminal_progress(
    stream: IO[str] | None = None,
    *,
    quiet: bool = False,
    live: bool | None = None,
    slow_after: float = SLOW_CELL_SECONDS,
    guard: Callable[[], AbstractContextManager[Any]] | None = None,
    write: Callable[[str], None] | None = None,
    transient: bool = False,
) -> Iterator[CheckProgress]:
    """The progress display for `stream` (default stderr): live on a TTY, whole lines elsewhere, none if quiet.

    `live` overrides the TTY test; `write` receives the whole lines instead of `stream`; `guard` wraps
    every draw and `transient` removes the live lines at the end (both for the pytest plugin).
    """
    if quiet:
        shown: CheckProgress = CheckProgress()
    elif live if live is not None else _is_tty(stream if stream is not None else sys.stderr):
        shown = LiveProgress(stream, guard=guard, transient=transient)
    else:

        def print_line(text: str) -> None:
            with (guard or nullcontext)():
                print(text, file=stream if stream is not None else sys.stderr, flush=True)

        shown = PlainProgress(write or print_line, slow_after=slow_after)
    try:
        yield shown
    finally:
        shown.close()


def _is_tty(stream: IO[str]) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # a closed or unusual stream
        return False
