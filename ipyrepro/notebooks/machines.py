"""The check's side of `--save`, `--against`, `--trace-ops` and `--portable`: validated first, applied per run.

Everything a file option could fail on (a missing or malformed `--against` file, an
unwritable `--save` target) fails in `MachinePlan.build`, before any kernel starts.
Run 1's kernel collects the numerics environment (and, with `--trace-ops`, the op trace);
after the runs, `finish` writes the fingerprint or compares with the saved one.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from typing import Any

from ..core import userfiles
from ..core.portable import start_variables
from . import fingerprint
from .outputs import Comparison, output_items


@dataclass
class MachineResult:
    """What the plan added to the check: the file written, or the comparison with the saved fingerprint."""

    saved_to: str | None = None
    save_note: str | None = None
    against: fingerprint.FingerprintComparison | None = None
    against_name: str = ""
    error: str | None = None  # the kernel could not report its environment

    @property
    def differs(self) -> bool:
        return self.against is not None and self.against.exit_code != 0

    def lines(self) -> list[str]:
        out = []
        if self.error:
            out.append(f"Error: {self.error}")
        if self.saved_to:
            out.append(self.save_note or f"Saved the fingerprint to {self.saved_to}.")
        elif self.save_note:
            out.append(self.save_note)
        if self.against is not None:
            verdict = "DIFFERS" if self.differs else "OK"
            out.append(f"Against {self.against_name}: {verdict}")
            out += self.against.lines()
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "saved_to": self.saved_to,
            "save_note": self.save_note,
            "against": self.against.to_dict() if self.against is not None else None,
            "error": self.error,
        }


@dataclass
class MachinePlan:
    save: str | None
    against: dict[str, Any] | None
    trace_ops: bool
    portable: bool
    options: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def build(
        cls,
        save: str | None,
        against: str | None,
        trace_ops: bool,
        portable: bool,
        options: dict[str, Any],
        notebook: str | os.PathLike[str] | None = None,
    ) -> MachinePlan | None:
        """Validate the file options now (an empty path, or `--save` over the notebook or the `--against`
        file, is refused); None when none of them is given."""
        if trace_ops and save is None and against is None:
            raise ValueError("--trace-ops records a trace for --save or --against; give one of them")
        if save and against and userfiles.same_file(save, against):
            raise ValueError("--save and --against name the same file; save to another file")
        if save is None and against is None and not portable:
            return None
        userfiles.validate_outputs({"--save": save}, {"the notebook": notebook, "--against": against})
        saved = fingerprint.load(against, cells_required=True) if against is not None else None
        return cls(save, saved, trace_ops, portable, {**options, "portable": portable, "trace_ops": trace_ops})

    @property
    def collects(self) -> bool:
        return self.save is not None or self.against is not None

    def kernel_env(self) -> dict[str, str]:
        """Start-only variables of the portable profile, set before each kernel starts."""
        return start_variables() if self.portable else {}

    def setup_code(self, number: int) -> str | None:
        """Silent code for run `number`'s kernel before the first cell (None: nothing to run)."""
        lines = []
        if self.portable:
            lines.append("from ipyrepro.core.state import STATE as _ipyrepro_state\n_ipyrepro_state.set_portable()")
            lines.append("del _ipyrepro_state")
        if self.collects and number == 1:
            lines.append(fingerprint.kernel_setup_code(self.trace_ops, _trace_cap()))
        return "\n".join(lines) or None

    def collect(self, runner: Any, number: int, timeout: float) -> dict[str, Any] | str | None:
        """After the last cell of run 1: the kernel's environment and trace, or the error text."""
        if not (self.collects and number == 1):
            return None
        handle, path = tempfile.mkstemp(prefix="ipyrepro-fingerprint-", suffix=".json")
        os.close(handle)
        try:
            done = runner.execute(fingerprint.kernel_dump_code(path), silent=True, store_history=False, timeout=timeout)
            if done.status != "ok":
                return f"the kernel could not report its environment ({done.error_text or done.status})"
            with open(path, encoding="utf-8") as stream:
                return json.load(stream)
        finally:
            os.unlink(path)

    def finish(self, report: Any, comparison: Comparison) -> MachineResult:
        """Write the fingerprint (when the runs agree) or compare run 1 with the saved one."""
        result = MachineResult()
        first = report.runs[0] if report.runs else None
        collected = getattr(first, "collected", None)
        if first is None or not first.complete:
            result.save_note = "Not saved: run 1 did not complete" if self.save else None
            return result
        if not isinstance(collected, dict):
            result.error = collected or "the kernel did not report its environment"
            return result
        cells = [
            fingerprint.cell_record(
                cell, output_items(first.outputs.get(cell.index, []), comparison), _state(report, first, cell.index)
            )
            for cell in report.cells
        ]
        here = fingerprint.document(report.notebook, cells, collected["environment"], self.options, collected["trace"])
        if self.save is not None:
            if report.differences:
                result.save_note = f"Not saved to {self.save}: the runs here differ, so there is no one fingerprint"
            else:
                result.saved_to = fingerprint.save(self.save, here)
                traced = "op trace" if self.trace_ops else "no op trace"
                result.save_note = (
                    f"Saved the fingerprint to {self.save} ({len(cells)} code cells, numerics environment, {traced})."
                )
        if self.against is not None:
            here["trace"] = [fingerprint.CellTrace.from_dict(item) for item in collected["trace"] or []] or None
            tolerant = bool(comparison.rtol or comparison.atol)  # the digests are bitwise: not within a tolerance
            result.against = fingerprint.compare(here, self.against, state=not tolerant)
            if tolerant and any(cell.get("state") for cell in self.against["cells"]):
                result.against.trace_notes.append("state digests are bitwise, so with --rtol/--atol only outputs count")
            result.against_name = os.path.basename(self.against["path"])
        return result


def _state(report: Any, run: Any, index: int) -> dict[str, str] | None:
    """The cell's state digests as the check computed them (name -> digest), or None when not recorded.

    Only names that held the same value in every run here: one that differs run to run (a timestamp, a
    process id) says nothing about another machine, so it is neither saved nor compared."""
    cell_state = getattr(run, "states", {}).get(index)
    if cell_state is None:
        return None
    divergence = report.state.cells.get(index) if report.state.compared else None
    unstable = set(divergence.divergent) if divergence is not None else set()
    return {
        name: record["digest"]
        for name, record in sorted(cell_state.names.items())
        if "digest" in record and name not in unstable
    }


def _trace_cap() -> int:
    from ..causes.opcompare import trace_cap

    return trace_cap()
