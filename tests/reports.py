"""Reading a check's text report as a user reads it: a word-wrapped cause line is one sentence."""

from __future__ import annotations


def unwrapped(text: str) -> str:
    """`text` with each wrapped cause line joined back into one line (reporttext.wrapped splits them at spaces)."""
    lines: list[str] = []
    for line in text.splitlines():
        if lines and lines[-1].lstrip().startswith("cause: ") and _continues(lines[-1], line):
            lines[-1] += " " + line.strip()
        else:
            lines.append(line)
    return "\n".join(lines)


def _continues(previous: str, line: str) -> bool:
    indent = len(previous) - len(previous.lstrip())
    return line.startswith(" " * (indent + 2)) and not line.startswith(" " * (indent + 3)) and line.strip() != ""


def cause_entries(text: str) -> list[str]:
    """Every `    cause: ` line of a text report, unwrapped."""
    return [line for line in unwrapped(text).splitlines() if line.startswith("    cause: ")]
