"""Run the same code N times from the same RNG state and the same namespace, and compare the results.

One engine (`_run_all`) serves both faces: `compare(fn)` for a callable, and
`rerun_cell(shell, cell)` for `%%repro`. A cell is rerun with
`shell.run_cell(code, silent=True)`, chosen on purpose: silent runs fire no
pre/post_run_cell hooks (so ipyrepro's own re-seeding hook and other extensions'
hooks do not run N times, and the engine does the seeding), store no history and
do not display the last expression. That last one is the trap: a silent run
evaluates the cell's final expression and throws it away, so the engine rewrites
that expression into an assignment to a private name and reads it back.
"""

from __future__ import annotations

import ast
import contextlib
import functools
import keyword
import re
import signal
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import numpy as np

from .causes.diagnosis import diagnose
from .comparison import fingerprint as fp
from .comparison.aliasing import aliased, keep_run_one
from .comparison.report import CompareReport, Entry, RunError
from .comparison.snapshot import SNAPSHOT_WARN_BYTES, Snapshot, _deep_copy_all, cell_names, format_bytes, oversized
from .comparison.values import (
    MISSING,
    NOT_COMPARABLE,
    SINGLE,
    Outcome,
    Tolerance,
    comparable_automatically,
    compare_values,
    rank,
)
from .core import seeding
from .core.state import STATE, ReproState, ReproWarning

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
    records = fp.fingerprint(
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


# -- a callable ------------------------------------------------------------------


class _CallableRunner(_Runner):
    def __init__(self, fn: Callable[[], Any], names: list[str] | None) -> None:
        self.fn = fn
        self.names = names
        self.subject = getattr(fn, "__qualname__", None) or repr(fn)
        self._rng: tuple[Any, ...] | None = None
        self._kept: dict[str, Any] = {}
        self._by_reference: set[str] = set()

    def execute(self) -> dict[str, Any]:
        try:
            value = self.fn()
        except Exception as error:
            raise _RunFailed(error) from error
        if isinstance(value, dict) and value and all(isinstance(key, str) for key in value):
            values = dict(value)
        else:
            values = {RESULT: value}
        if self.names is not None:
            values = {name: values.get(name, _ABSENT) for name in self.names}
        return values

    def last_value(self, values: Mapping[str, Any]) -> Any:
        return values.get(RESULT) if set(values) == {RESULT} else dict(values)

    def freeze(self, values: dict[str, Any]) -> dict[str, Any]:
        """Run 1's objects as they are where nothing else can reach them; copies of the rest."""
        self._kept, self._by_reference = keep_run_one(values)
        return self._kept

    def aliased(self, values: Mapping[str, Any]) -> list[str]:
        return aliased(self._kept, self._by_reference, values)

    def begin_diagnosis(self) -> None:
        self._rng = seeding.capture_rng()  # NumPy's without importing numpy.random (it may wait for its seed)

    def end_diagnosis(self) -> None:
        if self._rng is not None:
            seeding.restore_rng(self._rng)


def compare(
    fn: Callable[[], Any],
    runs: int = 2,
    *,
    seed: int | None = None,
    rtol: float = 0.0,
    atol: float = 0.0,
    names: Iterable[str] | None = None,
    diagnose: bool = True,
    save: str | None = None,
    check: str | None = None,
) -> CompareReport:
    """Call `fn()` `runs` times, each from the same seed, and compare what it returns.

    A dict with string keys is compared key by key (`names` picks some); anything
    else is compared as one value named "result". Bitwise by default; with
    rtol/atol, values within `torch.isclose`'s tolerance match. Returns a report
    with `.ok` and `.differences`; a run that raises is reported, not re-raised.
    """
    if not callable(fn):
        raise ValueError(f"compare needs a callable that takes no arguments; got {type(fn).__name__}")
    runs = _validate_runs(runs)
    tol = Tolerance(rtol, atol)
    explicit = _validate_names(names)
    saved = _prepare_files(save, check)
    seed = _resolve_seed(seed, STATE, saved)
    runner = _CallableRunner(fn, explicit)
    report = CompareReport(runner.subject, runs, seed, tol, restore=False)
    return _run_all(
        runner,
        runs=runs,
        seed=seed,
        tol=tol,
        state=STATE,
        explicit=explicit,
        want_diagnosis=diagnose,
        save=save,
        saved=saved,
        report=report,
    )


# -- a notebook cell -------------------------------------------------------------


class _CellRunner(_Runner):
    subject = "cell"

    def __init__(self, shell: Any, code: str, compared: list[str], has_last: bool, snapshot: Snapshot | None) -> None:
        self.shell = shell
        self.ns: dict[str, Any] = shell.user_ns
        self.code = code
        self.compared = compared
        self.has_last = has_last
        self.snapshot = snapshot
        self.restore = snapshot is not None
        self.output: Any = None
        self._after: dict[str, Any] = {}
        self._rng: tuple[Any, ...] | None = None
        self._auto: set[str] | None = None
        self._discovered: dict[str, Any] = {}  # names the AST missed -> what they were bound to before
        self._restore_failures: list[str] = []
        self._run: int | None = None  # the run prepared last, of how many
        self._runs: int | None = None
        self._completed: int | None = None  # the last run whose cell finished

    def prepare(self, run: int, runs: int) -> None:
        self._run, self._runs = run, runs
        if self.snapshot is None:
            return
        if run < runs:
            # Fresh copies: the user's own objects stay untouched. The last run on copies gets the
            # snapshot's own: with 2 runs, one copy of what the cell reads is in memory, not two.
            self.snapshot.restore(self.ns, hand_over=run == runs - 1)
        else:
            self.snapshot.restore_originals(self.ns)  # the last run works on the user's objects
            # Copied again while the originals are still as before the cell (and the handed-over
            # copies are free): a failing last run and the diagnosis rerun start from it.
            self.snapshot.retake()

    def execute(self) -> dict[str, Any]:
        from IPython.utils.capture import capture_output

        shell = self.shell
        # On the first run, note what each name was bound to: names the AST cannot see (assigned by a
        # line magic such as `%time y = f()`, or through globals()) show up as rebound afterwards.
        before = dict(self.ns) if self._auto is None and not self.explicit else None
        saved = (shell.displayhook.exec_result, shell.last_execution_succeeded, shell.last_execution_result)
        try:
            with capture_output() as captured:
                result = shell.run_cell(self.code, store_history=False, silent=True)
        finally:
            shell.displayhook.exec_result, shell.last_execution_succeeded, shell.last_execution_result = saved
        self.output = captured
        last = self.ns.pop(_LAST, _ABSENT)
        error = result.error_before_exec or result.error_in_exec
        if error is not None:
            raise _RunFailed(error)
        if before is not None:
            self._discover(before)
        values = {name: self.ns.get(name, _ABSENT) for name in self.compared}
        if self._auto is not None:
            values = {name: value for name, value in values.items() if name in self._auto}
        if self.has_last and (last is not None or LAST_EXPRESSION in (self._auto or ())):
            values[LAST_EXPRESSION] = last
        if self._auto is None:
            self._auto = {
                name
                for name, value in values.items()
                if value is _ABSENT or name in self.explicit or comparable_automatically(value)
            }
            values = {name: value for name, value in values.items() if name in self._auto}
        if self.snapshot is None:  # the next run mutates the same objects: keep this run's values apart
            values, _ = _deep_copy_all(values)
        self._completed = self._run
        return values

    explicit: tuple[str, ...] = ()
    ignore: frozenset[str] = frozenset()
    source: str | None = None  # the cell as written, before IPython's transforms

    def _discover(self, before: dict[str, Any]) -> None:
        for name, value in self.ns.items():
            if name in self.compared or name in self.ignore or name.startswith("_"):
                continue
            previous = before.get(name, _ABSENT)
            if previous is not value:
                self.compared.append(name)
                self._discovered[name] = previous  # put back if a later run raises

    def recover(self, run: int, runs: int) -> None:
        with _interrupts_deferred() as caught:
            self._recover(run, runs)
        if caught:  # Ctrl-C during the restore: it is whole now, so honour the interrupt
            raise KeyboardInterrupt

    def _recover(self, run: int, runs: int) -> None:
        self.ns.pop(_LAST, None)
        if self.snapshot is None:
            return
        for name, value in self._discovered.items():
            if value is _ABSENT:
                self.ns.pop(name, None)
            else:
                self.ns[name] = value
        self.snapshot.restore_originals(self.ns)  # every name bound to the very object it had before the cell
        if run == runs:  # the last run worked on those objects: put their contents back in place
            for kind, why in self.snapshot.restore_contents().items():
                text = f"a {kind} could not be put back as it was ({why})"
                if text not in self._restore_failures:
                    self._restore_failures.append(text)

    def interrupted(self) -> str | None:
        if self.snapshot is None:
            self.ns.pop(_LAST, None)
            return "with --no-restore the namespace keeps what the runs so far left"
        if self._run is not None and self._completed == self._runs:
            self.ns.pop(_LAST, None)
            return "the namespace is as after one complete run (the last); the comparison did not finish"
        if self._run is not None:
            self._recover(self._run, self._runs or self._run)
        return "the namespace was restored to its state before the cell"

    def begin_diagnosis(self) -> None:
        assert self.snapshot is not None
        names = set(self.snapshot.originals) | set(self.snapshot.absent) | set(self.compared)
        self._after = {name: self.ns.get(name, _ABSENT) for name in names}
        self._rng = seeding.capture_rng()  # NumPy's without importing numpy.random (it may wait for its seed)
        self.snapshot.restore(self.ns)
        self._keep_output = self.output

    def end_diagnosis(self) -> None:
        with _interrupts_deferred() as caught:
            self.ns.pop(_LAST, None)
            for name, value in self._after.items():
                if value is _ABSENT:
                    self.ns.pop(name, None)
                else:
                    self.ns[name] = value
            if self._rng is not None:
                seeding.restore_rng(self._rng)
            self.output = self._keep_output
        if caught:
            raise KeyboardInterrupt

    def show_output(self) -> None:
        if self.output is not None:
            self.output.show()

    def freeze(self, values: dict[str, Any]) -> dict[str, Any]:
        return values  # each run works on its own copies (or, with --no-restore, execute() copied them)

    def last_value(self, values: Mapping[str, Any]) -> Any:
        return values.get(LAST_EXPRESSION)

    def notes(self) -> list[str]:
        notes = []
        if self.snapshot is None:
            notes.append(
                "--no-restore: no snapshot was taken, so each run started from what the previous one left; names "
                "the cell changes in place (or reads before rebinding, like n += 1) may differ for that reason, "
                "and the namespace keeps what all the runs did."
            )
        else:
            for name, why in self.snapshot.not_copied.items():
                notes.append(f"{name} could not be copied ({why}); it was not restored between runs.")
            notes += self._restore_failures
        return notes


def _capture_last_expression(code: str, tree: ast.Module) -> tuple[str, bool]:
    """Rewrite a final expression `expr` as `_ipyrepro_last_value_ = (expr)`, on the same lines."""
    if not tree.body or not isinstance(tree.body[-1], ast.Expr):
        return code, False
    node = tree.body[-1]
    data = code.encode("utf-8")
    starts = [0]
    for line in code.splitlines(keepends=True):
        starts.append(starts[-1] + len(line.encode("utf-8")))
    begin = starts[node.lineno - 1] + node.col_offset
    end = starts[node.end_lineno - 1] + node.end_col_offset  # type: ignore[operator]
    rewritten = data[:begin] + f"{_LAST} = (".encode() + data[begin:end] + b")" + data[end:]
    return rewritten.decode("utf-8"), True


def _line(code: str, lineno: int | None) -> str:
    lines = code.splitlines()
    return lines[lineno - 1].strip() if lineno and 0 < lineno <= len(lines) else ""


def rerun_cell(
    shell: Any,
    cell: str,
    *,
    runs: int = 2,
    seed: int | None = None,
    rtol: float = 0.0,
    atol: float = 0.0,
    names: Iterable[str] | None = None,
    restore: bool = True,
    save: str | None = None,
    check: str | None = None,
    diagnose: bool = True,
    state: ReproState = STATE,
) -> CompareReport:
    """`%%repro`: run `cell` `runs` times from the same seed and namespace and compare what it assigns.

    Everything is validated before the first run; afterwards the namespace is as
    after exactly one run (or, if a run raised, as before the cell).
    """
    runs = _validate_runs(runs)
    tol = Tolerance(rtol, atol)
    explicit = _validate_names(names)
    if not isinstance(restore, bool):
        raise ValueError(f"restore must be True or False; got {restore!r}")
    code = shell.transform_cell(cell)
    try:
        tree = ast.parse(code)
        # `return`/`yield` at top level parse but do not compile: say so in the user's code, not the rewrite.
        compile(tree, "<cell>", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT, dont_inherit=True)
    except SyntaxError as error:
        line = _line(code, error.lineno)
        raise ValueError(
            f"the cell does not parse, so nothing ran: SyntaxError: {error.msg} (line {error.lineno}"
            + (f": {line}" if line else "")
            + ")"
        ) from None
    saved = _prepare_files(save, check)
    seed = _resolve_seed(seed, state, saved, cell=True, code=cell)
    namespace = shell.user_ns
    touched = cell_names(tree, namespace)
    hidden = set(getattr(shell, "user_ns_hidden", {}))
    ignore = {name for name in namespace if name in hidden or _IPYTHON_NAMES.match(name)}
    if explicit is not None:
        compared, has_last = explicit, False
    else:
        compared = [name for name in touched.bound if name not in ignore and not _IPYTHON_NAMES.match(name)]
        code, has_last = _capture_last_expression(code, tree)
    snapshot = None
    report = CompareReport("cell", runs, seed, tol, restore=restore)
    if restore:
        from .comparison.snapshot import CellNames

        tracked = CellNames(
            tuple(name for name in (*touched.bound, *(explicit or ())) if name not in ignore),
            tuple(name for name in (*touched.read, *(explicit or ())) if name not in ignore),
        )
        try:
            snapshot = Snapshot.take(namespace, tracked)
        except KeyboardInterrupt:
            raise KeyboardInterrupt(
                "%%repro was interrupted while taking its snapshot; nothing ran and the namespace is as before the cell"
            ) from None
        report.snapshot_bytes, report.snapshot_by_device = snapshot.nbytes, snapshot.bytes_by_device
        report.snapshot_names = list(snapshot.copies)
        large = oversized(snapshot.bytes_by_device, SNAPSHOT_WARN_BYTES)
        if large:
            where = ", ".join(f"{format_bytes(size)} on {device}" for device, size in large.items())
            text = (
                f"the snapshot restored before each run holds {where} (and each run but the last works on "
                "another copy of it). If memory is tight, use --no-restore: no snapshot, but names the cell "
                "changes in place may then differ between runs for that reason."
            )
            report.warnings.append(text)
            warnings.warn(text, ReproWarning, stacklevel=2)
    runner = _CellRunner(shell, code, compared, has_last, snapshot)
    runner.source = cell  # the causes show the cell's lines as written
    runner.explicit = tuple(explicit or ())
    runner.ignore = frozenset(ignore | hidden)
    return _run_all(
        runner,
        runs=runs,
        seed=seed,
        tol=tol,
        state=state,
        explicit=explicit,
        want_diagnosis=diagnose,
        save=save,
        saved=saved,
        report=report,
    )
