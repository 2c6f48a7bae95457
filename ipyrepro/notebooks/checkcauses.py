"""The causes behind `ipyrepro check`'s differences: one more kernel, run only when something differed.

That kernel runs the whole notebook again (later cells need what earlier ones
made). Before each cell that differed it sends, with the same cell id, a helper
that re-seeds as the hook seeds the cell itself (in `source` mode the hook seeded
the helper's own code), reruns the cell once under the tracer of `causes/tracer.py` and
restores the namespace and RNG states; then
it runs the cell itself. The kernel also gets another PYTHONHASHSEED than the
checked runs: when those shared a fixed one, a cell that matched in every
checked run but whose output changes in this kernel depends on string hash
order, proved by changing nothing else. Its line is then found from the cell's
code and the values its namespace holds.

With state digests (statecheck.py) tracing starts at the first divergent cell, not
at the first differing output: every cell that began or changed a divergent
variable is traced too, and each cause gets its cell and the divergent variables
its line reaches.

With `--as-is` the kernel first arms `globalrng.GLOBAL_RNGS`, so the tracer can
name draws from Python's, NumPy's and torch's global RNGs that nothing in the
notebook seeded (they start from an OS seed in every process).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..causes.shell import KERNEL_MARKER
from ..comparison.findings import Cause, ranked
from .kernelrun import KernelError
from .progress import CheckProgress, SaidProgress
from .savedcauses import feeding_cells, map_locations

SEED_LIMIT = 2**32


@dataclass
class CheckCauses:
    """What the diagnostic kernel found: causes per cell index, the cells proved to depend on hash order,
    and how the run went ("done", or why it stopped)."""

    by_cell: dict[int, list[Cause]] = field(default_factory=dict)
    hash_order_cells: list[int] = field(default_factory=list)
    hash_seeds: tuple[str, str] | None = None  # (checked runs, diagnostic kernel) when the proof was possible
    status: str = ""
    ranked: list[Cause] = field(default_factory=list)  # of the first divergence: each once, strongest first
    later: list[Cause] = field(default_factory=list)  # of the cells traced after it, in notebook order, each once


def other_hash_seed(seed: str) -> str:
    return str((int(seed) + 1) % SEED_LIMIT)


def find_causes(
    report: Any,
    comparison: Any,
    *,
    say: Callable[[str], None],
    progress: CheckProgress | None = None,
    **kernel: Any,
) -> CheckCauses:
    """Run the diagnostic kernel (the one the checked runs used) for `report`, which differed.

    `kernel`: `_diagnose`'s keyword arguments. `progress` shows the run as a line of its own (without it,
    `say` hears what it does)."""
    shown = progress if progress is not None else SaidProgress(say)
    found = CheckCauses()
    started = time.monotonic()
    try:
        return _diagnose(found, report, comparison, shown, **kernel)
    finally:
        shown.causes_finished(time.monotonic() - started, found.status or "stopped")


def _diagnose(
    found: CheckCauses,
    report: Any,
    comparison: Any,
    shown: CheckProgress,
    *,
    kernel_name: str,
    path: Path,
    as_is: bool,
    seed: int,
    reseed: str | None,
    cublas: str,
    timeout: float | None,
    startup_timeout: float,
    kernel_spec_manager: Any,
    stop_on_error: bool = False,
) -> CheckCauses:
    """Fill `found`: trace the cells that differed (or led there) in one more kernel.

    As the checked runs did, it goes on after a cell raises, unless `stop_on_error`."""
    from .kernels import notebook_kernel
    from .outputs import IGNORE_TAGS, RAISES_TAG, output_items

    first = next((run for run in report.runs if run.outputs), None)
    differing = {difference.cell.index for difference in getattr(report, "failing", report.differences)}
    state = getattr(report, "state", None)
    if state is not None and state.compared:
        traced = set(state.trace_cells(differing))
    elif getattr(report, "against_saved", False):  # no digests to compare: the cells whose names they read
        traced = differing | feeding_cells(report.cells, differing)
    else:
        traced = differing
    checked_seed = str(seed) if not as_is else os.environ.get("PYTHONHASHSEED")
    fixed = checked_seed is not None and checked_seed != "random"
    env = {}
    if fixed:
        found.hash_seeds = (checked_seed, other_hash_seed(checked_seed))  # type: ignore[arg-type]
        env["PYTHONHASHSEED"] = found.hash_seeds[1]
    code = [cell for cell in report.cells if cell.source.strip()]
    shown.causes_started(len(traced))
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
            env=env,
        ) as (runner, setup_error):
            if setup_error is not None:
                found.status = f"skipped: `%repro on` failed in the kernel ({setup_error})"
                return found
            if as_is:  # the notebook as written: watch whether it seeds the global RNGs it draws from
                _causes(runner.execute(ARM_GLOBAL_RNGS, None, timeout=timeout, store_history=False))
            for position, cell in enumerate(code, 1):
                shown.causes_cell(position, len(code), cell, cell.index in traced)
                if cell.index in traced:
                    helper = _helper("trace", cell.source, hash_order=not fixed)
                    causes = _causes(runner.execute(helper, cell.cell_id, timeout=timeout, store_history=False))
                    map_locations(causes, report.cells, cell.index)
                    for cause in causes:
                        reachable = state.variables_at(cell.index) if state is not None else ()
                        cause.cell, cause.cells = cell.position, cell.cell_count
                        cause.variables = reached(cell.source, cause.line, reachable)
                    if causes or cell.index in differing:
                        found.by_cell[cell.index] = causes
                execution = runner.execute(cell.source, cell.cell_id, timeout=timeout)
                if execution.status != "ok" and RAISES_TAG not in cell.tags and stop_on_error:
                    found.status = f"stopped: {cell.label()} raised {execution.error_text or execution.status}"
                    return found
                skip = not fixed or cell.index in differing or any(tag in cell.tags for tag in IGNORE_TAGS)
                if skip or first is None or cell.index not in first.outputs:
                    continue
                before = output_items(first.outputs[cell.index], comparison)
                now = output_items(execution.outputs, comparison)
                if [item.label for item in before] == [item.label for item in now] and all(
                    comparison.same_text(a.value, b.value) if not a.image else a.value == b.value
                    for a, b in zip(before, now)
                ):
                    continue
                found.hash_order_cells.append(cell.index)
                helper = _helper("hash-order", cell.source)
                causes = _causes(runner.execute(helper, cell.cell_id, timeout=timeout, store_history=False))
                map_locations(causes, report.cells, cell.index)
                found.by_cell[cell.index] = _proved(causes, found.hash_seeds)  # type: ignore[arg-type]
                for cause in found.by_cell[cell.index]:
                    cause.cell, cause.cells = cell.position, cell.cell_count
    except KernelError as error:
        found.status = f"failed: {error}".split("\n")[0]
        return found
    except HelperFailed as error:
        found.status = f"failed: the tracing helper did not run ({error})"
        return found
    found.status = "done"
    first_divergent = state.first if state is not None and state.compared else None
    until = first_divergent.index if first_divergent else min(differing, default=0)
    found.ranked = ranked(_once(found, [index for index in sorted(traced) if index <= until]))
    found.later = _once(found, [index for index in sorted(traced) if index > until], found.ranked)
    return found


def _once(found: CheckCauses, cells: list[int], shown: Sequence[Cause] = ()) -> list[Cause]:
    """The causes of `cells`, in notebook order, each (kind, cell, line, call) once. The first divergence gets
    only those of its own cell and the cells before it: a later cell's draw never explains it."""
    seen = {(c.kind, c.cell, c.line, c.location, c.code) for c in shown}
    listed = []
    for index in cells:
        if index in found.hash_order_cells:
            continue
        for cause in found.by_cell.get(index, []):
            key = (cause.kind, cause.cell, cause.line, cause.location, cause.code)
            if key not in seen:
                seen.add(key)
                listed.append(cause)
    return listed


def reached(source: str, line: int | None, divergent: tuple[str, ...]) -> list[str]:
    """The divergent names the statement at `line` assigns (the innermost statement there), else all the divergent
    names the cell began or changed: what the draw on that line can reach."""
    import ast

    if line is None:
        return list(divergent)
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):  # IPython syntax (magics): the cell's names
        return list(divergent)
    around = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.stmt) and node.lineno <= line <= (node.end_lineno or node.lineno)
    ]
    if not around:
        return list(divergent)
    innermost = min(around, key=lambda node: (node.end_lineno or node.lineno) - node.lineno)
    targets = []
    for node in ast.walk(innermost):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            targets.append(node.id)
    assigned = [name for name in dict.fromkeys(targets) if name in divergent]
    return assigned or list(divergent)


ARM_GLOBAL_RNGS = (
    "__import__('ipyrepro.causes.globalrng').causes.globalrng.arm_for_kernel(); "
    f"print({KERNEL_MARKER!r} + '[]')"
)  # sent before the first cell: from here on the kernel knows which global RNGs the notebook seeds


def _helper(kind: str, source: str, *, hash_order: bool = False) -> str:
    """The code the diagnostic kernel runs for one cell; it binds no names in the user's namespace."""
    return f"__import__('ipyrepro.causes.shell').causes.shell.print_for_kernel({kind!r}, {source!r}, {hash_order!r})"


class HelperFailed(Exception):
    """The helper could not run in the kernel (ipyrepro missing there, or it failed); the message says why."""


def _causes(execution: Any) -> list[Cause]:
    for line in execution.stdout.splitlines():
        if line.startswith(KERNEL_MARKER):
            payload = json.loads(line[len(KERNEL_MARKER) :])
            if isinstance(payload, list):
                return [Cause.from_dict(item) for item in payload]
            raise HelperFailed(str(payload.get("error")))
    raise HelperFailed(
        (execution.error_text or f"no answer ({execution.status})") + "; is ipyrepro installed in that kernel's Python?"
    )


def _proved(causes: list[Cause], seeds: tuple[str, str]) -> list[Cause]:
    proof = (
        f"Proved: its output changed when only PYTHONHASHSEED changed ({seeds[0]} in the checked runs, "
        f"{seeds[1]} in one more kernel)."
    )
    if not causes:
        return [
            Cause(
                "hash-order",
                None,
                None,
                "",
                "the cell's output depends on PYTHONHASHSEED: string hash order (perhaps of a set of strings made "
                "in an earlier cell), or the cell reads the variable itself. " + proof,
                "iterate sets of strings in a fixed order, `sorted(...)`; or keep PYTHONHASHSEED fixed "
                "(`ipyrepro kernel install`, which `ipyrepro check` does by default).",
            )
        ]
    for cause in causes:
        cause.detail += " " + proof
    return causes
