"""The documented Python face of `ipyrepro check`: `ipyrepro.notebook_check.check(path, runs=2, ...)`.

The checker itself lives in `ipyrepro.notebooks`; this module only keeps the documented import path.
"""

from __future__ import annotations

from .notebooks.check import check
from .notebooks.notebookfile import NotebookError, load_notebook
from .notebooks.report import CheckReport

__all__ = ["CheckReport", "NotebookError", "check", "load_notebook"]
