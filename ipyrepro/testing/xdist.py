"""pytest-xdist scheduling for `pytest -n N --ipyrepro`: all cells of a notebook go to one worker.

A notebook is checked as a whole (its cells share kernels), so splitting its cells across
workers would run the whole check once per worker. Imported only by xdist's controller.
"""

from __future__ import annotations

from xdist.scheduler import LoadScopeScheduling


class NotebookScheduling(LoadScopeScheduling):
    """xdist's `load`, except that a notebook's cells are one unit of work."""

    def _split_scope(self, nodeid: str) -> str:
        path, notebook, _ = nodeid.partition(".ipynb::")
        return path + ".ipynb" if notebook else nodeid
