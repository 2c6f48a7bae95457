"""Which notebooks a command line names: files as given, folders searched recursively.

Folders are walked in sorted order, skipping `.ipynb_checkpoints` (Jupyter's autosaved copies) and
hidden folders (`.git`, `.venv`, ...); inside them `.ipynb` files are notebooks, and `.py`/`.md` files
only when their header says jupytext pairs them (other scripts and pages are not notebooks). A file
named on the command line is taken as given, whatever its suffix; each notebook is listed once.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from ..core.userfiles import same_file
from .jupytextfile import TEXT_SUFFIXES, has_jupytext_header

CHECKPOINTS = ".ipynb_checkpoints"


class NoNotebooks(ValueError):
    """A path names nothing to check: missing, or a folder without notebooks."""


def find_notebooks(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """The notebooks `paths` name, in command-line order, each folder's sorted; NoNotebooks when one names none."""
    found: list[Path] = []
    seen: set[Path] = set()
    for given in paths:
        path = Path(os.path.expanduser(os.fspath(given)))
        if _is_dir(path):
            inside = list(_walk(path))
            if not inside:
                raise NoNotebooks(
                    f"{path}: no notebooks in this folder (looked for .ipynb files, and .py/.md files with a "
                    f"jupytext header, outside hidden folders and {CHECKPOINTS})"
                )
        elif not _exists(path):
            raise NoNotebooks(f"{path}: no such notebook or folder")
        else:
            inside = [path]
        for notebook in inside:
            key = notebook.resolve()
            if key not in seen:
                seen.add(key)
                found.append(notebook)
    return found


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except (OSError, ValueError):  # a name too long, a NUL byte: nothing there to check
        return False


def _walk(folder: Path) -> Iterable[Path]:
    for root, folders, files in os.walk(folder):
        folders[:] = sorted(name for name in folders if not _skipped(name))
        for name in sorted(files):
            path = Path(root, name)
            if name.startswith("."):
                continue
            if path.suffix == ".ipynb" or (path.suffix in TEXT_SUFFIXES and has_jupytext_header(path)):
                yield path


def _skipped(name: str) -> bool:
    return name == CHECKPOINTS or name.startswith(".")


def several(paths: Iterable[str | os.PathLike[str]]) -> bool:
    """Whether the command line asks about a set of notebooks (several paths, or a folder) rather than one
    file: a set gets the summary table and the list form of `--json`; one file keeps the one-report form."""
    given = list(paths)
    return len(given) != 1 or _is_dir(Path(os.path.expanduser(os.fspath(given[0]))))


def _is_dir(path: Path) -> bool:
    """is_dir that says False for a path the system refuses (too long, a NUL byte): one file's check names why."""
    try:
        return path.is_dir()
    except (OSError, ValueError):
        return False


def refuse_inputs(target: str | os.PathLike[str], notebooks: Iterable[str | os.PathLike[str]], option: str) -> None:
    """A ValueError when the file `option` would write is one of the notebooks read: inputs are never written.
    The same test and words as `userfiles.validate_outputs`, which checks one notebook's outputs."""
    written = os.path.expanduser(os.fspath(target))
    for notebook in notebooks:
        if same_file(written, os.path.expanduser(os.fspath(notebook))):
            raise ValueError(
                f"{option} {written!r} is the notebook {os.fspath(notebook)!r} (after resolving links): writing it "
                "would overwrite it; give another file"
            )
