"""The extension the reproducible kernel (and `ipyrepro check`) loads before the first cell.

It installs the same magics and hooks as `%load_ext ipyrepro`, under another
name, so IPython does not count `ipyrepro` as loaded: a notebook's own
`%load_ext ipyrepro` then loads it silently (changing nothing) instead of
printing "already loaded" in this kernel but not in others.

Users there still unload it as `%unload_ext ipyrepro`: while preloaded, the
shell's extension manager takes that name for this module, and unloading
either name forgets both (they are one set of hooks and magics).
"""

from __future__ import annotations

from typing import Any

from .core.state import STATE

NAMES = ("ipyrepro", __name__)


class _UnloadEitherName:
    """Wraps one extension manager's `unload_extension` (an instance attribute, removed on unload)."""

    def __init__(self, manager: Any) -> None:
        self.manager = manager
        self.unload = type(manager).unload_extension.__get__(manager)

    def __call__(self, module_str: str) -> Any:
        loaded = self.manager.loaded
        if module_str == NAMES[0] and module_str not in loaded and NAMES[1] in loaded:
            module_str = NAMES[1]
        result = self.unload(module_str)
        if result is None and module_str in NAMES:
            loaded.difference_update(NAMES)
            vars(self.manager).pop("unload_extension", None)
        return result


def load_ipython_extension(ipython: Any) -> None:
    from .jupyter.hooks import install

    install(ipython, STATE)
    manager = getattr(ipython, "extension_manager", None)
    if manager is not None and not isinstance(vars(manager).get("unload_extension"), _UnloadEitherName):
        manager.unload_extension = _UnloadEitherName(manager)


def unload_ipython_extension(ipython: Any) -> None:
    from .jupyter.hooks import uninstall

    uninstall(ipython, STATE)
