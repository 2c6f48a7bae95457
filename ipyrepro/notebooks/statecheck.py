"""`ipyrepro check`'s state digests, check side: ask the kernel after each cell, compare runs, find where they part.

The kernel answers with digests only (comparison/statedigest.py). Run 1 is the
reference; a name diverges after a cell when its digest differs in another run
(beyond `--rtol/--atol` for floating-point data). The first divergent cell is
the first whose state differs, even when it printed nothing; a later differing
cell *inherits* the divergent names it reads from the cells where they began
to differ. Global RNG states are compared too, but a notebook run as written
has an OS-seeded generator from the first import on, so they name the first
divergence only when no variable ever differs.
"""

from __future__ import annotations

import ast
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

STATE_KEY = "ipyrepro_state"  # the user_expressions key the digests come back under
_MODULE = "__import__('ipyrepro.comparison.statedigest', fromlist=['_']).{call}"
NAMES_SHOWN = 5
DIGEST_TIMEOUT = 600.0  # seconds for one digest request: its own limit, never taken from the cell's --timeout


class StateUnavailable(Exception):
    """The kernel could not digest its state (ipyrepro missing there, or the digest failed); the message says why."""


@dataclass(frozen=True)
class CellState:
    """What the kernel held after one cell, as digests: per name, per global RNG, and what it skipped."""

    names: dict[str, dict[str, Any]]
    rngs: dict[str, dict[str, Any]]
    skipped: dict[str, str]
    reads: tuple[str, ...] | None  # the names the cell reads (with notebook functions' globals); None: unknown
    seconds: float = 0.0
    summarised: dict[str, str] = field(default_factory=dict)  # path -> why: over budget, or unreadable

    @classmethod
    def from_answer(cls, answer: dict[str, Any]) -> CellState:
        reads = answer.get("reads")
        return cls(
            dict(answer.get("names", {})),
            dict(answer.get("rngs", {})),
            dict(answer.get("skipped", {})),
            tuple(reads) if isinstance(reads, list) else None,
            float(answer.get("seconds", 0.0)),
            dict(answer.get("summarised", {})),
        )


def configure_expression(
    tolerance: bool, sanitizers: Sequence[tuple[Any, str]], budget: dict[str, Any] | None = None
) -> str:
    """The expression each kernel evaluates once: carry tolerance data or not, how strings are cleaned, and the
    per-cell budget of the walk (`comparison.walk.Budget`'s fields; None: its defaults)."""
    patterns = [[getattr(pattern, "pattern", pattern), text] for pattern, text in sanitizers]
    return _MODULE.format(call=f"configure_kernel({bool(tolerance)!r}, {patterns!r}, {budget!r})")


def digest_expression(source: str) -> str:
    return _MODULE.format(call=f"kernel_digest({source!r})")


def evaluate(runner: Any, expression: str, timeout: float | None) -> dict[str, Any]:
    """Evaluate `expression` in the kernel invisibly: an empty silent cell (no count, no history, no output, no
    cell event) whose user_expressions carry it; its JSON text answer, decoded."""
    execution = runner.execute(
        "", None, timeout=timeout, silent=True, store_history=False, user_expressions={STATE_KEY: expression}
    )
    result = (execution.user_expressions or {}).get(STATE_KEY)
    if not isinstance(result, dict) or result.get("status") != "ok":
        why = f"{result.get('ename')}: {result.get('evalue')}" if isinstance(result, dict) else "no answer"
        raise StateUnavailable(f"{why}; is ipyrepro installed in that kernel's Python?")
    try:
        answer = json.loads(ast.literal_eval(result["data"]["text/plain"]))
    except (KeyError, ValueError, SyntaxError, TypeError) as error:
        raise StateUnavailable(f"the kernel's answer could not be read ({error})") from None
    if not isinstance(answer, dict) or "error" in answer:
        raise StateUnavailable(str(answer.get("error") if isinstance(answer, dict) else answer))
    return answer


def configure(
    runner: Any,
    tolerance: bool,
    sanitizers: Sequence[tuple[Any, str]],
    timeout: float | None = DIGEST_TIMEOUT,
    budget: dict[str, Any] | None = None,
) -> None:
    evaluate(runner, configure_expression(tolerance, sanitizers, budget), timeout)


def record(runner: Any, source: str, timeout: float | None = DIGEST_TIMEOUT) -> CellState:
    """The kernel's state after the cell it just ran (`source`: that cell, to find the names it reads)."""
    return CellState.from_answer(evaluate(runner, digest_expression(source), timeout))


def record_or_error(runner: Any, source: str, timeout: float = DIGEST_TIMEOUT) -> CellState | str:
    """`record`, or why it failed: the digest has its own time limit, and when it runs past it the kernel is
    interrupted (the digest, not the notebook) so that the next cell runs and is digested in its turn."""
    from .kernelrun import CellTimeout

    try:
        return record(runner, source, timeout)
    except StateUnavailable as error:
        return str(error)
    except CellTimeout:
        interrupt = getattr(getattr(runner, "manager", None), "interrupt_kernel", None)
        if interrupt is not None:
            interrupt()
        return f"the state digest ran longer than {timeout:g} s and was interrupted"


# -- comparing runs ------------------------------------------------------------------------


def same_record(a: dict[str, Any], b: dict[str, Any], rtol: float, atol: float) -> bool:
    """Whether two digests of one name agree: bit for bit, or (with a tolerance) everything but floating-point
    data bit for bit and every float statistic or value within rtol/atol, as `%%repro --check` judges."""
    if a.get("digest") == b.get("digest"):
        return True
    if not (rtol or atol) or "exact" not in a or "exact" not in b:
        return False
    if a["exact"] != b["exact"] or len(a["floats"]) != len(b["floats"]):
        return False
    from ipyrepro.comparison.fingerprint import check_stats
    from ipyrepro.comparison.values import Tolerance

    tolerance = Tolerance(rtol, atol)
    for x, y in zip(a["floats"], b["floats"]):
        if x["path"] != y["path"] or x["kind"] != y["kind"]:
            return False
        if "stats" in x:
            if check_stats(x["path"], x["stats"], y.get("stats"), tolerance).failed:
                return False
        elif not all(_close(p, q, rtol, atol) for p, q in zip(x["value"].split(","), y["value"].split(","))):
            return False
    return True


def _close(a: str, b: str, rtol: float, atol: float) -> bool:
    x, y = float.fromhex(a), float.fromhex(b)
    if math.isnan(x) or math.isnan(y):
        return math.isnan(x) and math.isnan(y)
    if math.isinf(x) or math.isinf(y):
        return x == y
    return abs(x - y) <= atol + rtol * abs(y)


@dataclass(frozen=True)
class CellDivergence:
    """How the state after one cell differs between runs.

    `divergent`: the names that differ after it; `new`: those that first differ here; `written`: divergent
    names this cell changed; `rngs`: global RNG states that differ; `inherited`: origin cell index -> the
    divergent names this cell reads that differed before it ran.
    """

    index: int
    runs: tuple[int, int]
    divergent: tuple[str, ...]
    new: tuple[str, ...]
    written: tuple[str, ...]
    rngs: tuple[str, ...]
    inherited: dict[int, tuple[str, ...]]

    @property
    def root(self) -> bool:
        """New divergence that reads none that came before: it began here."""
        return bool(self.new) and not self.inherited


@dataclass
class StateReport:
    """The state comparison of a check: per cell, where each divergence began, and what was left out."""

    enabled: bool = True
    compared: bool = False
    cells: dict[int, CellDivergence] = field(default_factory=dict)  # cell index -> divergence (divergent cells)
    inherited_by: dict[int, dict[int, tuple[str, ...]]] = field(default_factory=dict)  # for cells that match
    skipped: dict[str, str] = field(default_factory=dict)
    summarised: dict[str, str] = field(default_factory=dict)  # path -> why: over a budget, or unreadable
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0  # digest time in the kernels, all runs together
    cell_seconds: dict[int, list[float]] = field(default_factory=dict)  # cell index -> digest seconds per run

    @property
    def first(self) -> CellDivergence | None:
        """The first cell whose variables differ; where a global RNG state began to differ only when no variable
        ever differs."""
        for divergence in self.cells.values():
            if divergence.new:
                return divergence
        return next((d for d in self.cells.values() if d.rngs), None)

    def roots(self) -> list[CellDivergence]:
        """The cells where a divergence began without reading an earlier one, in notebook order."""
        return [d for d in self.cells.values() if d.root]

    def inherits(self, index: int) -> dict[int, tuple[str, ...]]:
        """Origin cell index -> the divergent names the cell at `index` reads that differed before it ran."""
        divergence = self.cells.get(index)
        if divergence is not None:
            return divergence.inherited
        return self.inherited_by.get(index, {})

    def trace_cells(self, differing: set[int]) -> list[int]:
        """The cells the diagnostic run traces: from the first divergence on, each that began or changed a
        divergent name, and each whose output differed."""
        first = self.first
        start = first.index if first is not None else min(differing, default=0)
        traced = {d.index for d in self.cells.values() if d.index >= start and (d.new or d.written)}
        if first is not None and not first.new:  # only RNG states differ: the cell where they began
            traced.add(first.index)
        return sorted(traced | set(differing))

    def variables_at(self, index: int) -> tuple[str, ...]:
        """The divergent names a cell began or changed (what a cause found there can reach)."""
        divergence = self.cells.get(index)
        if divergence is None:
            return ()
        return tuple(dict.fromkeys(divergence.new + divergence.written))


def compare_states(
    runs: Sequence[tuple[int, dict[int, CellState]]], order: Sequence[int], rtol: float = 0.0, atol: float = 0.0
) -> StateReport:
    """Compare each run's per-cell states with the first run's, cell by cell in notebook `order`."""
    report = StateReport()
    usable = [(number, states) for number, states in runs if states]
    if len(usable) < 2:
        return report
    report.compared = True
    (reference, first), others = usable[0], usable[1:]
    for _, states in usable:
        for state in states.values():
            report.skipped.update(state.skipped)
            report.summarised.update(state.summarised)
    previous: dict[int, CellState | None] = {number: None for number, _ in usable}
    divergent_before: dict[str, int] = {}  # name -> origin index
    rngs_before: set[str] = set()
    for index in order:
        mine = first.get(index)
        if mine is None:
            continue  # the reference run stopped before this cell, or its digest failed there
        divergent: dict[str, tuple[int, int]] = {}
        rngs: set[str] = set()
        written: set[str] = set()
        for number, states in others:
            theirs = states.get(index)
            if theirs is None:
                continue
            skipped = set(mine.skipped) | set(theirs.skipped)
            for name in sorted((set(mine.names) | set(theirs.names)) - skipped):
                a, b = mine.names.get(name), theirs.names.get(name)
                if a is not None and b is not None and same_record(a, b, rtol, atol):
                    continue
                divergent.setdefault(name, (reference, number))
                if _changed(name, previous[reference], mine) or _changed(name, previous[number], theirs):
                    written.add(name)
            for name in set(mine.rngs) & set(theirs.rngs):
                if mine.rngs[name].get("digest") == theirs.rngs[name].get("digest"):
                    continue
                # An RNG counts once it was the same after an earlier cell: one that differs from its start
                # (OS-seeded at startup or import, never drawn from) has not diverged by anything a cell did.
                before_mine, before_theirs = previous[reference], previous[number]
                if name in rngs_before or (
                    before_mine is not None
                    and before_theirs is not None
                    and name in before_mine.rngs
                    and name in before_theirs.rngs
                    and before_mine.rngs[name].get("digest") == before_theirs.rngs[name].get("digest")
                ):
                    rngs.add(name)
            previous[number] = theirs
        previous[reference] = mine
        reads = set(mine.reads) if mine.reads is not None else None
        inherited: dict[int, list[str]] = {}
        for name, origin in divergent_before.items():
            if reads is None or name in reads:
                inherited.setdefault(origin, []).append(name)
        grouped = {origin: tuple(sorted(names)) for origin, names in sorted(inherited.items())}
        new = tuple(sorted(name for name in divergent if name not in divergent_before))
        divergent_before = {name: divergent_before.get(name, index) for name in divergent}
        rngs_before = rngs
        if divergent or rngs:
            runs_of = next(iter(divergent.values()), (reference, others[0][0]))
            report.cells[index] = CellDivergence(
                index,
                runs_of,
                tuple(sorted(divergent)),
                new,
                tuple(sorted(written - set(new))),
                tuple(sorted(rngs)),
                grouped,
            )
        elif grouped:
            report.inherited_by[index] = grouped
    report.seconds = sum(state.seconds for _, states in usable for state in states.values())
    for index in order:
        seconds = [states[index].seconds for _, states in runs if index in states]
        if seconds:
            report.cell_seconds[index] = seconds
    return report


def _changed(name: str, before: CellState | None, after: CellState) -> bool:
    if before is None or name not in before.names or name not in after.names:
        return True
    return before.names[name].get("digest") != after.names[name].get("digest")


# -- words ---------------------------------------------------------------------------------


def names_text(names: Sequence[str]) -> str:
    shown = ", ".join(names[:NAMES_SHOWN])
    return shown + (f" and {len(names) - NAMES_SHOWN} more" if len(names) > NAMES_SHOWN else "")


def rng_text(names: Sequence[str]) -> str:
    from ipyrepro.comparison.statedigest import RNG_NAMES

    return ", ".join(RNG_NAMES.get(name, name.strip("<>")) for name in names)


def summarised_text(report: StateReport) -> str | None:
    """`State digests summarised tokens (over the budget of ...)`: what was compared by a summary only."""
    if not report.summarised:
        return None
    items = list(report.summarised.items())
    shown = "; ".join(f"{path} ({why})" for path, why in items[:NAMES_SHOWN])
    more = f"; and {len(items) - NAMES_SHOWN} more" if len(items) > NAMES_SHOWN else ""
    return f"State digests compared by a summary only: {shown}{more}"


def inherits_text(inherited: dict[int, tuple[str, ...]], label: Callable[[int], str]) -> str:
    """`inherits C, W1 from cell 8` (several origins: `inherits C from cell 8, W1 from cell 10`)."""
    parts = [f"{names_text(names)} from {label(origin)}" for origin, names in inherited.items()]
    return "inherits " + ", ".join(parts)


def first_divergence_text(
    report: StateReport, label: Callable[[int], str], output_note: Callable[[int], str]
) -> str | None:
    """`cell 8 of 36 (prints nothing): C differs (run 1 vs run 2); W1 differs from cell 10`."""
    first = report.first
    if first is None:
        return None
    runs = f"(run {first.runs[0]} vs run {first.runs[1]})"
    if first.new:
        head = f"{names_text(first.new)} {'differs' if len(first.new) == 1 else 'differ'} {runs}"
    else:
        head = f"the state of {rng_text(first.rngs)} differs {runs}; no variable differs"
    later = [d for d in report.roots() if d.index > first.index]
    tails = [f"{names_text(d.new)} {'differs' if len(d.new) == 1 else 'differ'} from {label(d.index)}" for d in later]
    shown = tails[:NAMES_SHOWN] + ([f"{len(tails) - NAMES_SHOWN} more cells begin to differ"] if len(tails) > 5 else [])
    return f"{label(first.index)} ({output_note(first.index)}): " + "; ".join([head, *shown])


def inherits_json(inherited: dict[int, tuple[str, ...]], ids: dict[int, str]) -> list[dict[str, Any]]:
    return [
        {"cell": origin + 1, "id": ids.get(origin), "variables": list(names)} for origin, names in inherited.items()
    ]


def state_json(report: StateReport, ids: dict[int, str]) -> dict[str, Any]:
    """The `state` object of `--json`: whether digests ran, per divergent cell what differs, what was skipped."""
    return {
        "enabled": report.enabled,
        "compared": report.compared,
        "errors": list(report.errors),
        "skipped": dict(sorted({**report.skipped, **report.summarised}.items())),
        "digest_seconds": round(report.seconds, 3),
        "digest_cells": [
            {"position": index + 1, "index": index, "id": ids.get(index), "seconds": [round(s, 4) for s in seconds]}
            for index, seconds in report.cell_seconds.items()
        ],
        "cells": [
            {
                "position": d.index + 1,
                "index": d.index,
                "id": ids.get(d.index),
                "variables": list(d.divergent),
                "new": list(d.new),
                "written": list(d.written),
                "rngs": list(d.rngs),
                "inherits": inherits_json(d.inherited, ids),
            }
            for d in report.cells.values()
        ],
    }


def first_divergence_json(report: StateReport, ids: dict[int, str], prints: dict[int, bool]) -> dict[str, Any] | None:
    first = report.first
    if first is None:
        return None
    return {
        "position": first.index + 1,
        "index": first.index,
        "id": ids.get(first.index),
        "variables": list(first.new),
        "rngs": list(first.rngs),
        "runs": list(first.runs),
        "prints_nothing": not prints.get(first.index, False),
        "later_roots": [
            {"position": d.index + 1, "id": ids.get(d.index), "variables": list(d.new)}
            for d in report.roots()
            if d.index > first.index
        ],
    }
