"""Two texts side by side in HTML with the changed characters marked, and the numbers that differ.

Used by the HTML check report: a unified diff hides which digit changed in a long tensor printout;
side by side with character marks, and a table of the numbers with their absolute and relative
difference, it shows at a glance.
"""

from __future__ import annotations

import difflib
import html
import re
from dataclasses import dataclass

MAX_ROWS = 400  # changed rows drawn per difference, the first ones; the rest is counted
MAX_ALIGN = 20_000  # lines a side aligned by difflib when the sides have different line counts
CONTEXT_LINES = 3  # equal lines kept around each change; longer equal stretches fold into one row
MAX_NUMBERS = 50
CHAR_DIFF_LIMIT = 1_000  # characters of a line pair diffed one by one; longer lines: the window around the change
CONTEXT_CHARS = 120  # equal characters shown before and after a change in a long line
WINDOW_CHARS = 400  # differing characters shown of a long line; the rest is counted
NUMBER = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?|[-+]?(?:inf|nan)\b")


def side_by_side(left: str, right: str, left_title: str, right_title: str) -> str:
    """An HTML table: left lines and right lines, aligned, changed characters in <mark>.

    Linear in the texts: equal lines are folded (a few kept around each change as context), so every
    difference is drawn however deep it is. Sides with as many lines are paired line by line; others
    are aligned by difflib (its heuristic for frequent lines on) on up to MAX_ALIGN lines. At most
    MAX_ROWS changed rows are drawn, the first ones; the rest is counted, never silently dropped.
    """
    a, b = left.splitlines(), right.splitlines()
    head = _common_length(a, b)
    tail = _common_length(a[head:][::-1], b[head:][::-1])
    rows: list[tuple[str, str, str, str]] = []
    rows += _equal_rows(a[:head], leading=True)
    middle_a, middle_b = a[head : len(a) - tail], b[head : len(b) - tail]
    unaligned = 0
    if len(middle_a) == len(middle_b):
        opcodes = _paired(middle_a, middle_b)
    else:
        unaligned = max(len(middle_a), len(middle_b)) - MAX_ALIGN
        middle_a, middle_b = middle_a[:MAX_ALIGN], middle_b[:MAX_ALIGN]
        opcodes = difflib.SequenceMatcher(None, middle_a, middle_b).get_opcodes()  # autojunk: near-linear
    drawn = _Rows()
    for tag, i1, i2, j1, j2 in opcodes:
        if tag == "equal":
            drawn.rows += _equal_rows(middle_a[i1:i2], inner=True)
        else:
            drawn.block(middle_a[i1:i2], middle_b[j1:j2])
    rows += drawn.rows
    changed = drawn.changed
    if changed > MAX_ROWS:
        rows.append((_skip(f"{changed - MAX_ROWS:,} more changed lines not drawn"), "skip", "", "skip"))
    if unaligned > 0:
        rows.append((_skip(f"{unaligned:,} more lines of the longer side not aligned"), "skip", "", "skip"))
    rows += _equal_rows(a[len(a) - tail :] if tail else [], leading=False)
    if left.endswith("\n") != right.endswith("\n") and not any(css in ("del", "add") for _, css, _, _ in rows):
        rows.append(
            (
                "(final newline)" if left.endswith("\n") else "",
                "del",
                "(final newline)" if right.endswith("\n") else "",
                "add",
            )
        )
    body = "".join(
        f"<tr><td class='{lc}'>{lt}</td><td class='{rc}'>{rt}</td></tr>"
        if lc != "skip"
        else f"<tr><td class='skip' colspan='2'>{lt}</td></tr>"
        for lt, lc, rt, rc in rows
    )
    return f"<table class='diff'><tr><th>{_e(left_title)}</th><th>{_e(right_title)}</th></tr>{body}</table>"


def _equal_rows(lines: list[str], leading: bool = False, inner: bool = False) -> list[tuple[str, str, str, str]]:
    """Equal lines as rows: all when few, else the context next to the change and one row counting the rest."""
    if len(lines) <= (2 * CONTEXT_LINES if inner else CONTEXT_LINES) + 1:
        return _same(lines)
    if inner:
        kept_before, kept_after = lines[:CONTEXT_LINES], lines[-CONTEXT_LINES:]
        folded = len(lines) - 2 * CONTEXT_LINES
    elif leading:
        kept_before, kept_after, folded = [], lines[-CONTEXT_LINES:], len(lines) - CONTEXT_LINES
    else:
        kept_before, kept_after, folded = lines[:CONTEXT_LINES], [], len(lines) - CONTEXT_LINES
    skip = (_skip(f"{folded:,} equal lines"), "skip", "", "skip")
    return [*_same(kept_before), skip, *_same(kept_after)]


def _same(lines: list[str]) -> list[tuple[str, str, str, str]]:
    return [(_long(line), "", _long(line), "") for line in lines]


class _Rows:
    """The rows of a changed block: lines paired by position (equal pairs folded like equal lines), then what
    one side has more; at most MAX_ROWS changed rows in all, counted past that."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, str, str, str]] = []
        self.changed = 0

    def block(self, olds: list[str], news: list[str]) -> None:
        both = min(len(olds), len(news))
        for tag, i1, i2, _, _ in _paired(olds[:both], news[:both]):
            if tag == "equal":
                self.rows += _equal_rows(olds[i1:i2], inner=True)
                continue
            for old, new in zip(olds[i1:i2], news[i1:i2]):
                if self._room():
                    self.rows.append(_changed_pair(old, new))
        for old in olds[both:]:
            if self._room():
                self.rows.append((f"<mark>{_long(old)}</mark>", "del", "", "empty"))
        for new in news[both:]:
            if self._room():
                self.rows.append(("", "empty", f"<mark>{_long(new)}</mark>", "add"))

    def _room(self) -> bool:
        self.changed += 1
        return self.changed <= MAX_ROWS


def _changed_pair(old: str, new: str) -> tuple[str, str, str, str]:
    marked_old, marked_new = mark_characters(old, new)
    return marked_old, "del", marked_new, "add"


def _paired(a: list[str], b: list[str]) -> list[tuple[str, int, int, int, int]]:
    """difflib-style opcodes for two lists of one length, pairing line i with line i: runs of equal and of
    changed lines, in one pass."""
    opcodes: list[tuple[str, int, int, int, int]] = []
    start = 0
    for i in range(1, len(a) + 1):
        if i == len(a) or (a[i] == b[i]) != (a[start] == b[start]):
            opcodes.append(("equal" if a[start] == b[start] else "replace", start, i, start, i))
            start = i
    return opcodes


def _common_length(a: list[str], b: list[str]) -> int:
    """How many items two lists share at their start."""
    count = 0
    for x, y in zip(a, b):
        if x != y:
            break
        count += 1
    return count


def _common_prefix(a: str, b: str) -> int:
    """The length of the common start of two strings, by halving (C-speed slice comparisons, no per-character loop)."""
    low, high = 0, min(len(a), len(b))
    while low < high:
        middle = (low + high + 1) // 2
        if a[:middle] == b[:middle]:
            low = middle
        else:
            high = middle - 1
    return low


def _skip(text: str) -> str:
    return f"<span class='skip'>… {_e(text)} …</span>"


def _long(line: str) -> str:
    """A line, escaped, cut after CHAR_DIFF_LIMIT characters with the rest counted."""
    if len(line) <= CHAR_DIFF_LIMIT:
        return _e(line)
    return _e(line[:CHAR_DIFF_LIMIT]) + _skip(f"{len(line) - CHAR_DIFF_LIMIT:,} more characters")


def mark_characters(old: str, new: str) -> tuple[str, str]:
    """Both lines as HTML with what differs wrapped in <mark>: single characters, but a number as a whole
    (0.2614 vs 0.5171 marks both numbers, not the digits that happen to differ).

    Long lines are not diffed character by character (that takes quadratic time): the common start and
    end are found in linear time, and the window around the first difference is drawn.
    """
    if len(old) + len(new) <= CHAR_DIFF_LIMIT:
        return _marked(old, new)
    head = _common_prefix(old, new)
    room = min(len(old), len(new)) - head
    tail = _common_prefix(old[::-1][:room], new[::-1][:room])
    middle_old, middle_new = old[head : len(old) - tail], new[head : len(new) - tail]
    before = (_skip(f"{head - CONTEXT_CHARS:,} equal characters") if head > CONTEXT_CHARS else "") + _e(
        old[max(0, head - CONTEXT_CHARS) : head]
    )
    after_text = old[len(old) - tail :] if tail else ""
    after = _e(after_text[:CONTEXT_CHARS]) + (
        _skip(f"{tail - CONTEXT_CHARS:,} equal characters") if tail > CONTEXT_CHARS else ""
    )
    if len(middle_old) + len(middle_new) <= CHAR_DIFF_LIMIT:
        left, right = _marked(middle_old, middle_new)
    else:
        left, right = (_window(middle) for middle in (middle_old, middle_new))
    return before + left + after, before + right + after


def _window(text: str) -> str:
    shown = f"<mark>{_e(text[:WINDOW_CHARS])}</mark>" if text else ""
    rest = len(text) - WINDOW_CHARS
    return shown + (_skip(f"{rest:,} more differing characters") if rest > 0 else "")


def _marked(old: str, new: str) -> tuple[str, str]:
    a, b = _tokens(old), _tokens(new)
    left, right = [], []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if tag == "equal":
            left.append(_e("".join(a[i1:i2])))
            right.append(_e("".join(b[j1:j2])))
        else:
            if i2 > i1:
                left.append(f"<mark>{_e(''.join(a[i1:i2]))}</mark>")
            if j2 > j1:
                right.append(f"<mark>{_e(''.join(b[j1:j2]))}</mark>")
    return "".join(left), "".join(right)


def _tokens(text: str) -> list[str]:
    tokens, position = [], 0
    for match in NUMBER.finditer(text):
        tokens += list(text[position : match.start()])
        tokens.append(match.group())
        position = match.end()
    return tokens + list(text[position:])


@dataclass(frozen=True)
class NumberDifference:
    position: int  # the number's place among the numbers of the output, from 1
    left: str
    right: str
    absolute: float
    relative: float  # relative to the left value; inf when it is 0


def number_differences(left: str, right: str) -> list[NumberDifference]:
    """The numbers that differ, when both texts are the same apart from their numbers and spacing (else none)."""
    a, b = NUMBER.findall(left), NUMBER.findall(right)
    if len(a) != len(b) or _skeleton(left) != _skeleton(right):
        return []
    found = []
    for position, (x, y) in enumerate(zip(a, b), 1):
        if x == y:
            continue
        fx, fy = float(x), float(y)
        absolute = abs(fx - fy)
        relative = absolute / abs(fx) if fx else float("inf")
        found.append(NumberDifference(position, x, y, absolute, relative))
        if len(found) >= MAX_NUMBERS:
            break
    return found


def _skeleton(text: str) -> str:
    """The text without its numbers and spacing: NumPy pads columns, so `[0.1 0.25]` prints as `[0.1  0.25]`."""
    return re.sub(r"\s+", "", NUMBER.sub("#", text))


def _e(text: str) -> str:
    return html.escape(text, quote=True)
