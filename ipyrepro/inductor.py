"""Inductor's `deterministic` setting, kept in step with ipyrepro without importing inductor.

Since torch 2.10 `torch.use_deterministic_algorithms(mode)` also sets
`torch._inductor.config.deterministic = mode`, and to do so imports
`torch._inductor.config`, which pulls in most of inductor (about 2 s). ipyrepro
sets the flag itself (`torch._C._set_deterministic_algorithms`) and gives
inductor the same value: now if inductor's config is already imported, else
the moment it is imported (a one-shot import hook for exactly that module,
removed once it fires, on `off` and on unload).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from importlib.abc import Loader, MetaPathFinder
from importlib.machinery import ModuleSpec
from types import ModuleType
from typing import Any

import torch

from .torchinfo import inductor_follows_deterministic_algorithms

CONFIG_MODULE = "torch._inductor.config"
_NOT_LOADED = object()  # save(): inductor's config was not imported yet
_NOTHING = object()


def inductor_deterministic() -> bool | None:
    """Inductor's `deterministic` config when inductor's config is loaded; None otherwise (never imports it)."""
    config = sys.modules.get(CONFIG_MODULE)
    value = getattr(config, "deterministic", None) if config is not None else None
    return value if isinstance(value, bool) else None


class _FollowOnImport(MetaPathFinder):
    """Finds nothing itself: wraps the real loader of `torch._inductor.config` to run a callback after it."""

    def __init__(self, on_import: Any) -> None:
        self.on_import = on_import

    def find_spec(self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None) -> Any:
        if fullname != CONFIG_MODULE:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _CallbackLoader(spec.loader, self)
                return spec
        return None


class _CallbackLoader(Loader):
    def __init__(self, loader: Loader, finder: _FollowOnImport) -> None:
        self.loader = loader
        self.finder = finder

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
        self.finder.on_import(module)

    def __getattr__(self, name: str) -> Any:  # get_source, get_filename, ...: the real loader's
        return getattr(self.loader, name)


class InductorDeterminism:
    """What `torch.use_deterministic_algorithms` does to inductor, done lazily; `save`/`restore` for `off`."""

    def __init__(self) -> None:
        self._finder: _FollowOnImport | None = None
        self._saved: Any = _NOTHING  # the value before the first `on`, or _NOT_LOADED
        self._default_at_import: Any = _NOTHING  # inductor's own value, read before the hook changed it

    @property
    def pending(self) -> bool:
        """Whether the import hook is waiting for inductor's config to be imported."""
        return self._finder is not None

    def follow(self, enabled: bool) -> None:
        """Give inductor the deterministic-algorithms setting, as torch >= 2.10 does, without importing it."""
        if not inductor_follows_deterministic_algorithms():
            return
        config = sys.modules.get(CONFIG_MODULE)
        if config is not None:
            config.deterministic = enabled
        elif self._finder is None:
            self._finder = _FollowOnImport(self._imported)
            sys.meta_path.insert(0, self._finder)

    def _imported(self, config: ModuleType) -> None:
        self.remove_hook()
        self._default_at_import = getattr(config, "deterministic", _NOTHING)
        # The live flag, not a remembered one: whatever set it last (on, off, configure) wins, as in torch.
        config.deterministic = bool(torch.are_deterministic_algorithms_enabled())

    def remove_hook(self) -> None:
        if self._finder is not None:
            if self._finder in sys.meta_path:
                sys.meta_path.remove(self._finder)
            self._finder = None

    def save(self) -> None:
        """Remember inductor's value before the first `on` (or that it was not loaded yet)."""
        value = inductor_deterministic()
        self._saved = _NOT_LOADED if value is None else value
        self._default_at_import = _NOTHING

    def restore(self) -> None:
        """Put back what `save` saw: inductor's own value, or its import-time default if it came in later."""
        saved, self._saved = self._saved, _NOTHING
        if saved is _NOTHING:
            return
        if saved is _NOT_LOADED:
            self.remove_hook()
            saved = self._default_at_import
        config = sys.modules.get(CONFIG_MODULE)
        if config is not None and saved is not _NOTHING:
            config.deterministic = saved


INDUCTOR = InductorDeterminism()
"""One per process, like the import system it hooks into; `flags` and `state` drive it."""
