"""Which differences from the saved outputs the author's machine explains, not the notebook's values.

A notebook saved on another machine shows that machine: `'1.12.1+cu113'` for `torch.__version__`,
`device='cuda:0'` in tensor reprs, `<Figure size 720x504 with 1 Axes>`, its paths, addresses and
timings, and outputs of packages missing here. Under `--against-saved` each difference gets a kind:
`environment` (the two sides are equal once these patterns are replaced: the check still passes and
says which difference explains it), `numeric` (the same text but for numbers; the largest relative
difference is given) or `value` (anything else). `--strict` turns the environment patterns off.

Everything here reads the two texts compared; nothing runs and nothing is imported from the notebook.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass

ENVIRONMENT, NUMERIC, VALUE = "environment", "numeric", "value"
KINDS = (VALUE, NUMERIC, ENVIRONMENT)  # the order the report lists them in

_NUMBER = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?")
_FLOAT = re.compile(r"[.eE]")


@dataclass(frozen=True)
class EnvironmentPattern:
    """One pattern of the machine a notebook was saved on: what it matches and how the report names it."""

    name: str  # "package version", "device", ...
    pattern: re.Pattern[str]
    replacement: str
    example: str  # for the docs' table

    def sub(self, text: str) -> str:
        """`text` with this pattern replaced; a tensor repr's `, device='cuda:0'` is dropped (CPU tensors show none)."""
        return self.pattern.sub(lambda m: "" if m.group(0).startswith(",") else self.replacement, text)

    def explain(self, there: str, here: str, source: str) -> str:
        """`torch 1.12.1+cu113 there, 2.13.0+cpu here`: the first match that differs on the two sides."""
        a = [match.group(0) for match in self.pattern.finditer(there)]
        b = [match.group(0) for match in self.pattern.finditer(here)]
        for x, y in zip(a, b):
            if x != y:
                return f"{self._what(x, y, source)} {_short(x)} there, {_short(y)} here"
        if len(a) != len(b):
            shown = (a[len(b) :] or b[len(a) :])[0]
            side = "there" if len(a) > len(b) else "here"
            if self.name == "device":  # a tensor repr names no device on the CPU
                return f"device {_short(shown)} {side}, cpu {'here' if side == 'there' else 'there'}"
            return f"{self.name} {_short(shown)} only {side}"
        return self.name

    def _what(self, there: str, here: str, source: str) -> str:
        if self.name == "package version":
            return package_of(here.strip("'\""), source) or "version"
        return self.name


def _short(text: str) -> str:
    text = re.sub(r"^[\s,]*device='|'$", "", text)
    text = re.sub(r"^<Figure size (\S+) with .*$", r"\1", text)
    return text if len(text) <= 48 else text[:45] + "..."


_VERSION = r"(?<![\w.])v?\d+\.\d+\.\d+(?:(?:a|b|rc|\.post|\.dev)\d+)*(?:\+[\w.]+)?(?![\w.])|(?<![\w.])\d+\.\d+\+[\w.]+"
_DEVICE = (
    r",\s*device='(?:cuda|mps|xpu|cpu)(?::\d+)?'"
    r"|\b(?:cuda|mps|xpu)(?::\d+)?\b|(?<![\w+])cpu\b"
    r"|\b(?:NVIDIA |Tesla |Quadro )?(?:GeForce |RTX )?(?:[ATHLVP]\d{2,4}|RTX \d{4}|T4|K80)"
    r"(?:[- ](?:SXM\d?|PCIE|\d+GB))*\b"
)
_FIGURE = r"<Figure size \d+(?:\.\d+)?x\d+(?:\.\d+)? with \d+ Axes>"
_PATH = r"(?<![\w/.~-])(?:[A-Za-z]:\\|~?/)(?:[\w.@+-]+[/\\])+[\w.@+-]*"
_ADDRESS = r"\b0x[0-9a-fA-F]{4,}\b"
_TIMING = (
    r"\d+(?:\.\d+)?\s*(?:ms|µs|us|ns|s|sec|secs|seconds?|minutes?|mins?)\b(?! of)"
    r"|\d+(?:\.\d+)?(?:it/s|s/it)|\[\d\d:\d\d(?:<[\d:?]+)?(?:, [^\]]*)?\]"
    r"|^(?:CPU times|Wall time): .*$"
)

PATTERNS = (
    EnvironmentPattern("package version", re.compile(_VERSION), "<version>", "'1.12.1+cu113' / '2.13.0+cpu'"),
    EnvironmentPattern(
        "device", re.compile(_DEVICE), "<device>", "`device='cuda:0'` in tensor reprs, `Using device: cuda`, GPU names"
    ),
    EnvironmentPattern(
        "figure size", re.compile(_FIGURE), "<Figure>", "`<Figure size 720x504 with 1 Axes>`; images of another size"
    ),
    EnvironmentPattern("path", re.compile(_PATH), "<path>", "`/content/drive/data.csv`, `C:\\Users\\...`"),
    EnvironmentPattern("memory address", re.compile(_ADDRESS), "<address>", "`at 0x7f3a2c1d5e80`"),
    EnvironmentPattern("timing", re.compile(_TIMING, re.MULTILINE), "<timing>", "`12.3 seconds`, `%time`, tqdm rates"),
)


def package_of(version: str, source: str) -> str | None:
    """The package whose version `version` is here: read from the cell (`torch.__version__`), else from the
    installed distributions of this Python (metadata only: nothing is imported)."""
    named = re.findall(r"\b([A-Za-z_]\w*)\.__version__\b", source)
    if len(set(named)) == 1:
        return named[0]
    from importlib import metadata

    try:
        found = [dist.metadata["Name"] for dist in metadata.distributions() if dist.version == version]
    except Exception:  # a broken distribution's metadata: no name rather than an error in the report
        return named[0] if named else None
    return found[0] if len(found) == 1 else named[0] if named else None


def environment_clean(text: str) -> str:
    """`text` with every environment pattern replaced (the order matters: versions before devices)."""
    for item in PATTERNS:
        text = item.sub(text)
    return text


def explain(there: str, here: str, source: str = "") -> str:
    """What explains two texts that are equal once cleaned: each differing pattern, `; `-joined."""
    found = []
    for item in PATTERNS:
        if [m.group(0) for m in item.pattern.finditer(there)] != [m.group(0) for m in item.pattern.finditer(here)]:
            found.append(item.explain(there, here, source))
            there, here = item.sub(there), item.sub(here)
    return "; ".join(found)


def largest_relative(a: str, b: str) -> float | None:
    """The largest relative difference of the numbers of two texts that differ only in numbers, else None."""
    if _NUMBER.split(a) != _NUMBER.split(b):
        return None
    largest = 0.0
    for x, y in zip(_NUMBER.findall(a), _NUMBER.findall(b)):
        u, v = float(x), float(y)
        if u == v:
            continue
        if not _FLOAT.search(x) or not _FLOAT.search(y):  # counts, labels, epochs: values, not rounding
            return None
        scale = max(abs(u), abs(v))
        largest = max(largest, abs(u - v) / scale if scale and math.isfinite(scale) else math.inf)
    return largest


@dataclass(frozen=True)
class Kind:
    """A difference's kind, what explains it (environment) or its largest relative difference (numeric)."""

    kind: str
    explained: str = ""
    largest_relative: float | None = None


def classify_text(there: str, here: str, source: str = "", environment: bool = True) -> Kind:
    """The kind of a difference between two texts (`there` saved, `here` this run)."""
    a, b = (environment_clean(there), environment_clean(here)) if environment else (there, here)
    if environment and a == b:
        return Kind(ENVIRONMENT, explain(there, here, source))
    relative = largest_relative(a, b)
    if relative is not None:
        return Kind(NUMERIC, "", relative)
    return Kind(VALUE)


def classify_image(there: bytes, here: bytes, environment: bool = True) -> Kind:
    """Images drawn at another size or DPI with the same aspect ratio are the environment's; else a value."""
    sizes = [png_size(data) for data in (there, here)]
    if not environment or None in sizes or sizes[0] == sizes[1]:
        return Kind(VALUE)
    (w1, h1), (w2, h2) = sizes  # type: ignore[misc]
    if h1 and h2 and abs(w1 / h1 - w2 / h2) <= 0.02 * (w1 / h1):
        return Kind(ENVIRONMENT, f"figure drawn at {w1}x{h1} there, {w2}x{h2} here (same aspect ratio)")
    return Kind(VALUE)


def png_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG's header, without decoding it; None when not a PNG."""
    if len(data) < 24 or not data.startswith(b"\x89PNG\r\n\x1a\n") or data[12:16] != b"IHDR":
        return None
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


MISSING_MODULE = re.compile(r"No module named '([^']+)'")


def missing_here(ename: str, evalue: str, installed: Callable[[str], bool]) -> str | None:
    """The package a run's import error names when it is not installed here (`installed` asks, without importing)."""
    if ename not in ("ModuleNotFoundError", "ImportError"):
        return None
    match = MISSING_MODULE.search(evalue)
    if match is None:
        return None
    package = match.group(1).split(".")[0]
    return None if installed(package) else package


def installed_here(package: str) -> bool:
    """Whether this Python can import `package`, found by its spec (nothing is imported)."""
    from importlib.util import find_spec

    try:
        return find_spec(package) is not None
    except (ImportError, ValueError):
        return False


def docs_table() -> str:
    """The built-in environment patterns as the docs list them (scripts/docs-examples writes it)."""
    rows = ["| pattern | example |", "|---|---|"]
    rows += [f"| {item.name} | {item.example} |" for item in PATTERNS]
    rows.append("| package missing here | the saved output where this run raised `ModuleNotFoundError` |")
    return "\n".join(rows)
