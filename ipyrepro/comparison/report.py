"""The result of `%%repro` and `ipyrepro.compare`: `.ok`, `.differences`, and a text or HTML report."""

from __future__ import annotations

import html
import traceback
from dataclasses import dataclass, field
from typing import Any

from ..core.rendering import TextReport
from .findings import Cause, Diagnosis
from .fingerprint import CheckResult
from .snapshot import format_bytes
from .values import MATCHED, NOT_COMPARABLE, Outcome, Tolerance


@dataclass
class Entry:
    """One compared name: how it came out, and the run that first disagreed with run 1 (None: none did)."""

    name: str
    outcome: Outcome
    run: int | None = None

    def text(self) -> str:
        return self.outcome.text(self.run)


@dataclass
class RunError:
    """A run that raised: which one, and the exception."""

    run: int
    runs: int
    error: BaseException

    def text(self) -> str:
        message = str(self.error).strip().split("\n")[0]
        return f"run {self.run} of {self.runs} raised {type(self.error).__name__}" + (f": {message}" if message else "")

    def traceback(self) -> str:
        return "".join(traceback.format_exception(type(self.error), self.error, self.error.__traceback__))


@dataclass(repr=False)
class CompareReport(TextReport):
    """What `%%repro` / `ipyrepro.compare` found. `ok` is True when every compared value matched
    (bitwise, or within rtol/atol), no run raised, and a `--check` matched the file."""

    subject: str  # "cell" or the callable's name
    runs: int
    seed: int
    tolerance: Tolerance
    entries: list[Entry] = field(default_factory=list)
    error: RunError | None = None
    diagnosis: Diagnosis | None = None
    restore: bool = True
    snapshot_bytes: int | None = None
    snapshot_by_device: dict[str, int] = field(default_factory=dict)
    snapshot_names: list[str] = field(default_factory=list)  # the names copied, restored before each run
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    saved: str | None = None
    check: CheckResult | None = None
    value: Any = None  # the cell's last expression (or the callable's result) from the last run

    @property
    def ok(self) -> bool:
        return (
            self.error is None
            and all(entry.outcome.status in (*MATCHED, NOT_COMPARABLE) for entry in self.entries)
            and (self.check is None or self.check.ok)
        )

    @property
    def differences(self) -> dict[str, dict[str, Any]]:
        """name -> details, for each name whose runs did not match."""
        return {
            entry.name: {**entry.outcome.to_dict(), "run": entry.run}
            for entry in self.entries
            if entry.outcome.status not in (*MATCHED, NOT_COMPARABLE)
        }

    @property
    def causes(self) -> list[Cause]:
        """The sources of nondeterminism that ran in the diagnosis rerun, strongest first, each at its line."""
        return self.diagnosis.causes if self.diagnosis is not None else []

    @property
    def not_comparable(self) -> dict[str, str]:
        return {entry.name: entry.outcome.detail for entry in self.entries if entry.outcome.status == NOT_COMPARABLE}

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "subject": self.subject,
            "runs": self.runs,
            "seed": self.seed,
            "tolerance": str(self.tolerance),
            "entries": {entry.name: {**entry.outcome.to_dict(), "run": entry.run} for entry in self.entries},
            "differences": self.differences,
            "error": self.error.text() if self.error else None,
            "diagnosis": self.diagnosis.to_dict() if self.diagnosis else None,
            "causes": [cause.to_dict() for cause in self.causes],
            "snapshot_bytes": self.snapshot_bytes,
            "notes": self.notes,
            "warnings": self.warnings,
            "saved": self.saved,
            "check": self.check.to_dict() if self.check else None,
        }

    # -- text ----------------------------------------------------------------------

    def headline(self) -> str:
        runs = f"{self.runs} run{'s' if self.runs != 1 else ''} from seed {self.seed}, {self.tolerance}"
        if self.error is not None:
            return f"FAILED: {self.error.text()} ({runs})"
        differing = len(self.differences)
        if differing:
            return f"NOT REPRODUCIBLE: {differing} of {len(self.entries)} compared differ ({runs})"
        if self.check is not None and not self.check.ok:
            return f"DOES NOT MATCH {self.check.path} ({runs})"
        if not self.entries:
            return f"NOTHING TO COMPARE ({runs})"
        if self.runs == 1:
            checked = f", matches {self.check.path}" if self.check is not None else ""
            return f"RAN ONCE: {len(self.entries)} recorded, nothing to compare them with{checked} ({runs})"
        matched = sum(entry.outcome.status in MATCHED for entry in self.entries)
        return f"REPRODUCIBLE: {matched} of {len(self.entries)} compared match ({runs})"

    def rows(self) -> list[tuple[str, str, str]]:
        """(name, status, detail) for the table."""
        out = []
        for entry in self.entries:
            out.append((entry.name, entry.outcome.head(entry.run), entry.outcome.details()))
        return out

    def sections(self) -> list[tuple[str, list[str]]]:
        """Titled blocks of lines below the table."""
        out: list[tuple[str, list[str]]] = []
        if self.error is not None:
            if self.subject != "cell":
                restored = "later runs were not attempted"
            elif self.restore:
                restored = "the namespace was restored to its state before the cell"
            else:
                restored = "with --no-restore the namespace keeps what the runs left"
            out.append(("Error", [f"{self.error.text()}; {restored}."]))
        if self.causes:
            out.append(("Causes (strongest first)", [cause.text() for cause in self.causes]))
        if self.diagnosis is not None:
            out.append(("Diagnosis", self.diagnosis.lines()))
        if self.check is not None:
            lines = [
                f"{entry.path}: {entry.status}" + (f" ({entry.detail})" if entry.detail else "")
                for entry in self.check.entries
            ]
            if self.check.environment_changes:
                lines.append("environment fields that differ from the file (likely causes):")
                lines += [f"  {name}: {old!r} saved, {new!r} now" for name, old, new in self.check.environment_changes]
            out.append((f"Check against {self.check.path} ({self.check.tolerance})", lines))
        if self.saved:
            out.append(("Saved", [f"digests and environment written to {self.saved}"]))
        memory = []
        if self.snapshot_bytes is not None and self.snapshot_names:
            devices = ", ".join(f"{device} {format_bytes(size)}" for device, size in self.snapshot_by_device.items())
            shown = devices if set(self.snapshot_by_device) - {"cpu"} else ""
            names = ", ".join(self.snapshot_names[:8]) + (", ..." if len(self.snapshot_names) > 8 else "")
            memory.append(
                f"snapshot of the names the cell reads ({names}): {format_bytes(self.snapshot_bytes)}"
                + (f" ({shown})" if shown else "")
                + ", restored before each run"
            )
        if memory or self.notes:
            out.append(("Notes", memory + self.notes))
        if self.warnings:
            out.append(("Warnings", self.warnings))
        return out

    def __str__(self) -> str:
        lines = [
            f"%%repro: {self.headline()}" if self.subject == "cell" else f"compare({self.subject}): {self.headline()}"
        ]
        rows = self.rows()
        if rows:
            width = max(len(name) for name, _, _ in rows)
            for name, status, detail in rows:
                lines.append(f"  {name:<{width}}  {status}" + (f": {detail}" if detail else ""))
        for title, items in self.sections():
            lines.append(f"{title}:")
            lines += [f"  {item}" for item in items]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        color = "#2e7d32" if self.ok else "#c62828"
        good = ("identical", "within", "single")
        body = "".join(
            f"<tr><td style='text-align:left'><code>{html.escape(name)}</code></td>"
            f"<td style='text-align:left;color:{'#2e7d32' if status.startswith(good) else '#c62828'}'>"
            f"{html.escape(status)}</td><td style='text-align:left'>{html.escape(detail)}</td></tr>"
            for name, status, detail in self.rows()
        )
        table = (
            "<table><tr><th style='text-align:left'>name</th><th style='text-align:left'>result</th>"
            f"<th style='text-align:left'>detail</th></tr>{body}</table>"
            if body
            else ""
        )
        blocks = "".join(
            f"<div style='margin:4px 0'><b>{html.escape(title)}:</b><ul style='margin:2px 0'>"
            + "".join(f"<li>{html.escape(item)}</li>" for item in items)
            + "</ul></div>"
            for title, items in self.sections()
        )
        return (
            f"<div class='ipyrepro-compare'><b style='color:{color}'>{html.escape(self.headline())}</b>"
            f"{table}{blocks}</div>"
        )
