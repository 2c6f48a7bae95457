"""`%%repro`: rerun a notebook cell N times from the same seed and namespace, and compare its variables.

A cell is rerun with `shell.run_cell(code, silent=True)`, chosen on purpose: silent runs fire no
pre/post_run_cell hooks (so ipyrepro's own re-seeding hook and other extensions' hooks do not run
N times, and the engine does the seeding), store no history and do not display the last
expression. That last one is the trap: a silent run evaluates the cell's final expression and
throws it away, so the engine rewrites that expression into an assignment to a private name and
reads it back.
"""

from __future__ import annotations

import ast
import warnings
from collections.abc import Iterable, Mapping
from typing import Any

from ..comparison.report import CompareReport
from ..comparison.snapshot import SNAPSHOT_WARN_BYTES, Snapshot, _deep_copy_all, cell_names, format_bytes, oversized
from ..comparison.values import (
    Tolerance,
    comparable_automatically,
)
from ..core import seeding
from ..core.state import STATE, ReproState, ReproWarning
from .engine import (
    _ABSENT,
    _IPYTHON_NAMES,
    _LAST,
    LAST_EXPRESSION,
    _interrupts_deferred,
    _prepare_files,
    _resolve_seed,
    _run_all,
    _RunFailed,
    _Runner,
    _validate_names,
    _validate_runs,
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
        from ..comparison.snapshot import CellNames

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
