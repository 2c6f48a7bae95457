"""`ipyrepro check NOTEBOOK`: run a notebook several times in fresh kernels and compare outputs cell by cell.

The notebook-level twin of `%%repro`. By default each kernel runs as the
reproducible kernel would (PYTHONHASHSEED and CUBLAS_WORKSPACE_CONFIG set,
`%repro on --seed S` before the first cell), so the question answered is
"does this notebook reproduce under ipyrepro?"; `as_is` asks whether it
reproduces as written. Cells are sent with their ids, as JupyterLab sends
them, so `cell` re-seeding works. The notebook file is only ever read.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ..core.defaults import ChildSettings, resolve_settings
from . import statecheck
from .cascades import explain_errors, find_cascades
from .checkcauses import CheckCauses, find_causes
from .hiddenstate import find_hidden_state, out_of_order_text
from .jupytextfile import is_text_notebook, no_saved_outputs
from .kernelrun import CellTimeout, KernelDied, KernelError, KernelStartError
from .kernels import kernelspec_settings, notebook_kernel, plain_kernel_for
from .machines import MachinePlan
from .notebookfile import Cell, NotebookError, load_notebook
from .outputs import RAISES_TAG, Comparison, traceback_tail
from .progress import CheckProgress, as_progress
from .report import CheckReport, Run, _current
from .savedcauses import code_causes
from .savedmode import saved_mode
from .statecheck import compare_states
from .verdicts import compare, error_output


def check(
    path: str | Path,
    *,
    runs: int | None = None,
    seed: int | None = None,
    as_is: bool | None = None,
    kernel: str | None = None,
    timeout: float | None = 600,
    sanitize: Sequence[str] = (),
    rtol: float = 0.0,
    atol: float = 0.0,
    cublas: str = ":4096:8",
    reseed: str | None = None,
    startup_timeout: float = 60,
    kernel_spec_manager: Any = None,
    progress: CheckProgress | Callable[[str], None] | None = None,
    causes: bool = True,
    jobs: int | None = None,
    save: str | None = None,
    against: str | None = None,
    trace_ops: bool = False,
    portable: bool = False,
    stop_on_error: bool = False,
    against_saved: bool = False,
    state: bool = True,
    strict: bool = False,
) -> CheckReport:
    """Execute the notebook `runs` times, each in a fresh kernel, and compare every code cell's outputs.

    `jobs` kernels run at once (default: as many as runs, capped by the usable CPUs); the report
    does not depend on it. `seed` and `reseed` left out follow the rule of core/defaults.py: the
    kernelspec it runs (IPYREPRO_SEED / IPYREPRO_RESEED in its env, or what `ipyrepro kernel install`
    wrote), else 0 and `cell`, as the notebook's own `%repro on` would in that kernel.

    A cell that raises does not end its run: its error is compared like any other output, and
    every cell that ran in at least two runs is compared. `stop_on_error` ends a run at the first
    cell not tagged raises-exception that raises, and compares only the runs that reached the end.
    `against_saved` compares each run with the outputs saved in the notebook instead of with run 1
    (`runs` defaults to 2, or to 1 against the saved outputs), in the mode the notebook was saved in
    (savedmode.py) unless `as_is`, `seed` or `reseed` is given; it raises NotebookError before any kernel
    starts when nothing is saved. Differences from the saved outputs get a kind (savedenv.py); `strict`
    turns the environment patterns off and leaves out outputs saved without an execution count.

    When something differed (and `causes`), one more kernel names the causes (see checkcauses.py);
    a cell that raised for lack of a name that a later cell binds is named as hidden state.
    With `state` (the default) each kernel also digests its namespace after every cell, and the report
    names the first cell whose state differs (see statecheck.py); `state=False` is `--no-state`.
    `progress` hears of each run and cell (notebooks/progress.py); a plain function receives whole lines.
    """
    from ..core.validation import validate_cublas_value, validate_reseed_mode, validate_seed

    if runs is None:  # one run is enough against the saved outputs, as in nbval
        runs = 1 if against_saved else 2
    if isinstance(runs, bool) or not isinstance(runs, int) or runs < 1:
        raise ValueError(f"--runs must be an integer >= 1; got {runs!r}")
    if jobs is not None and (isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1):
        raise ValueError(f"--jobs must be an integer >= 1; got {jobs!r}")
    if timeout is not None and not timeout > 0:
        raise ValueError(f"--timeout must be a number of seconds > 0; got {timeout!r}")
    if seed is not None:
        validate_seed(seed)
    validate_cublas_value(cublas)
    if reseed is not None:
        validate_reseed_mode(reseed)
    comparison = Comparison.build(sanitize, rtol, atol)
    if against_saved and is_text_notebook(path):  # jupytext files hold code only
        raise NotebookError(no_saved_outputs(path))
    cells, metadata = load_notebook(path)
    if against_saved and not any(cell.saved_outputs for cell in cells):  # before any kernel starts
        raise NotebookError(
            f"{path}: nothing saved to compare: no code cell has saved outputs. Run the notebook and save it "
            "with its outputs, or check it run against run (without --against-saved)"
        )
    kernel_name = kernel or (metadata.get("kernelspec") or {}).get("name") or "python3"
    why = ""
    if against_saved and as_is is None and seed is None and reseed is None:  # as the author ran it
        saved = saved_mode(metadata, kernel_name, kernel_spec_manager)
        as_is, why = saved.as_is, saved.why
        seed, reseed = saved.settings.seed, saved.settings.reseed
    elif against_saved:  # an explicit choice wins
        why = "--as-is given" if as_is else "--seed given" if seed is not None else "--reseed given"
        why = "as_is=False given" if as_is is False and seed is None and reseed is None else why
    as_is = bool(as_is)
    options = {"seed": seed, "reseed": reseed, "as_is": as_is, "sanitize": list(sanitize)}
    plan = MachinePlan.build(save, against, trace_ops, portable, options, path)
    # An ipyrepro kernel's own environment would win over the check's (PYTHONHASHSEED): a plain kernel
    # of its Python runs instead, set up by the check (by default in the kernel's re-seed mode).
    plain = plain_kernel_for(kernel_name, kernel_spec_manager, as_is=as_is)
    report = CheckReport(str(path), kernel_name, "as written (--as-is)" if not why else "as written", [], cells)
    if not as_is:  # the kernel's settings unless given, as the notebook's own `%repro on` there
        given = ChildSettings(seed, reseed)
        settings = resolve_settings(given, None, lambda: kernelspec_settings(kernel_name, kernel_spec_manager))
        seed, reseed = report.seed, report.reseed = settings.seed, settings.reseed
        flags = "" if settings.deterministic == "error" else f", deterministic algorithms {settings.deterministic}"
        report.mode = f"under ipyrepro (seed {seed}, re-seed {reseed}{flags})"
    else:
        seed = 0 if seed is None else seed  # unused: --as-is sets nothing up
    if why:
        report.mode += f", as the notebook was saved: {why}" if "given" not in why else f" ({why})"
    if portable:
        report.mode += ", portable profile"
    if plan is not None:  # the fingerprint records the seed and mode the runs really used
        plan.options.update(seed=None if as_is else seed, reseed=None if as_is else reseed)
    report.against_saved, report.stop_on_error = against_saved, stop_on_error
    report.strict, report.rtol, report.atol, report.saved_mode = strict, comparison.rtol, comparison.atol, why
    tracker = as_progress(progress)
    say = tracker.note
    if plain is not None:
        kernel_name, kernel_spec_manager, report.kernel_note = plain.name, plain.manager, plain.note

    first_started = threading.Event()  # the other runs start once run 1's kernel has (or could not)
    cannot_start: list[bool] = []

    def kernel_started(fatal: bool) -> None:
        cannot_start.append(fatal)
        first_started.set()

    def one(number: int) -> Run | None:
        if number > 1:
            first_started.wait()
            if any(cannot_start):
                return None  # the kernel cannot start: this run is neither announced nor counted
        tracker.run_started(number, runs, kernel_name)
        started = time.monotonic()
        try:
            run = _run_once(
                number,
                Path(path),
                cells,
                kernel_name,
                as_is,
                seed,
                reseed,
                cublas,
                timeout,
                startup_timeout,
                kernel_spec_manager,
                tracker,
                plan,
                stop_on_error,
                comparison if state else None,
                kernel_started if number == 1 else None,
            )
            if number == 1:
                cannot_start.append(run.fatal)
        finally:  # the other runs wait for run 1's kernel: whatever happened to it, they wait no longer
            if number == 1:
                first_started.set()
        tracker.run_finished(number, len(run.outputs), len(cells), time.monotonic() - started, run.error)
        return run

    report.requested = runs
    report.runs = run_all(one, runs, default_jobs(runs) if jobs is None else jobs)
    compare(report, comparison)
    if state:
        report.state = compare_states(
            [(run.number, run.states) for run in report.runs], [cell.index for cell in cells], rtol, atol
        )
        report.state.errors = [f"run {run.number}: {run.state_error}" for run in report.runs if run.state_error]
    if plan is not None and plan.collects:  # after the state comparison: only names stable across runs are kept
        report.machines = plan.finish(report, comparison)
    link_errors(report)  # before the causes: what the environment explains needs none
    if causes and report.failing:
        report.causes = find_causes(
            report,
            comparison,
            kernel_name=kernel_name,
            path=Path(path),
            as_is=as_is,
            seed=seed,
            reseed=reseed,
            cublas=cublas,
            timeout=timeout,
            startup_timeout=startup_timeout,
            kernel_spec_manager=kernel_spec_manager,
            say=say,
            stop_on_error=stop_on_error,
            progress=tracker,
        )
    if report.against_saved and report.failing and causes:  # what the code says, beside what the tracer saw
        report.causes = report.causes or CheckCauses()
        for index, found in code_causes(report).items():
            report.causes.by_cell.setdefault(index, []).extend(found)
    add_hidden_state(report)
    return report


def raised_errors(report: CheckReport) -> dict[int, dict[str, Any]]:
    """Each cell's error output, from the first run where it raised."""
    errors: dict[int, dict[str, Any]] = {}
    for run in report.runs:
        for index, outputs in run.outputs.items():
            error = error_output(outputs)
            if error is not None:
                errors.setdefault(index, error)
    return errors


def link_errors(report: CheckReport) -> None:
    """NameErrors for a name an earlier failed cell was to bind follow from that cell (cascades.py); against the
    saved outputs, errors a package missing here explains are the environment's."""
    report.cascades = find_cascades(report.cells, raised_errors(report))
    explain_errors(report)


def add_hidden_state(report: CheckReport) -> None:
    """Name the cells that raised for lack of a name a later cell binds, and the out-of-order saved counts;
    each finding is also a `hidden-state` cause of its cell (not for errors that follow from an earlier one)."""
    following = {cascade.cell.index for cascade in report.cascades}
    findings = find_hidden_state(report.cells, raised_errors(report))
    report.hidden_state = [finding for finding in findings if finding.cell.index not in following]
    report.out_of_order = out_of_order_text(report.cells)
    if report.hidden_state and report.causes is None:
        report.causes = CheckCauses()  # no diagnostic run: only hidden state
    for finding in report.hidden_state:
        report.causes.by_cell.setdefault(finding.cell.index, []).append(finding.to_cause())  # type: ignore[union-attr]


def default_jobs(runs: int) -> int:
    """As many kernels at once as runs, capped by the CPUs this process may use."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(runs, cpus))


def run_all(one: Callable[[int], Run | None], runs: int, jobs: int) -> list[Run]:
    """Runs 1..runs, `jobs` at a time (threads: each waits on its own kernel). As sequential runs
    would, the list stops at the first run whose kernel could not start (`one` returns None for a run it
    did not start because of that)."""
    if jobs <= 1 or runs <= 1:
        done: list[Run] = []
        for number in range(1, runs + 1):
            run = one(number)
            if run is None:
                break
            done.append(run)
            if run.fatal:
                break
        return done
    with ThreadPoolExecutor(max_workers=min(jobs, runs), thread_name_prefix="ipyrepro-check") as pool:
        results = list(pool.map(one, range(1, runs + 1)))
    for index, run in enumerate(results):
        if run is None or run.fatal:
            return [run for run in results[: index + 1] if run is not None]
    return results


def _run_once(
    number: int,
    path: Path,
    cells: list[Cell],
    kernel_name: str,
    as_is: bool,
    seed: int,
    reseed: str | None,
    cublas: str,
    timeout: float | None,
    startup_timeout: float,
    kernel_spec_manager: Any,
    progress: CheckProgress,
    plan: MachinePlan | None = None,
    stop_on_error: bool = False,
    digests: Comparison | None = None,
    on_start: Callable[[bool], None] | None = None,
) -> Run:
    """One run in a fresh kernel; with `digests` (the check's comparison: its tolerance and sanitizers) the
    kernel's state is digested after each cell, invisibly to the notebook (statecheck.py)."""
    run = Run(number)
    try:
        with notebook_kernel(
            kernel_name,
            path,
            as_is=as_is,
            seed=seed,
            reseed=reseed,
            cublas=cublas,
            startup_timeout=startup_timeout,
            kernel_spec_manager=kernel_spec_manager,
            env=plan.kernel_env() if plan is not None else None,
        ) as (runner, setup_error):
            if on_start is not None:
                on_start(False)
            setup = plan.setup_code(number) if plan is not None and setup_error is None else None
            if setup is not None:
                done = runner.execute(setup, silent=True, store_history=False, timeout=startup_timeout)
                if done.status != "ok":
                    setup_error = done.error_text or done.status
            if setup_error is not None:
                run.stop_kind = "setup"
                run.error = (
                    f"`%repro on` failed in kernel {kernel_name!r} ({setup_error}); "
                    "is ipyrepro installed in that kernel's Python? Or pass --as-is"
                )
                return run
            if digests is not None:
                digests = _start_digests(run, runner, digests, timeout)
            previous = None
            for position, cell in enumerate(cells, 1):
                progress.cell_started(number, position, len(cells), cell)
                started = time.monotonic()
                if not cell.source.strip():
                    run.outputs[cell.index] = []
                    if previous is not None:
                        run.states[cell.index] = previous
                    progress.cell_finished(number, position, len(cells), cell, 0.0)
                    continue
                execution = runner.execute(cell.source, cell.cell_id, timeout=timeout)
                run.outputs[cell.index] = execution.outputs
                progress.cell_finished(number, position, len(cells), cell, time.monotonic() - started)
                if digests is not None:
                    state = statecheck.record_or_error(runner, cell.source)
                    if isinstance(state, str):  # recorded; digests stay on for the next cell
                        run.note_state_error(f"after {cell.where()}: {state}")
                    else:
                        previous = run.states[cell.index] = state
                if execution.status != "ok" and RAISES_TAG not in cell.tags and not stop_on_error:
                    run.raised[cell.index] = execution.error  # compared like any output; the run goes on
                elif execution.status != "ok" and RAISES_TAG not in cell.tags:
                    run.error_cell, run.stop_kind = cell.index, "cell-raised"
                    reason = execution.error_text or f"execution {execution.status}"
                    frames = traceback_tail(execution.error)
                    run.error = (
                        f"{cell.label()} raised {reason}; this run stopped there "
                        f"(tag the cell {RAISES_TAG!r} if the error is expected)\n{cell.head()}"
                        + (f"\n    Traceback (last frames):\n{frames}" if frames else "")
                    )
                    return run
            if plan is not None:
                run.collected = plan.collect(runner, number, startup_timeout)
    except KernelStartError as error:
        run.error, run.fatal, run.stop_kind = f"the kernel could not start: {error}", True, "kernel-start"
    except CellTimeout as error:
        run.error_cell, run.stop_kind = _pending(run, cells), "timeout"
        run.error = f"{_current(run, cells)}: {error}; the kernel was shut down (raise --timeout if it needs longer)"
    except KernelDied as error:
        run.error_cell, run.stop_kind = _pending(run, cells), "kernel-died"
        run.error = f"{_current(run, cells)}: {error}"
    except KernelError as error:
        run.error, run.stop_kind = str(error), "kernel"
    return run


def _start_digests(run: Run, runner: Any, comparison: Comparison, timeout: float | None) -> Comparison | None:
    """Tell the kernel how to digest (tolerance data or not, the sanitizers); None when it cannot."""
    try:
        statecheck.configure(
            runner, bool(comparison.rtol or comparison.atol), comparison.sanitizers, statecheck.DIGEST_TIMEOUT
        )
    except statecheck.StateUnavailable as error:
        run.state_error = f"the kernel cannot digest its state: {error}"
        return None
    return comparison


def _pending(run: Run, cells: list[Cell]) -> int | None:
    return next((cell.index for cell in cells if cell.index not in run.outputs), None)
