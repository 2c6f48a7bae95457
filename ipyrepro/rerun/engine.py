"""Run the same code N times from the same RNG state and the same namespace, and compare the results.

One engine (`_run_all`) serves both faces: `compare(fn)` for a callable (callables.py), and
`rerun_cell(shell, cell)` for `%%repro` (cell.py). Each run starts from the same seed; the
first run's results are kept by reference and later runs are compared with them; when they
differ, one more traced run names the causes (ipyrepro.causes).
"""

from __future__ import annotations

import contextlib
import functools
import keyword
import re
import signal
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import numpy as np

from ..causes.diagnosis import diagnose
from ..comparison import digests
from ..comparison import fingerprint as fp
from ..comparison.report import CompareReport, Entry, RunError
from ..comparison.snapshot import _deep_copy_all
from ..comparison.values import (
    MISSING,
    NOT_COMPARABLE,
    SINGLE,
    Outcome,
    Tolerance,
    compare_values,
    rank,
)
from ..core import seeding
from ..core.state import ReproState

LAST_EXPRESSION = "(last expression)"
RESULT = "result"
_LAST = "_ipyrepro_last_value_"
_ABSENT = object()
_ALIASED = (
    "run {run} returned run 1's object (or one sharing its memory) again, so a change in place could not be "
    "seen; return a copy (e.g. .clone()) to compare it"
)
_IPYTHON_NAMES = re.compile(r"^(_+|_i+|_i\d+|_\d+|_[iod]h|In|Out|get_ipython|exit|quit)$")


class _RunFailed(Exception):
    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


# -- validation ------------------------------------------------------------------


def _validate_runs(runs: object) -> int:
    if isinstance(runs, bool) or not isinstance(runs, (int, np.integer)) or int(runs) < 1:
        raise ValueError(f"runs must be an integer >= 1 (2 or more to compare); got {runs!r}")
    return int(runs)


def _validate_names(names: Iterable[str] | None) -> list[str] | None:
    if names is None:
        return None
    if isinstance(names, str):
        names = [part.strip() for part in names.split(",") if part.strip()]
    names = list(names)
    if not names:
        raise ValueError("vars must name at least one variable")
    for name in names:
        if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name):
            raise ValueError(f"vars must be Python names separated by commas; {name!r} is not a name")
    return list(dict.fromkeys(names))


def _resolve_seed(
    seed: int | None, state: ReproState, saved: fp.Saved | None, *, cell: bool = False, code: str = ""
) -> int:
    """An explicit seed; else the file's (for a check); else, for a cell that the re-seed hook seeded,
    the seed it started from (so the namespace ends as if the cell ran without %%repro); else the
    base seed, or 0.

    A seed derived from the code (`source`, or `cell` without a cell id) comes from `code`, the
    cell's body: the hook saw the `%%repro` line too, which the same cell without it lacks."""
    if seed is not None:
        return seeding.validate_seed(seed)
    if saved is not None and saved.seed is not None:
        return saved.seed  # --check reruns from the seed the file was written with
    if cell and state.reseed != "off" and state.last_cell is not None:
        if state.last_cell.derivation == "source":
            return state.source_seed(code)
        return state.last_cell.seed
    return state.seed if state.seed is not None else 0


def _prepare_files(save: str | None, check: str | None) -> fp.Saved | None:
    if save is not None and check is not None:
        raise ValueError("use --save or --check, not both (check first, then save a new file if you want one)")
    if save is not None:
        fp.check_writable(save)
    return fp.load(check) if check is not None else None


# -- the engine ------------------------------------------------------------------


class _Runner:
    """What differs between a callable and a cell: how a run is prepared, executed and undone."""

    subject = "callable"
    restore = True

    def prepare(self, run: int, runs: int) -> None: ...

    def execute(self) -> dict[str, Any]:
        raise NotImplementedError

    def recover(self, run: int, runs: int) -> None: ...

    def begin_diagnosis(self) -> None: ...

    def end_diagnosis(self) -> None: ...

    def show_output(self) -> None: ...

    def last_value(self, values: Mapping[str, Any]) -> Any:
        return None

    def freeze(self, values: dict[str, Any]) -> dict[str, Any]:
        """Run 1's values, kept safe from later runs: a callable may return the same object, changed in place."""
        return _deep_copy_all(values)[0]

    def aliased(self, values: Mapping[str, Any]) -> list[str]:
        """Names whose run-1 value a later run returned again, so a change in place could not be seen."""
        return []

    def notes(self) -> list[str]:
        return []

    def interrupted(self) -> str | None:
        """After a KeyboardInterrupt: make the namespace whole and say in which state it is (None: nothing to do)."""
        return None


@contextmanager
def _interrupts_deferred() -> Iterator[list[int]]:
    """Hold Ctrl-C while the namespace is put back together, so it is never left half restored.

    Only the main thread can handle signals; elsewhere this defers nothing. Yields the signals
    that arrived, for the caller to act on once the namespace is whole.
    """
    caught: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield caught
        return
    try:
        previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    except (ValueError, OSError, TypeError):
        yield caught
        return
    try:
        yield caught
    finally:
        signal.signal(signal.SIGINT, previous)


def _interruptible(run_all: Callable[..., CompareReport]) -> Callable[..., CompareReport]:
    """A KeyboardInterrupt anywhere in the runs leaves the namespace as before the cell or as after one
    complete run, never a mix; the re-raised KeyboardInterrupt says which."""

    @functools.wraps(run_all)
    def wrapper(runner: _Runner, *args: Any, **kwargs: Any) -> CompareReport:
        try:
            return run_all(runner, *args, **kwargs)
        except KeyboardInterrupt:
            with _interrupts_deferred():
                where = runner.interrupted()
            if where is None:
                raise
            raise KeyboardInterrupt(f"%%repro was interrupted; {where}") from None
        except BaseException as error:  # e.g. a seeder plugin raised between runs: same promise, own error
            with _interrupts_deferred():
                where = runner.interrupted()
            if where is not None:
                with contextlib.suppress(AttributeError, TypeError):
                    error.add_note(f"(%%repro stopped: {where})")
            raise

    return wrapper


@_interruptible
def _run_all(
    runner: _Runner,
    *,
    runs: int,
    seed: int,
    tol: Tolerance,
    state: ReproState,
    explicit: list[str] | None,
    want_diagnosis: bool,
    save: str | None,
    saved: fp.Saved | None,
    report: CompareReport,
) -> CompareReport:
    status_before = state.status()  # what was in force when the cell ran: the diagnosis names it
    seeders = state.reseeder.seeders
    reference: dict[str, Any] | None = None
    entries: dict[str, Entry] = {}
    last: dict[str, Any] = {}
    for run in range(1, runs + 1):
        runner.prepare(run, runs)
        seeding.seed_all(seed, seeders)
        try:
            values = runner.execute()
        except _RunFailed as failed:
            runner.recover(run, runs)
            report.error = RunError(run, runs, failed.error)
            report.entries = [entry for entry in entries.values() if entry.outcome.status != SINGLE]
            report.notes += runner.notes()
            runner.show_output()
            return report
        if reference is None:
            reference = runner.freeze(values)
            entries = {name: Entry(name, Outcome(SINGLE, name)) for name in values}
        else:
            for name in runner.aliased(values):
                entries[name] = Entry(name, Outcome(NOT_COMPARABLE, name, _ALIASED.format(run=run)))
            _compare_run(entries, reference, values, run, tol)
        last = values
    assert reference is not None
    report.value = runner.last_value(last)
    del last
    report.entries = _final_entries(entries, reference, explicit)
    report.notes += runner.notes()
    if report.differences and want_diagnosis:
        report.diagnosis = _diagnose(runner, status_before, seed, seeders)
    if saved is None and save is None:  # digests and statistics only serve --save and --check
        runner.show_output()
        return report
    records = digests.fingerprint(
        {
            entry.name: reference[entry.name]
            for entry in report.entries
            if reference.get(entry.name, _ABSENT) is not _ABSENT
        }
    )
    if saved is not None:
        report.check = fp.check(saved, records, tol, fp.environment(seed))
    if save is not None:
        try:
            report.saved = fp.save(save, records, seed=seed, runs=runs, reproducible=not report.differences)
        except OSError as error:
            runner.show_output()  # the runs happened: their output is not lost with the file
            raise fp.FingerprintFileError(f"could not write {save!r}: {error}") from error
        if report.differences:
            report.notes.append("the runs differed; the saved digests are run 1's")
    runner.show_output()
    return report


def _compare_run(
    entries: dict[str, Entry], reference: Mapping[str, Any], values: Mapping[str, Any], run: int, tol: Tolerance
) -> None:
    for name, entry in entries.items():
        if entry.run is not None or entry.outcome.status == NOT_COMPARABLE:
            continue  # already differed in an earlier run, or cannot be compared at all
        a, b = reference.get(name, _ABSENT), values.get(name, _ABSENT)
        if a is _ABSENT and b is _ABSENT:
            continue
        if a is _ABSENT or b is _ABSENT:
            outcome = Outcome(MISSING, name, f"not defined after run {1 if a is _ABSENT else run}")
        else:
            outcome = compare_values(a, b, name, tol)
        if not outcome.matched and outcome.status != NOT_COMPARABLE:
            entries[name] = Entry(name, outcome, run)  # the first run that disagreed with run 1
        elif entry.outcome.status == SINGLE or rank(outcome.status) > rank(entry.outcome.status):
            entries[name] = Entry(name, outcome)


def _final_entries(entries: dict[str, Entry], reference: Mapping[str, Any], explicit: list[str] | None) -> list[Entry]:
    out = []
    for name, entry in entries.items():
        if reference.get(name, _ABSENT) is _ABSENT and entry.run is None:
            if explicit is not None and name in explicit:
                out.append(Entry(name, Outcome(MISSING, name, "not defined after any run")))
            continue  # bound only in a branch that never ran: nothing to compare
        out.append(entry)
    return out


def _diagnose(runner: _Runner, status_before: Any, seed: int, seeders: list) -> Any:
    if not runner.restore:
        return diagnose(status_before, None, "--no-restore: a rerun would change the namespace once more")

    def rerun(traced: Callable[[], Any]) -> None:
        runner.begin_diagnosis()
        try:
            seeding.seed_all(seed, seeders)
            with traced():  # only the user's code runs under the tracer that names causes
                runner.execute()
        except _RunFailed as failed:
            raise failed.error from None
        finally:
            runner.end_diagnosis()

    code, source = getattr(runner, "code", None), getattr(runner, "source", None)
    return diagnose(status_before, rerun, cell_code=code, cell_source=source)
