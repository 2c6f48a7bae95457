"""A notebook's fingerprint: what `ipyrepro check NB --save FILE.json` writes and `--against` / `explain` read.

Per code cell the digests of its outputs (as the check compares them: sanitised
text, exact image bytes) and, when the check records them, of its state; the
numerics environment of the kernel that ran it (read inside that kernel, at the
end of the run); and with `--trace-ops` the op trace of every cell. The file is
JSON data only, validated field by field when read. Schema: docs/across-machines.md.
"""

from __future__ import annotations

import datetime
import json
import os
from dataclasses import dataclass, field
from typing import Any

import xxhash

from ..causes.opcompare import CellTrace, Divergence, first_divergence, tie_to_environment
from ..core import userfiles
from ..env.explain import Explanation, explain
from .fingerprintfile import FingerprintError, parse, validate

FORMAT = "ipyrepro.notebook-fingerprint"
SCHEMA = 1
MAX_FILE_BYTES = 256 << 20
PREVIEW_CHARS = 2000  # of each text output, so a mismatch can show its first differing line


def digest_text(text: str) -> str:
    return f"xxh3_128:{xxhash.xxh3_128_hexdigest(text.encode('utf-8', 'surrogatepass'))}"


def cell_record(cell: Any, items: list[Any], state: dict[str, str] | None = None) -> dict[str, Any]:
    """One cell's entry: where it is, a digest of its code, one digest per output item (label, digest, preview)."""
    return {
        "index": cell.index,
        "code_index": cell.code_index,
        "cell_id": cell.cell_id,
        "source": digest_text(cell.source),
        "outputs": [
            {"output": item.label, "digest": digest_text(item.value), "preview": _preview(item)} for item in items
        ],
        "state": state,
    }


def _preview(item: Any) -> str:
    if item.image:
        return f"<{item.label}, {len(item.value)} bytes>"
    return item.value[:PREVIEW_CHARS]


def document(
    notebook: str, cells: list[dict[str, Any]], environment: dict[str, Any], options: dict[str, Any], trace: Any
) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "schema": SCHEMA,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "notebook": os.path.basename(notebook),
        "options": options,
        "environment": environment,
        "cells": cells,
        "trace": trace,
    }


def save(path: str | os.PathLike[str], content: dict[str, Any]) -> str:
    """Write atomically (a temporary file in the same folder, then a rename)."""
    target = userfiles.validate_target(path, "fingerprint file")
    text = json.dumps(content, indent=1, allow_nan=False)
    with userfiles.replacing(target, shared=True) as stream:  # a file to share, not mkstemp's private 0600
        stream.write(text + "\n")
    return str(target)


def load(path: str | os.PathLike[str], *, cells_required: bool = False) -> dict[str, Any]:
    """Read and validate a fingerprint; only `environment` is required unless `cells_required`."""
    try:
        source = userfiles.expand(path, "fingerprint file")
        if userfiles.is_missing(source):
            raise FingerprintError(
                f"fingerprint file {str(source)!r} does not exist; write one with `ipyrepro check NB --save FILE.json`"
            )
        raw = userfiles.read_regular_file(source, MAX_FILE_BYTES, "fingerprint file")
    except userfiles.PathProblem as error:
        raise FingerprintError(str(error)) from None
    where = f"fingerprint file {str(source)!r}"
    data = parse(raw, where)
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise FingerprintError(f'{where} is not a notebook fingerprint (no "format": "{FORMAT}")')
    schema = data.get("schema")
    if not isinstance(schema, int) or isinstance(schema, bool) or schema < 1:
        raise FingerprintError(f'{where}: missing or invalid "schema"')
    if schema > SCHEMA:
        raise FingerprintError(f"{where} has schema {schema}, newer than this ipyrepro reads ({SCHEMA}); upgrade")
    if not isinstance(data.get("environment"), dict):
        raise FingerprintError(f'{where}: missing "environment" object')
    validate(data, where, cells_required=cells_required)
    data["cells"] = data.get("cells") or []
    data["trace"] = None if data.get("trace") is None else [CellTrace.from_dict(item) for item in data["trace"]]
    data["path"] = str(source)
    return data


# -- comparing -------------------------------------------------------------------


@dataclass
class CellMismatch:
    index: int
    label: str
    what: str  # "outputs differ", "code changed", "missing"
    detail: str = ""

    def text(self) -> str:
        return f"{self.label}: {self.what}" + (f"\n{self.detail}" if self.detail else "")


@dataclass(frozen=True)
class StateDivergence:
    """The first cell whose recorded state differs between the two sides, the names that differ there, and how
    many compared cells' state differs in all."""

    index: int
    label: str
    names: tuple[str, ...]
    outputs_match: bool
    cells: int

    def text(self, names: tuple[str, str]) -> str:
        shown = ", ".join(self.names[:5]) + (f" and {len(self.names) - 5} more" if len(self.names) > 5 else "")
        verb = "differs" if len(self.names) == 1 else "differ"
        printed = "; its printed outputs match" if self.outputs_match else ""
        more = f"; {self.cells} code cells' state differs in all" if self.cells > 1 else ""
        return f"{self.label}: {shown} {verb} ({names[0]} vs {names[1]}){printed}{more}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "label": self.label,
            "variables": list(self.names),
            "outputs_match": self.outputs_match,
            "cells": self.cells,
        }


@dataclass
class FingerprintComparison:
    """Two fingerprints (or a run and a fingerprint) side by side: cells, environment, first divergent op."""

    names: tuple[str, str]
    explanation: Explanation
    mismatches: list[CellMismatch] = field(default_factory=list)
    cells_compared: int = 0
    divergence: Divergence | None = None
    trace_notes: list[str] = field(default_factory=list)
    cell_labels: dict[str, str] = field(default_factory=dict)  # trace cell key -> label
    state: StateDivergence | None = None  # the first cell whose recorded state differs
    states_compared: int = 0  # cells with state digests on both sides

    @property
    def outputs_differ(self) -> bool:
        return any(m.what == "outputs differ" for m in self.mismatches)

    @property
    def exit_code(self) -> int:
        """The results decide: 1 when a cell's outputs or recorded state differ (or a cell is missing or changed),
        else 0, whatever the environments. Environments alone (no cell recorded) decide only when nothing
        else can: 1 when bitwise equality is not expected between them."""
        if self.mismatches or self.state is not None:
            return 1
        return 0 if self.cells_compared or self.explanation.bitwise_expected else 1

    def note(self) -> str | None:
        """When every recorded result matched but the environments can move numbers: what that match means."""
        if self.exit_code or not self.cells_compared or self.explanation.bitwise_expected:
            return None
        where = "here" if self.names[0] == "here" else f"in {self.names[0]} and {self.names[1]}"
        return f"matched bitwise {where}; {self.explanation.not_guaranteed()}"

    def lines(self) -> list[str]:
        out = []
        if self.cells_compared:
            differing = [m for m in self.mismatches if m.what == "outputs differ"]
            out.append(
                f"Outputs: {len(differing)} of {self.cells_compared} code cells differ "
                f"({self.names[0]} vs {self.names[1]})"
                if differing
                else f"Outputs: all {self.cells_compared} code cells match bitwise"
            )
            out += [f"  {m.text()}" for m in self.mismatches]
        if self.state is not None:
            out.append(f"First state divergence: {self.state.text(self.names)}")
        elif self.states_compared:
            out.append(f"State: all {self.states_compared} code cells' recorded state matches bitwise")
        if self.divergence is not None:
            label = self.cell_labels.get(self.divergence.cell)
            out.append(f"First divergent op: {self.divergence.text(label)}")
        out += [f"Note: {note}" for note in self.trace_notes]
        note = self.note()
        if note is not None:
            out.append(f"Note: {note}")
        out += self.explanation.lines()
        return out

    def __str__(self) -> str:
        return "\n".join(self.lines())

    def to_dict(self) -> dict[str, Any]:
        return {
            "exit_code": self.exit_code,
            "cells_compared": self.cells_compared,
            "mismatches": [m.__dict__ for m in self.mismatches],
            "first_state_divergence": self.state.to_dict() if self.state else None,
            "states_compared": self.states_compared,
            "first_divergent_op": self.divergence.to_dict() if self.divergence else None,
            "trace_notes": self.trace_notes,
            "note": self.note(),
            "environment": self.explanation.to_dict(),
        }


def compare(
    here: dict[str, Any], there: dict[str, Any], names: tuple[str, str] = ("here", "there"), *, state: bool = True
) -> FingerprintComparison:
    """Compare two fingerprint documents (as `load` returns, or as the check builds before saving); `state`:
    compare the cells' state digests where both sides recorded them (bitwise)."""
    explanation = explain(here["environment"], there["environment"], names)
    result = FingerprintComparison(names, explanation)
    differing_states: list[tuple[int, str, tuple[str, ...], bool]] = []
    theirs = {cell["index"]: cell for cell in there.get("cells") or []}
    total = len(here.get("cells") or [])
    for position, cell in enumerate(here.get("cells") or [], 1):
        label = f"cell {cell['index']} ({position} of {total} code cells, id {cell.get('cell_id')!r})"
        result.cell_labels[str(cell.get("cell_id"))] = label
        other = theirs.get(cell["index"])
        if other is None:
            if theirs:
                result.mismatches.append(CellMismatch(cell["index"], label, f"missing {_in(names[1])}"))
            continue
        if other["source"] != cell["source"]:
            result.mismatches.append(CellMismatch(cell["index"], label, "code changed", "    outputs not compared"))
            continue
        result.cells_compared += 1
        mine = [item["digest"] for item in cell["outputs"]]
        outputs_match = mine == [item["digest"] for item in other["outputs"]]
        if not outputs_match:
            result.mismatches.append(CellMismatch(cell["index"], label, "outputs differ", _detail(cell, other, names)))
        a, b = cell.get("state"), other.get("state")
        if state and isinstance(a, dict) and isinstance(b, dict):
            result.states_compared += 1
            differing = tuple(sorted(name for name in set(a) & set(b) if a[name] != b[name]))  # left out: unstable
            if differing:
                differing_states.append((cell["index"], label, differing, outputs_match))
    if differing_states:
        index, label, differing, outputs_match = differing_states[0]
        result.state = StateDivergence(index, label, differing, outputs_match, len(differing_states))
    traces_here, traces_there = here.get("trace"), there.get("trace")
    if traces_here and traces_there:
        result.trace_notes = [note for trace in (*traces_here, *traces_there) if (note := trace.note())]
        divergence = first_divergence(traces_here, traces_there)
        if divergence is not None:
            values = {d.kind: (d.here, d.there) for d in reversed(explanation.differences)}
            result.divergence = tie_to_environment(divergence, explanation.kinds(), values)
    elif (result.outputs_differ or result.state is not None) and (traces_here or traces_there):
        result.trace_notes.append("only one side has an op trace; run both with --trace-ops to find the first op")
    return result


def _in(name: str) -> str:
    return name if name in ("here", "there") else f"in {name}"


def _detail(cell: dict[str, Any], other: dict[str, Any], names: tuple[str, str]) -> str:
    lines = []
    for a, b in zip(cell["outputs"], other["outputs"]):
        if a["digest"] != b["digest"]:
            mine, theirs = str(a.get("preview", "")).splitlines(), str(b.get("preview", "")).splitlines()
            if mine == theirs:
                lines.append(f"    {a['output']} differs after the first {PREVIEW_CHARS} characters (not saved)")
                break
            at = next((n for n, (x, y) in enumerate(zip(mine, theirs)) if x != y), min(len(mine), len(theirs)))
            shown = [(mine[at] if at < len(mine) else "(no line)"), (theirs[at] if at < len(theirs) else "(no line)")]
            lines.append(f"    {a['output']}, line {at + 1} {_in(names[0])}: {shown[0][:160]}")
            lines.append(f"    {b['output']}, line {at + 1} {_in(names[1])}: {shown[1][:160]}")
            break
    if len(cell["outputs"]) != len(other["outputs"]):
        lines.append(f"    {len(cell['outputs'])} outputs {_in(names[0])}, {len(other['outputs'])} {_in(names[1])}")
    return "\n".join(lines)


# -- inside the kernel -----------------------------------------------------------


class KernelCollector:
    """Runs inside the check's kernel: traces each cell (when asked) and writes the environment at the end."""

    def __init__(self, shell: Any, trace: bool, cap: int) -> None:
        self.shell = shell
        self.trace = trace
        self.cap = cap
        self.traces: list[CellTrace] = []
        self._mode: Any = None
        if trace:
            shell.events.register("pre_run_cell", self._begin)
            shell.events.register("post_run_cell", self._end)

    def _begin(self, info: Any) -> None:
        from ..causes.optrace import OpTracer

        cell = CellTrace(str(getattr(info, "cell_id", None) or len(self.traces)), cap=self.cap)
        self.traces.append(cell)
        self._mode = OpTracer(cell)
        self._mode.__enter__()

    def _end(self, result: Any) -> None:
        if self._mode is not None:
            mode, self._mode = self._mode, None
            mode.__exit__(None, None, None)

    def dump(self, path: str) -> None:
        from ..core.state import STATE
        from ..env.numerics import numerics_environment

        if self.trace:
            self.shell.events.unregister("pre_run_cell", self._begin)
            self.shell.events.unregister("post_run_cell", self._end)
        content = {
            "environment": numerics_environment(STATE),
            "trace": [trace.to_dict() for trace in self.traces] if self.trace else None,
        }
        with open(path, "w", encoding="utf-8") as stream:
            json.dump(content, stream, allow_nan=False)


def kernel_setup_code(trace: bool, cap: int) -> str:
    """What the check runs (silently) in its kernel before the first cell."""
    return (
        "from ipyrepro.notebooks.fingerprint import KernelCollector as _IpyreproCollector\n"
        f"_ipyrepro_collector = _IpyreproCollector(get_ipython(), {trace!r}, {cap!r})\n"
        "del _IpyreproCollector"
    )


def kernel_dump_code(path: str) -> str:
    return f"_ipyrepro_collector.dump({path!r})\ndel _ipyrepro_collector"
