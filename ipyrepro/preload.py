"""The extension the reproducible kernel (and `ipyrepro check`) loads before the first cell.

It installs the same magics and hooks as `%load_ext ipyrepro`, under another
name, so IPython does not count `ipyrepro` as loaded: a notebook's own
`%load_ext ipyrepro` then loads it silently (changing nothing) instead of
printing "already loaded" in this kernel but not in others.
"""

from __future__ import annotations

from typing import Any

from .state import STATE


def load_ipython_extension(ipython: Any) -> None:
    from .hooks import install

    install(ipython, STATE)


def unload_ipython_extension(ipython: Any) -> None:
    from .hooks import uninstall

    uninstall(ipython, STATE)
