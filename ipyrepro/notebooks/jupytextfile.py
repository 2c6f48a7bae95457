"""Text notebooks (jupytext's `.py` percent and light formats, `.md`), read through jupytext when it is installed.

A text notebook holds code and markdown, never outputs or execution counts: its cells are numbered as
jupytext splits them, and there is nothing saved to compare with (`--against-saved` says so).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

TEXT_SUFFIXES = (".py", ".md")  # what `ipyrepro check` and `lint` read through jupytext
EXTRA = "pip install 'ipyrepro[jupytext]'"
_HEADER_BYTES = 4096  # where jupytext writes its YAML header


class JupytextMissing(ValueError):
    """A text notebook was given and jupytext is not installed."""


def is_text_notebook(path: str | Path) -> bool:
    """Whether `path` is read as a jupytext notebook (by its suffix)."""
    return Path(path).suffix.lower() in TEXT_SUFFIXES


def has_jupytext_header(path: Path) -> bool:
    """Whether a `.py`/`.md` file found in a folder declares itself a jupytext notebook (its YAML header
    names jupytext, as `jupytext --set-formats` writes it); other scripts and pages in the folder are not notebooks."""
    try:
        with path.open("rb") as handle:
            head = handle.read(_HEADER_BYTES).decode("utf-8", errors="replace")
    except OSError:
        return False
    return "jupytext:" in head and ("text_representation" in head or "formats:" in head)


def read_text_notebook(text: str, path: Path) -> dict[str, Any]:
    """The notebook jupytext makes of `text` (the suffix picks the format), as nbformat 4 JSON data."""
    try:
        import jupytext
    except ImportError:
        raise JupytextMissing(
            f"{path} is a text notebook ({path.suffix}); reading it needs jupytext: {EXTRA}"
        ) from None
    try:
        notebook = jupytext.reads(text, fmt=path.suffix.lstrip(".").lower())
    except Exception as error:  # jupytext's parsers raise many kinds; each is "cannot read it"
        raise ValueError(f"{path}: jupytext cannot read it ({type(error).__name__}: {error})") from None
    data = dict(notebook)
    data["cells"] = [_plain_cell(cell) for cell in notebook.cells]
    data["metadata"] = dict(notebook.metadata)
    return data


def _plain_cell(cell: Any) -> dict[str, Any]:
    """A cell as plain JSON data, without the random ids nbformat may give it: the stand-ins stay stable."""
    return {
        "cell_type": cell.cell_type,
        "source": cell.source,
        "metadata": dict(cell.get("metadata") or {}),
        **({"outputs": [], "execution_count": None} if cell.cell_type == "code" else {}),
    }


def no_saved_outputs(path: str | Path) -> str:
    """Why `--against-saved` cannot check a text notebook, and what to do instead."""
    return (
        f"{path} is a text notebook: it holds no saved outputs, so --against-saved has nothing to compare with; "
        "leave --against-saved out to compare fresh runs with each other, or check the paired .ipynb "
        "(jupytext --set-formats ipynb,py:percent)"
    )
