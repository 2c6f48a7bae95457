"""What of a cell's outputs is compared, and how: tags, sanitizers, tolerances for numbers in text, and diffs."""

from __future__ import annotations

import difflib
import json
import math
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

RAISES_TAG = "raises-exception"  # nbclient's tag: the error is an expected output, compared like any other
IGNORE_TAGS = ("ipyrepro-ignore-output", "nbval-ignore-output")  # run the cell, don't compare its outputs
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
SOURCE_LINES_SHOWN = 3
DIFF_LINES_SHOWN = 8
# -- sanitising and comparing -----------------------------------------------------------

_NUMBER = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?|[-+]?(?:nan|inf)\b")


def default_sanitizers() -> list[tuple[re.Pattern[str], str]]:
    """What is never stable between runs: memory addresses, timings, temporary paths."""
    temp_roots = {tempfile.gettempdir(), "/tmp", "/var/tmp", "/var/folders", "/private/var/folders"}
    temp = "|".join(re.escape(root) for root in sorted(temp_roots, key=len, reverse=True))
    return [
        (re.compile(r"\b0x[0-9a-fA-F]{4,}\b"), "0x<address>"),
        (re.compile(r"^CPU times: .*$", re.MULTILINE), "CPU times: <timing>"),
        (re.compile(r"^Wall time: .*$", re.MULTILINE), "Wall time: <timing>"),
        (re.compile(r"^.* per loop \(mean ± std\. dev\. of .*\)$", re.MULTILINE), "<timeit>"),
        (re.compile(rf"(?:{temp})[/\\][^\s'\"]*"), "<tmp>"),
    ]


@dataclass(frozen=True)
class Comparison:
    """How outputs are compared: the sanitisers, and the tolerance for numbers inside text."""

    sanitizers: tuple[tuple[re.Pattern[str], str], ...]
    rtol: float = 0.0
    atol: float = 0.0

    @classmethod
    def build(cls, extra: Sequence[str] = (), rtol: float = 0.0, atol: float = 0.0) -> Comparison:
        """Validates the extra patterns and the tolerances before any kernel starts."""
        patterns = list(default_sanitizers())
        for pattern in extra:
            try:
                patterns.append((re.compile(pattern, re.MULTILINE), "<sanitized>"))
            except re.error as error:
                raise ValueError(f"--sanitize {pattern!r} is not a valid regular expression: {error}") from None
        for name, value in (("rtol", rtol), ("atol", atol)):
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"--{name} must be a finite number >= 0; got {value!r}")
        return cls(tuple(patterns), float(rtol), float(atol))

    def clean(self, text: str) -> str:
        for pattern, replacement in self.sanitizers:
            text = pattern.sub(replacement, text)
        return text

    def same_text(self, a: str, b: str) -> bool:
        if a == b:
            return True
        if not (self.rtol or self.atol):
            return False
        parts_a, parts_b = _NUMBER.split(a), _NUMBER.split(b)
        numbers_a, numbers_b = _NUMBER.findall(a), _NUMBER.findall(b)
        if parts_a != parts_b or len(numbers_a) != len(numbers_b):
            return False
        return all(self._close(x, y) for x, y in zip(numbers_a, numbers_b))

    def _close(self, a: str, b: str) -> bool:
        x, y = float(a), float(b)
        if math.isnan(x) or math.isnan(y):
            return math.isnan(x) and math.isnan(y)
        if math.isinf(x) or math.isinf(y):
            return x == y
        return abs(x - y) <= self.atol + self.rtol * abs(y)


@dataclass(frozen=True)
class Item:
    """One comparable piece of a cell's output: stdout, one MIME type of a result, an error."""

    label: str
    value: str
    image: bool = False


def output_items(outputs: list[dict[str, Any]], comparison: Comparison) -> list[Item]:
    items = []
    for output in outputs:
        kind = output["output_type"]
        if kind == "stream":
            items.append(Item(output["name"], comparison.clean(output["text"])))
        elif kind == "error":
            items.append(Item("error", comparison.clean(f"{output['ename']}: {output['evalue']}")))
        else:
            for mime, value in sorted(output["data"].items()):
                if mime.startswith("image/"):
                    items.append(Item(mime, value if isinstance(value, str) else json.dumps(value), image=True))
                    continue
                if mime == WIDGET_MIME and isinstance(value, dict):  # a fresh model id every run
                    value = {key: item for key, item in value.items() if key != "model_id"}
                text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
                items.append(Item(mime, comparison.clean(text)))
    return items


def full_diff(a: str, b: str, first: int, other: int) -> str:
    """The whole unified diff of two outputs (what `--json` carries)."""
    return "\n".join(difflib.unified_diff(a.splitlines(), b.splitlines(), f"run {first}", f"run {other}", lineterm=""))


def short_diff(a: str, b: str, first: int, other: int) -> str:
    """The first differing lines of both runs: `-` lines of run `first` and `+` lines of run `other`.

    Each side gets half of the lines shown (more when the other side has fewer), so a long
    output never hides the other run's lines.
    """
    lines = list(difflib.unified_diff(a.splitlines(), b.splitlines(), f"run {first}", f"run {other}", lineterm="", n=0))
    body = [line for line in lines[2:] if not line.startswith("@@")]
    removed = sum(line.startswith("-") for line in body)
    added = len(body) - removed
    budget = {"-": min(removed, max(DIFF_LINES_SHOWN // 2, DIFF_LINES_SHOWN - added))}
    budget["+"] = min(added, DIFF_LINES_SHOWN - budget["-"])
    shown = lines[:2]
    for line in body:
        if budget[line[0]]:
            shown.append(line)
            budget[line[0]] -= 1
    if not body:  # the same lines: the texts differ only in line endings or a final newline
        return f"      run {first} and run {other} differ only in line endings or a final newline"
    hidden = len(body) - (len(shown) - 2)
    if hidden:
        shown.append(f"... ({hidden} more differing lines; --json has the full diff)")
    return "\n".join(f"      {line}" for line in shown)
