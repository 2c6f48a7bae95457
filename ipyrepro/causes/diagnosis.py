"""Why two runs differed: the settings that were not deterministic, and the ops torch says have no
deterministic implementation (found by one rerun under `use_deterministic_algorithms(True, warn_only=True)`)."""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field

from ..comparison.findings import Diagnosis
from ..core.flags import CUBLAS_VAR, inductor_checkpoint, restore_inductor, set_deterministic_algorithms
from ..core.status import Status
from ..core.torchinfo import DETERMINISTIC_CUBLAS_VALUES, cublas_facts, deterministic_algorithms_mode
from .tracer import Tracer, result, trace

_NO_DETERMINISTIC = re.compile(r"^(.+?) does not have a deterministic implementation")
_CUBLAS = re.compile(r"^(.+?) is not deterministic because it uses CuBLAS|CUBLAS_WORKSPACE_CONFIG")

UNSEEDED_HINT = (
    "Every run started from the same seed, so what still differs comes from randomness the seeding does not "
    "reach (the clock, os.urandom, np.random.default_rng() or random.Random() without a seed, string hash "
    "order, threads, DataLoader workers) or from operations that are nondeterministic."
)


def nondeterministic_settings(status: Status) -> list[str]:
    """What in `status` lets results differ between runs, each with its fix."""
    found: list[str] = []
    mode = status.deterministic_algorithms
    if mode == "off":
        found.append(
            "deterministic algorithms were off (torch.use_deterministic_algorithms(False)): torch may pick "
            "nondeterministic kernels. Fix: `%repro on`."
        )
    elif mode == "warn":
        found.append(
            "deterministic algorithms were in warn-only mode: ops without a deterministic implementation still ran "
            "nondeterministically. Fix: `%repro on` without --warn-only, or avoid those ops."
        )
    if status.cuda_available:
        if status.cudnn_benchmark:
            found.append("cudnn.benchmark was on: cuDNN may choose different algorithms run to run. Fix: `%repro on`.")
        if not status.cudnn_deterministic:
            found.append("cudnn.deterministic was off: cuDNN may use nondeterministic algorithms. Fix: `%repro on`.")
        facts = cublas_facts()
        if facts.needs_variable and status.cublas_workspace_config not in DETERMINISTIC_CUBLAS_VALUES:
            found.append(
                f"{CUBLAS_VAR} was {status.cublas_workspace_config or 'unset'}: this torch needs :4096:8 or :16:8 "
                "set before the first cuBLAS use for deterministic cuBLAS. Fix: restart and run `%repro on` first."
            )
    for text in status.warnings:  # drift, a cuBLAS variable set too late, failed hooks
        if text not in found:
            found.append(text)
    if status.reseed == "off":
        found.append(
            "re-seeding before each cell was off. %%repro seeded every run itself, so that is not why these runs "
            "differed, but other cells start from whatever RNG state the previous cell left. Fix: `%repro on`."
        )
    return found


@dataclass
class _Collected:
    ops: dict[str, int] = field(default_factory=dict)
    other: list[str] = field(default_factory=list)


@contextmanager
def deterministic_warn_only() -> Iterator[_Collected]:
    """Turn on deterministic algorithms with warn_only, collect what warns, then restore the user's setting
    (inductor's too: no import hook stays behind to change it later)."""
    previous = deterministic_algorithms_mode()
    inductor = inductor_checkpoint()
    collected = _Collected()
    try:
        set_deterministic_algorithms("warn")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield collected
    finally:
        set_deterministic_algorithms(previous)
        restore_inductor(inductor)
    for item in caught:
        message = str(item.message)
        match = _NO_DETERMINISTIC.match(message)
        if match:
            op = match.group(1).strip()
            collected.ops[op] = collected.ops.get(op, 0) + 1
        elif _CUBLAS.search(message) or "deterministic" in message.lower():
            line = message.split("\n")[0]
            if line not in collected.other:
                collected.other.append(line)


def diagnose(
    status: Status,
    rerun: Callable[[Callable[[], AbstractContextManager[None]]], None] | None,
    skip_reason: str = "",
    *,
    cell_code: str | None = None,
    cell_source: str | None = None,
) -> Diagnosis:
    """The settings from `status` (read before the runs), plus one rerun under deterministic warn-only mode,
    traced to name the causes at their lines (`cell_code`: the code the rerun executes as a cell;
    `cell_source`: the cell as written, whose lines the causes show).

    `rerun(traced)` does the whole run (restore, seed, execute) and raises on failure; it wraps only the
    part that runs the user's code in `with traced():`, so restoring and seeding are not traced.
    """
    diagnosis = Diagnosis(settings=nondeterministic_settings(status))
    if rerun is None:
        diagnosis.rerun = f"skipped: {skip_reason}"
    else:
        tracers: list[Tracer] = []

        @contextmanager
        def traced() -> Iterator[None]:
            with trace(cell_code, cell_source=cell_source) as tracer:
                tracers.append(tracer)
                yield

        with deterministic_warn_only() as collected:
            try:
                rerun(traced)
                diagnosis.rerun = "done"
            except Exception as error:
                diagnosis.rerun = f"failed: {type(error).__name__}: {error}".split("\n")[0]
        diagnosis.causes = [cause for tracer in tracers for cause in result(tracer)]
        diagnosis.op_counts = collected.ops
        diagnosis.ops = list(collected.ops)
        diagnosis.other_warnings = collected.other
    if not diagnosis.ops and not diagnosis.causes:
        diagnosis.hints.append(UNSEEDED_HINT)
    return diagnosis
