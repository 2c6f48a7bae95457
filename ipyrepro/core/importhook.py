"""Run a callback right after a module is first imported, without importing it (a one-shot import hook).

ipyrepro sets state in modules that cost a lot to import and that a notebook
may never use (inductor's config, `numpy.random`): instead of importing them
it puts an `ImportHook` first on `sys.meta_path`. The hook finds nothing
itself; when the module is imported it wraps the real loader, runs the
callback right after the module's code, puts the real loader back and takes
itself off `sys.meta_path`. `remove()` cancels it (for `off` and unloading).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType
from typing import Any


class ImportHook:
    """Calls `callback(module)` once, right after the module named `name` is imported.

    A meta path finder by its methods, as importlib asks of one (the `importlib.abc` base classes
    would only make defining these classes slower).
    """

    def __init__(self, name: str, callback: Callable[[ModuleType], None]) -> None:
        self.name = name
        self.callback = callback
        self.active = False

    def __repr__(self) -> str:
        return f"<ipyrepro ImportHook for {self.name!r}{'' if self.active else ' (removed)'}>"

    def install(self) -> None:
        if self not in sys.meta_path:
            sys.meta_path.insert(0, self)
        self.active = True

    def remove(self) -> None:
        """Take the hook out of the import system; an import already under way no longer calls back."""
        self.active = False
        if self in sys.meta_path:
            sys.meta_path.remove(self)

    def find_spec(self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None) -> Any:
        if fullname != self.name or not self.active:
            return None
        # Several hooks may wait for one module (`on`'s and the causes watch's, for torch): the first on
        # sys.meta_path answers for all of them, in the order they were installed, and none asks another
        # (two hooks asking each other would never end).
        hooks = [f for f in sys.meta_path if isinstance(f, ImportHook) and f.name == fullname and f.active]
        for finder in sys.meta_path:
            if isinstance(finder, ImportHook) or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _CallbackLoader(spec.loader, hooks[::-1])
                return spec
        return None

    def _fire(self, module: ModuleType) -> None:
        if self.active:
            self.remove()
            self.callback(module)


class _CallbackLoader:
    def __init__(self, loader: Any, hooks: list[ImportHook]) -> None:
        self.loader = loader
        self.hooks = hooks  # fired in this order: the first installed first

    def create_module(self, spec: ModuleSpec) -> ModuleType | None:
        return self.loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self.loader.exec_module(module)
        # Put the real loader back so that nothing later sees this wrapper (a config module
        # refuses attribute assignment, hence its __dict__).
        module.__dict__["__loader__"] = self.loader
        spec = module.__dict__.get("__spec__")
        if spec is not None:
            spec.loader = self.loader
        failed: list[BaseException] = []
        for hook in self.hooks:  # each hook fires, even after another one's callback raised
            try:
                hook._fire(module)
            except BaseException as error:
                failed.append(error)
        if failed:
            raise failed[0]

    def __getattr__(self, name: str) -> Any:  # get_source, get_filename, ...: the real loader's
        return getattr(self.loader, name)


def after_import(name: str, callback: Callable[[ModuleType], None]) -> ImportHook:
    """Call `callback(module)` once, right after `name` is next imported; `.remove()` on the result cancels.

    The caller checks `sys.modules` first: a module already imported is not imported again.
    """
    hook = ImportHook(name, callback)
    hook.install()
    return hook
