"""Op traces as data, and comparing two of them: the first op whose output differs, tied to its cause.

Kept apart from optrace.py (which records them, under torch) so that reading and comparing
fingerprints (`ipyrepro explain`, the check's client process) never imports torch.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

DEFAULT_CAP = 20_000  # ops per cell: about 3 MB of JSON; a CNN training step is a few hundred ops


# -- recording -------------------------------------------------------------------


@dataclass
class OpRecord:
    op: str
    device: str
    inputs: list[str]
    outputs: list[str]
    file: str
    line: int
    code: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "op": self.op,
            "device": self.device,
            "inputs": self.inputs,
            "outputs": self.outputs,
            "file": self.file,
            "line": self.line,
            "code": self.code,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> OpRecord:
        return cls(
            str(data["op"]),
            str(data.get("device", "")),
            [str(item) for item in data.get("inputs", [])],
            [str(item) for item in data.get("outputs", [])],
            str(data.get("file", "")),
            int(data.get("line", 0)),
            str(data.get("code", "")),
        )


@dataclass
class CellTrace:
    """The ops of one cell, in order; `truncated` counts those past the cap (not recorded)."""

    cell: str  # a label the caller chooses: the cell's index in a notebook, or "cell" for %%repro
    ops: list[OpRecord] = field(default_factory=list)
    truncated: int = 0
    cap: int = DEFAULT_CAP

    def note(self) -> str | None:
        if not self.truncated:
            return None
        return (
            f"cell {self.cell}: the op trace stopped at {self.cap} ops ({self.truncated} more were not recorded); "
            "a divergence after that point is not found. Raise the cap (IPYREPRO_TRACE_CAP) or trace fewer cells"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "cell": self.cell,
            "cap": self.cap,
            "truncated": self.truncated,
            "ops": [op.to_dict() for op in self.ops],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CellTrace:
        return cls(
            str(data["cell"]),
            [OpRecord.from_dict(op) for op in data.get("ops", [])],
            int(data.get("truncated", 0)),
            int(data.get("cap", DEFAULT_CAP)),
        )


def trace_cap() -> int:
    """The cap on ops per cell: DEFAULT_CAP, or IPYREPRO_TRACE_CAP when it holds a positive integer."""
    text = os.environ.get("IPYREPRO_TRACE_CAP", "")
    return int(text) if text.isdigit() and int(text) > 0 else DEFAULT_CAP


# -- comparing -------------------------------------------------------------------


@dataclass(frozen=True)
class Divergence:
    """The first op whose output differs between two traces, and whether its inputs agreed."""

    cell: str
    position: int  # of the op within its cell, from 1
    here: OpRecord
    there: OpRecord
    same_inputs: bool
    kind: str  # "output" (the op computed other bits) or "sequence" (other ops ran: control flow)
    cause: str = ""  # the environment difference that explains it, or the kernel's nondeterminism

    def text(self, cell_label: str | None = None) -> str:
        where = cell_label or f"cell {self.cell}"
        of = "" if self.here.file in ("", "<cell>") else f" of {os.path.basename(self.here.file)}"
        line = f"line {self.here.line}{of}" + (f" ({self.here.code})" if self.here.code else "")
        if self.kind == "sequence":
            head = (
                f"{where}, op {self.position}: {self.here.op} here, {self.there.op} there at {line}: "
                "other ops ran (control flow depends on values that already differed)"
            )
        else:
            what = (
                "same inputs, different outputs"
                if self.same_inputs
                else "its inputs already differ (they come from outside torch ops, e.g. a Python or numpy value)"
            )
            head = f"{self.here.op} at {where}, {line}: {what}"
        return head + (f"; {self.cause}" if self.cause else "")

    def to_dict(self) -> dict[str, Any]:
        return {
            "cell": self.cell,
            "position": self.position,
            "op": self.here.op,
            "device": self.here.device,
            "file": self.here.file,
            "line": self.here.line,
            "code": self.here.code,
            "same_inputs": self.same_inputs,
            "kind": self.kind,
            "cause": self.cause,
        }


def first_divergence(here: list[CellTrace], there: list[CellTrace]) -> Divergence | None:
    """Walk both traces cell by cell (cells present in both, in `here`'s order) and return the first difference."""
    theirs = {trace.cell: trace for trace in there}
    for mine in here:
        other = theirs.get(mine.cell)
        if other is None:
            continue
        for position, (a, b) in enumerate(zip(mine.ops, other.ops), 1):
            if a.op != b.op:
                return Divergence(mine.cell, position, a, b, a.inputs == b.inputs, "sequence")
            if a.outputs != b.outputs:
                return Divergence(mine.cell, position, a, b, a.inputs == b.inputs, "output")
    return None


def tie_to_environment(divergence: Divergence, kinds: list[str], values: dict[str, tuple[Any, Any]]) -> Divergence:
    """Name the environment difference that explains the op (see env.explain kinds), else the kernel itself."""
    from dataclasses import replace

    device = divergence.here.device
    op = divergence.here.op
    matmul_like = any(word in op for word in ("mm", "conv", "linear", "addmm", "bmm", "matmul", "baddbmm"))
    reduction_like = any(word in op for word in ("sum", "mean", "norm", "var", "std", "softmax", "mm", "conv"))
    checks: list[tuple[bool, str]] = [
        ("seed" in kinds, "the seeds differ"),
        (device == "cpu" and "cpu_capability" in kinds, _cause("CPU capability", values.get("cpu_capability"))),
        (device == "cpu" and "cpu_isa" in kinds, _cause("oneDNN / MKL instruction set", values.get("cpu_isa"))),
        (device != "cpu" and matmul_like and "tf32" in kinds, _cause("TF32 / fp32 precision", values.get("tf32"))),
        (device != "cpu" and "gpu" in kinds, _cause("GPU", values.get("gpu"))),
        (device != "cpu" and "cuda_libraries" in kinds, _cause("cuDNN / cuBLAS version", values.get("cuda_libraries"))),
        (reduction_like and "threads" in kinds, _cause("thread count", values.get("threads"))),
        ("torch" in kinds, _cause("torch version", values.get("torch"))),
        (device == "cpu" and "tf32" in kinds and matmul_like, _cause("fp32 precision", values.get("tf32"))),
    ]
    for applies, cause in checks:
        if applies:
            return replace(divergence, cause=f"explained by the {cause}" if "seeds" not in cause else cause)
    if divergence.kind == "output" and divergence.same_inputs:
        return replace(
            divergence,
            cause=f"no environment difference explains it: {op} is nondeterministic on {device} "
            "(use `torch.use_deterministic_algorithms(True)`, which `%repro on` sets)",
        )
    return divergence


def _cause(name: str, pair: tuple[Any, Any] | None) -> str:
    if pair is None:
        return name
    return f"{name} ({pair[0]} here, {pair[1]} there)"


def traces_from(data: Any) -> Iterator[CellTrace]:
    for item in data or []:
        yield CellTrace.from_dict(item)
