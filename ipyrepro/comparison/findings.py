"""What a difference is blamed on: a cause at its line, and what the deterministic rerun found.

Shared by the comparison reports and the tracers that fill them, so it lives in the lowest layer that uses it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

KINDS = (
    "unseeded-generator",
    "entropy",
    "nondeterministic-op",
    "setting",
    "concurrency",
    "hash-order",
    "clock",
    "earlier-cell",
    "file-read",
    "package-version",
)  # strongest first: the order causes are listed in (the last three: read from the code, against saved outputs)


@dataclass
class Cause:
    """One source of nondeterminism that ran: what, where, why, and the fix.

    `line` is the 1-based line in the cell (None outside a cell); `location` is
    `file:line` when the call is in the user's code outside the cell (a function
    from an earlier cell or a module); `code` is the source line of the call.
    A notebook check also sets `cell` (the cell's 1-based position, of `cells` in the
    notebook) and `variables`: the divergent names the line reaches.
    """

    kind: str
    line: int | None
    location: str | None
    code: str
    detail: str
    fix: str
    count: int = 1
    cell: int | None = None
    variables: list[str] = field(default_factory=list)
    cells: int | None = None  # how many cells the notebook has, for the wording only

    def where(self) -> str:
        if self.cell is not None and (self.location or "").startswith("cell "):  # a function an earlier cell defined
            called = f", called from cell {self.cell}, line {self.line}" if self.line is not None else ""
            return f"{self.location}{called}"
        if self.line is not None and self.location:
            place = f"{self.location} (called from line {self.line})"
        elif self.line is not None:
            place = f"line {self.line}"
        else:
            place = self.location or "an unknown place"
        if self.cell is None:
            return place
        if self.line is None and not self.location:
            return f"cell {self.cell}" + (f" of {self.cells}" if self.cells else "")
        return f"cell {self.cell}" + (f" of {self.cells}" if self.cells else "") + f", {place}"

    def text(self) -> str:
        times = f" (x{self.count})" if self.count > 1 else ""
        code = f" `{self.code}`" if self.code else ""
        if not code and self.line is None and not self.location and self.cell is not None:  # read from the code
            return f"{self.kind} in {self.where()}{times}: {self.detail} Fix: {self.fix}"
        return f"{self.kind} at {self.where()}:{code}{times}: {self.detail} Fix: {self.fix}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "line": self.line,
            "location": self.location,
            "code": self.code,
            "detail": self.detail,
            "fix": self.fix,
            "count": self.count,
            **({"cell": self.cell, "variables": list(self.variables)} if self.cell is not None else {}),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Cause:
        return cls(**{name: data[name] for name in cls.__dataclass_fields__ if name in data})


def ranked(causes: list[Cause]) -> list[Cause]:
    """Strongest kind first; within a kind, in the order they ran."""
    return sorted(causes, key=lambda cause: KINDS.index(cause.kind))


@dataclass
class Diagnosis:
    """Settings that were not deterministic when the cell ran, and the ops the deterministic rerun named."""

    settings: list[str] = field(default_factory=list)
    ops: list[str] = field(default_factory=list)  # in the order first seen
    op_counts: dict[str, int] = field(default_factory=dict)
    other_warnings: list[str] = field(default_factory=list)
    rerun: str = ""  # what happened to the rerun: "done", or why it was skipped or failed
    hints: list[str] = field(default_factory=list)
    causes: list[Cause] = field(default_factory=list)  # strongest first, each at its line (see causes/tracer.py)

    def to_dict(self) -> dict[str, Any]:
        return {
            "settings": self.settings,
            "ops": self.ops,
            "op_counts": self.op_counts,
            "other_warnings": self.other_warnings,
            "rerun": self.rerun,
            "hints": self.hints,
            "causes": [cause.to_dict() for cause in self.causes],
        }

    def lines(self) -> list[str]:
        out = [f"setting: {text}" for text in self.settings]
        if self.ops:
            shown = ", ".join(f"{op} (x{self.op_counts[op]})" if self.op_counts[op] > 1 else op for op in self.ops)
            out.append(f"ops without a deterministic implementation (rerun with warn_only=True): {shown}")
        out += [f"deterministic rerun warned: {text}" for text in self.other_warnings]
        if self.rerun and self.rerun != "done":
            out.append(f"deterministic rerun: {self.rerun}")
        elif self.rerun == "done" and not self.ops:
            out.append("deterministic rerun: no torch op reported lacking a deterministic implementation")
        out += self.hints
        return out
