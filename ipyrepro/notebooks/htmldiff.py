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

MAX_LINES = 400  # per side; a longer output is cut, with a note
MAX_NUMBERS = 50
NUMBER = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?|[-+]?(?:inf|nan)\b")


def side_by_side(left: str, right: str, left_title: str, right_title: str) -> str:
    """An HTML table: left lines and right lines, aligned, changed characters in <mark>."""
    a, b = left.splitlines(), right.splitlines()
    cut = len(a) > MAX_LINES or len(b) > MAX_LINES
    a, b = a[:MAX_LINES], b[:MAX_LINES]
    rows = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if tag == "equal":
            rows += [(_e(x), "", _e(y), "") for x, y in zip(a[i1:i2], b[j1:j2])]
            continue
        olds, news = a[i1:i2], b[j1:j2]
        for k in range(max(len(olds), len(news))):
            old = olds[k] if k < len(olds) else None
            new = news[k] if k < len(news) else None
            if old is not None and new is not None:
                marked_old, marked_new = mark_characters(old, new)
                rows.append((marked_old, "del", marked_new, "add"))
            elif old is not None:
                rows.append((f"<mark>{_e(old)}</mark>", "del", "", "empty"))
            else:
                rows.append(("", "empty", f"<mark>{_e(new)}</mark>", "add"))
    if left.endswith("\n") != right.endswith("\n") and not any(css for _, css, _, _ in rows):
        rows.append(("(final newline)" if left.endswith("\n") else "", "del", "(final newline)"
                     if right.endswith("\n") else "", "add"))
    body = "".join(
        f"<tr><td class='{lc}'>{lt}</td><td class='{rc}'>{rt}</td></tr>" for lt, lc, rt, rc in rows
    )
    note = f"<p class='note'>only the first {MAX_LINES} lines of each side are shown</p>" if cut else ""
    return (
        f"<table class='diff'><tr><th>{_e(left_title)}</th><th>{_e(right_title)}</th></tr>{body}</table>{note}"
    )


def mark_characters(old: str, new: str) -> tuple[str, str]:
    """Both lines as HTML with what differs wrapped in <mark>: single characters, but a number as a whole
    (0.2614 vs 0.5171 marks both numbers, not the digits that happen to differ)."""
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
    return html.escape(text, quote=False)
