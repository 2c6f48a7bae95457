"""Reading a notebook file as people save them: bounded, validated, and every problem named with its cell and field.

The file is only ever read; a malformed one raises NotebookError (a usage error, exit 2)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .jupytextfile import is_text_notebook, read_text_notebook
from .outputs import SOURCE_LINES_SHOWN


class NotebookError(ValueError):
    """The notebook cannot be read as an nbformat 4 notebook; the message says why and what to do."""


ID_SHOWN = 12  # longer ids (JupyterLab's UUIDs) are cut in labels; the JSON has them whole


@dataclass(frozen=True)
class Cell:
    """A code cell as saved. Labels number cells from 1, as an editor shows them; `index` and
    `code_index` count from 0, as the file stores them."""

    index: int  # position among all cells, from 0, as the notebook stores them
    cell_id: str  # the id sent to the kernel: the saved one, else a stable stand-in
    source: str
    tags: tuple[str, ...]
    code_index: int = 0  # position among code cells only, from 0, as nbval counts them
    cell_count: int = 0  # how many cells the notebook has (0: unknown)
    code_count: int = 0  # how many of them are code cells
    saved_id: str | None = None  # None: saved without an id (nbformat < 4.5)
    execution_count: int | None = None  # as saved
    saved_outputs: tuple[dict[str, Any], ...] = field(default=(), compare=False)

    @property
    def position(self) -> int:
        return self.index + 1

    @property
    def code_position(self) -> int:
        return self.code_index + 1

    def where(self) -> str:
        """`cell 8 of 36`: 1-based, among all cells, as an editor shows them."""
        return f"cell {self.position}" + (f" of {self.cell_count}" if self.cell_count else "")

    def head(self) -> str:
        lines = self.source.splitlines() or [""]
        shown = lines[:SOURCE_LINES_SHOWN] + (["..."] if len(lines) > SOURCE_LINES_SHOWN else [])
        return "\n".join(f"    | {line}" for line in shown)

    def label(self) -> str:
        """`cell 19 of 60 (code cell 12 of 40, id 'a4d6…')`: the numbers an editor shows."""
        total = f" of {self.cell_count}" if self.cell_count else ""
        code_total = f" of {self.code_count}" if self.code_count else ""
        shown = self.saved_id
        if shown is not None and len(shown) > ID_SHOWN:
            shown = shown[: ID_SHOWN - 4] + "…"
        named = f", id {shown!r}" if shown is not None else ""
        return f"cell {self.position}{total} (code cell {self.code_position}{code_total}{named})"

    def ref(self) -> dict[str, Any]:
        """Which cell, for JSON: both numberings, the saved id and execution count, and the label."""
        return {
            "index": self.index,
            "position": self.position,
            "code_index": self.code_index,
            "code_position": self.code_position,
            "id": self.saved_id,
            "execution_count": self.execution_count,
            "label": self.label(),
        }

    @property
    def saved(self) -> bool:
        """Whether the notebook holds this cell's outputs: it has saved outputs and an execution count."""
        return self.execution_count is not None and bool(self.saved_outputs)


def load_notebook(path: str | Path) -> tuple[list[Cell], dict[str, Any]]:
    """The code cells and the metadata of an nbformat 4 notebook, or of a jupytext text notebook (`.py`,
    `.md`), or a NotebookError saying what is wrong."""
    from ..core.userfiles import PathProblem, expand, is_missing, read_regular_file

    try:
        path = expand(path, "notebook")
    except PathProblem as error:
        raise NotebookError(str(error)) from None
    if is_missing(path):
        raise NotebookError(f"{path}: no such notebook")
    try:
        text = read_regular_file(path, MAX_NOTEBOOK_BYTES, "notebook").decode("utf-8")
    except PathProblem as error:
        raise NotebookError(str(error)) from None
    except UnicodeDecodeError as error:
        raise NotebookError(f"{path}: cannot read it ({error})") from None
    if is_text_notebook(path):  # a jupytext .py/.md notebook: its cells as jupytext splits them
        try:
            notebook = read_text_notebook(text, path)
        except ValueError as error:
            raise NotebookError(str(error)) from None
        return notebook_cells(notebook, path)
    try:
        notebook = json.loads(text)
    except ValueError as error:
        raise NotebookError(f"{path} is not a notebook: it is not valid JSON ({error})") from None
    except RecursionError:
        raise NotebookError(f"{path} is not a notebook: its JSON is nested too deeply to read") from None
    if not isinstance(notebook, dict) or not isinstance(notebook.get("cells"), list):
        raise NotebookError(f"{path} is not a notebook: JSON without a list of cells")
    if notebook.get("nbformat") != 4:
        raise NotebookError(
            f"{path} is nbformat {notebook.get('nbformat')!r}; `ipyrepro check` reads nbformat 4. "
            "Open and save it in JupyterLab, or run `jupyter nbconvert --to notebook` to convert it"
        )
    return notebook_cells(notebook, path)


def notebook_cells(notebook: dict[str, Any], path: Path) -> tuple[list[Cell], dict[str, Any]]:
    """The code cells and metadata of nbformat 4 data, every field validated."""
    metadata = _notebook_metadata(notebook, path)
    for index, cell in enumerate(notebook["cells"]):
        _validate_cell(cell, index, path)
    code = [(index, cell) for index, cell in enumerate(notebook["cells"]) if cell["cell_type"] == "code"]
    cells = []
    for code_index, (index, cell) in enumerate(code):
        source = cell.get("source", "")
        source = "".join(source) if isinstance(source, list) else source
        tags = (cell.get("metadata") or {}).get("tags") or ()
        count = cell.get("execution_count")
        outputs = cell.get("outputs") or []
        cells.append(
            Cell(
                index,
                # Cells of nbformat < 4.5 have no id: a stable stand-in keeps every run's seeds the same.
                str(cell.get("id") or f"cell-{index}"),
                source,
                tuple(tags),
                code_index,
                len(notebook["cells"]),
                len(code),
                cell.get("id") or None,
                count if isinstance(count, int) and not isinstance(count, bool) else None,
                tuple(output for output in outputs if isinstance(output, dict)),
            )
        )
    return cells, metadata


MAX_NOTEBOOK_BYTES = 512 << 20  # a bound on the read: a larger "notebook" is refused, not loaded


def _notebook_metadata(notebook: dict[str, Any], path: Path) -> dict[str, Any]:
    metadata = notebook.get("metadata", {})
    if not isinstance(metadata, dict):
        raise NotebookError(
            f'{path} is malformed: the notebook\'s "metadata" must be an object, not {_json_type(metadata)}'
        )
    kernelspec = metadata.get("kernelspec")
    if kernelspec is not None:
        if not isinstance(kernelspec, dict):
            raise NotebookError(
                f"{path} is malformed: metadata.kernelspec must be an object, not {_json_type(kernelspec)}"
            )
        name = kernelspec.get("name")
        if name is not None and (not isinstance(name, str) or not name or not name.isprintable()):
            raise NotebookError(
                f"{path} is malformed: metadata.kernelspec.name must be a kernel name (text), "
                f"not {repr(name) if isinstance(name, str) else _json_type(name)}; pass --kernel NAME to choose one"
            )
    return metadata


def _validate_cell(cell: Any, index: int, path: Path) -> None:
    """Every field `check` reads, with the type nbformat 4 gives it; a wrong one names the cell and field."""

    def fail(field_name: str, expected: str, value: Any) -> NotebookError:
        return NotebookError(
            f"{path} is malformed: cell {index + 1}'s {field_name} must be {expected}, not {_json_type(value)}"
        )

    if not isinstance(cell, dict):
        raise fail("entry", "an object", cell)
    if not isinstance(cell.get("cell_type"), str):
        raise fail('"cell_type"', "text", cell.get("cell_type"))
    source = cell.get("source", "")
    if not isinstance(source, str) and not (isinstance(source, list) and all(isinstance(s, str) for s in source)):
        raise fail('"source"', "text or a list of text", source)
    metadata = cell.get("metadata", {})
    if not isinstance(metadata, dict):
        raise fail('"metadata"', "an object", metadata)
    tags = metadata.get("tags", [])
    if not isinstance(tags, list) or not all(isinstance(tag, str) for tag in tags):
        raise fail("metadata.tags", "a list of text", tags)
    cell_id = cell.get("id")
    if cell_id is not None and not isinstance(cell_id, str):
        raise fail('"id"', "text", cell_id)
    for field_name, texts in (('"source"', [source] if isinstance(source, str) else source), ('"id"', [cell_id or ""])):
        for text in texts:
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:  # a lone surrogate escaped in the JSON: no kernel could be sent it
                raise NotebookError(
                    f"{path} is malformed: cell {index + 1}'s {field_name} holds invalid Unicode (a lone surrogate)"
                ) from None


def _json_type(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "text", bool: "true/false", type(None): "null"}
    if isinstance(value, list) and value:
        inner = {_json_type(item) for item in value}
        if inner - {"text"}:
            return f"a list holding {', '.join(sorted(inner - {'text'}))}"
    return names.get(type(value), "a number" if isinstance(value, (int, float)) else type(value).__name__)
