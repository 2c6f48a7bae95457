"""What every report shares: people read it first, so `repr` and IPython's display show its text."""

from __future__ import annotations

from typing import Any


class TextReport:
    """Mix into a report (a `@dataclass(repr=False)`, or first before `Record`) that defines `__str__` (and
    `_repr_html_` for notebooks)."""

    def __repr__(self) -> str:
        return str(self)

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(str(self))
