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
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from .checkcauses import find_causes
from .kernelrun import CellTimeout, KernelDied, KernelError, KernelStartError
from .kernels import notebook_kernel, plain_kernel_for
from .notebookfile import Cell, load_notebook
from .outputs import RAISES_TAG, Comparison
from .progress import CheckProgress, as_progress
from .report import CheckReport, Run, _compare, _current, traceback_tail


def check(
    path: str | Path,
    *,
    runs: int = 2,
    seed: int = 0,
    as_is: bool = False,
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
) -> CheckReport:
    """Execute the notebook `runs` times, each in a fresh kernel, and compare every code cell's outputs.

    `jobs` kernels run at once (default: as many as runs, capped by the usable CPUs); the report
    does not depend on it. `reseed=None` keeps the re-seed mode of a reproducible kernel
    (`ipyrepro kernel install --reseed ...`), else `cell`, as `%repro on` does.

    When something differed (and `causes`), one more kernel names the causes (see checkcauses.py).
    `progress` hears of each run and cell (notebooks/progress.py); a plain function receives whole lines.
    """
    from ..core.validation import validate_cublas_value, validate_reseed_mode, validate_seed

    if isinstance(runs, bool) or not isinstance(runs, int) or runs < 1:
        raise ValueError(f"--runs must be an integer >= 1; got {runs!r}")
    if jobs is not None and (isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1):
        raise ValueError(f"--jobs must be an integer >= 1; got {jobs!r}")
    if timeout is not None and not timeout > 0:
        raise ValueError(f"--timeout must be a number of seconds > 0; got {timeout!r}")
    seed = validate_seed(seed)
    validate_cublas_value(cublas)
    if reseed is not None:
        validate_reseed_mode(reseed)
    comparison = Comparison.build(sanitize, rtol, atol)
    cells, metadata = load_notebook(path)
    kernel_name = kernel or (metadata.get("kernelspec") or {}).get("name") or "python3"
    # An ipyrepro kernel's own environment would win over the check's (PYTHONHASHSEED): a plain kernel
    # of its Python runs instead, set up by the check (by default in the kernel's re-seed mode).
    plain = plain_kernel_for(kernel_name, kernel_spec_manager, as_is=as_is)
    if plain is not None and not as_is and reseed is None:
        reseed = plain.reseed
    reseeding = "" if reseed is None else f", re-seed {reseed}"
    mode = "as written (--as-is)" if as_is else f"under ipyrepro (seed {seed}{reseeding})"
    report = CheckReport(str(path), kernel_name, mode, [], cells)
    tracker = as_progress(progress)
    say = tracker.note
    if plain is not None:
        kernel_name, kernel_spec_manager, report.kernel_note = plain.name, plain.manager, plain.note

    def one(number: int) -> Run:
        tracker.run_started(number, runs, kernel_name)
        started = time.monotonic()
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
        )
        tracker.run_finished(number, len(run.outputs), len(cells), time.monotonic() - started, run.error)
        return run

    report.runs = run_all(one, runs, default_jobs(runs) if jobs is None else jobs)
    _compare(report, comparison)
    if causes and report.differences and not report.errors:
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
        )
    return report


def default_jobs(runs: int) -> int:
    """As many kernels at once as runs, capped by the CPUs this process may use."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(runs, cpus))


def run_all(one: Callable[[int], Run], runs: int, jobs: int) -> list[Run]:
    """Runs 1..runs, `jobs` at a time (threads: each waits on its own kernel). As sequential runs
    would, the list stops at the first run whose kernel could not start."""
    if jobs <= 1 or runs <= 1:
        done: list[Run] = []
        for number in range(1, runs + 1):
            done.append(one(number))
            if done[-1].fatal:
                break
        return done
    with ThreadPoolExecutor(max_workers=min(jobs, runs), thread_name_prefix="ipyrepro-check") as pool:
        results = list(pool.map(one, range(1, runs + 1)))
    for index, run in enumerate(results):
        if run.fatal:
            return results[: index + 1]
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
) -> Run:
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
        ) as (runner, setup_error):
            if setup_error is not None:
                run.error = (
                    f"`%repro on` failed in kernel {kernel_name!r} ({setup_error}); "
                    "is ipyrepro installed in that kernel's Python? Or pass --as-is"
                )
                return run
            for position, cell in enumerate(cells, 1):
                progress.cell_started(number, position, len(cells), cell)
                started = time.monotonic()
                if not cell.source.strip():
                    run.outputs[cell.index] = []
                    progress.cell_finished(number, position, len(cells), cell, 0.0)
                    continue
                execution = runner.execute(cell.source, cell.cell_id, timeout=timeout)
                run.outputs[cell.index] = execution.outputs
                progress.cell_finished(number, position, len(cells), cell, time.monotonic() - started)
                if execution.status != "ok" and RAISES_TAG not in cell.tags:
                    run.error_cell = cell.index
                    reason = execution.error_text or f"execution {execution.status}"
                    frames = traceback_tail(execution.error)
                    run.error = (
                        f"{cell.label()} raised {reason}; this run stopped there "
                        f"(tag the cell {RAISES_TAG!r} if the error is expected)\n{cell.head()}"
                        + (f"\n    Traceback (last frames):\n{frames}" if frames else "")
                    )
                    return run
    except KernelStartError as error:
        run.error, run.fatal = f"the kernel could not start: {error}", True
    except CellTimeout as error:
        run.error_cell = _pending(run, cells)
        run.error = f"{_current(run, cells)}: {error}; the kernel was shut down (raise --timeout if it needs longer)"
    except KernelDied as error:
        run.error_cell = _pending(run, cells)
        run.error = f"{_current(run, cells)}: {error}"
    except KernelError as error:
        run.error = str(error)
    return run


def _pending(run: Run, cells: list[Cell]) -> int | None:
    return next((cell.index for cell in cells if cell.index not in run.outputs), None)
