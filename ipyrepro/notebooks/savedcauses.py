"""Causes that tell value differences apart, read from the code, and where a cause inside a function lies.

Against the saved outputs one run has no second run to differ from: what the tracer names (unseeded
draws, the clock, OS entropy) is only part of the story. From the code alone this module adds, per
cell with a value difference: a file read in that cell (the saved output may come from another
version of the file), a value it uses from an earlier cell that differs too (named), and a package
whose version differs between the saved notebook and here. Nothing runs.

It also maps a cause located in the kernel's temporary file of an earlier cell (`ipykernel_…/….py:57`,
where a function defined in cell 27 runs) back to "cell 27, line 57".
"""

from __future__ import annotations

import ast
import copy
import re
from collections.abc import Sequence
from typing import Any

from ..comparison.findings import Cause
from .hiddenstate import cell_bindings

FILE_READ, EARLIER_CELL, PACKAGE_VERSION = "file-read", "earlier-cell", "package-version"
READERS = re.compile(
    r"^(?:open|read_\w+|load|loadtxt|genfromtxt|fromfile|imread|ImageFolder|DatasetFolder|load_dataset|"
    r"read_text|read_bytes|urlopen|get)$"
)
KERNEL_FILE = re.compile(r"(?:ipykernel_\d+[/\\]\d+\.py|<ipython-input-\d+-[0-9a-f]+>):(\d+)$")


def map_locations(causes: Sequence[Cause], cells: Sequence[Any], upto: int) -> None:
    """A location in a kernel's temporary cell file becomes `cell N of M, line L`: the latest cell up to `upto`
    (a cell index) whose line L is the cause's code."""
    for cause in causes:
        match = KERNEL_FILE.search(cause.location or "")
        if match is None:
            continue
        line = int(match.group(1))
        for cell in reversed([cell for cell in cells if cell.index <= upto]):
            lines = cell.source.splitlines()
            if 0 < line <= len(lines) and lines[line - 1].strip() == cause.code.strip():
                cause.location = f"cell {cell.position}, line {line}"
                break


def feeding_cells(cells: Sequence[Any], differing: set[int], depth: int = 3) -> set[int]:
    """The earlier cells that bind a name a differing cell reads, and the cells feeding those (`depth` steps):
    where a draw that prints nothing may have made the value a differing cell shows."""
    found: set[int] = set()
    frontier = set(differing)
    for _ in range(depth):
        nearer: set[int] = set()
        for index in frontier:
            for other in _binders(cells, index):
                if other not in found and other not in differing:
                    nearer.add(other)
        found |= nearer
        frontier = nearer
    return found


def _binders(cells: Sequence[Any], index: int) -> list[int]:
    """For each name the cell at `index` reads, the nearest earlier cell that binds it."""
    cell = next((cell for cell in cells if cell.index == index), None)
    tree = _parse(cell.source) if cell is not None else None
    if tree is None:
        return []
    read = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load)}
    found = []
    for other in reversed([other for other in cells if other.index < index]):
        names = read & set(cell_bindings(other.source).names)
        if names:
            found.append(other.index)
            read -= names
    return found


def code_causes(report: Any) -> dict[int, list[Cause]]:
    """For each cell with a value difference from the saved outputs: its file reads, the earlier differing cells
    whose names it uses, and, for a cell that uses the package and has no other cause, a package version that
    differs (from the environment differences)."""
    differing = [d.cell for d in report.failing]
    cells = list(dict.fromkeys(differing))
    versions = [d.explained for d in report.environment if " there, " in d.explained and _version_text(d.explained)]
    found: dict[int, list[Cause]] = {}
    for cell in cells:
        causes = _file_reads(cell) + _earlier(cell, [c for c in cells if c.index < cell.index])
        causes += _drawn_before(report, cell, {c.index for c in cells})
        traced = report.cell_causes(cell.index)
        for text in dict.fromkeys(versions):
            package = text.split(" ", 1)[0]
            if causes or traced or not re.search(rf"\b{re.escape(package)}\b", cell.source):
                continue  # the weakest cause: only for a cell that uses the package and has no other
            causes.append(
                Cause(
                    PACKAGE_VERSION,
                    None,
                    None,
                    "",
                    f"{_version_text(text)}: the saved output may come from that version.",
                    "install the version the notebook was saved with to compare like with like, or save the "
                    "notebook again here",
                )
            )
        for cause in causes:
            if cause.cell is None:  # those traced in an earlier cell keep that cell
                cause.cell, cause.cells = cell.position, cell.cell_count
        if causes:
            found[cell.index] = causes
    return found


def _drawn_before(report: Any, cell: Any, differing: set[int]) -> list[Cause]:
    """The causes traced in the earlier cells that made the values this cell reads (and print nothing that differs)."""
    found = []
    for index in sorted(feeding_cells(report.cells, {cell.index}) - differing):
        found += [copy.copy(cause) for cause in report.cell_causes(index) if cause.kind != "hidden-state"]
    return found


def _version_text(explained: str) -> str:
    """`torch 1.12.1+cu113 there, 2.13.0+cpu here` out of an environment explanation, or ''."""
    for part in explained.split("; "):
        if re.search(r"\d+\.\d+.* there, .*\d+\.\d+.* here", part):
            return part
    return ""


def _file_reads(cell: Any) -> list[Cause]:
    tree = _parse(cell.source)
    if tree is None:
        return []
    lines = cell.source.splitlines()
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
        if not READERS.match(name) or (name in ("get", "load") and not _reads_path(node)):
            continue
        code = lines[node.lineno - 1].strip() if 0 < node.lineno <= len(lines) else ""
        found.append(
            Cause(
                FILE_READ,
                node.lineno,
                None,
                code,
                "this line reads a file (or a download): the saved output may come from another version of it.",
                "compare with the file the notebook was saved with, or save the notebook again with this one",
            )
        )
    return found[:3]


def _reads_path(node: ast.Call) -> bool:
    """`torch.load('model.pt')`, `requests.get('https://…')`: a literal path or URL as the first argument."""
    first = node.args[0] if node.args else None
    text = first.value if isinstance(first, ast.Constant) else None
    return isinstance(text, str) and ("/" in text or "." in text)


def _earlier(cell: Any, earlier: list[Any]) -> list[Cause]:
    """The earlier differing cells that bind a name this cell reads."""
    tree = _parse(cell.source)
    if tree is None:
        return []
    read = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load)}
    found = []
    for other in reversed(earlier):
        names = sorted(read & set(cell_bindings(other.source).names))
        if names:
            shown = ", ".join(f"`{name}`" for name in names[:4])
            found.append(
                Cause(
                    EARLIER_CELL,
                    None,
                    None,
                    "",
                    f"it uses {shown} from {other.label()}, whose output differs too.",
                    f"look at {other.where()} first",
                )
            )
            read -= set(names)
    return found


def _parse(source: str) -> ast.Module | None:
    from IPython.core.inputtransformer2 import TransformerManager

    try:
        return ast.parse(TransformerManager().transform_cell(source))
    except (SyntaxError, ValueError, IndexError):
        return None
