"""Inductor's `deterministic` setting, kept in step with ipyrepro without importing inductor.

Since torch 2.10 `torch.use_deterministic_algorithms(mode)` also sets
`torch._inductor.config.deterministic = mode`, and to do so imports
`torch._inductor.config`, which pulls in most of inductor (about 2 s). ipyrepro
sets the flag itself (`torch._C._set_deterministic_algorithms`) and gives
inductor the same value: now if inductor's config is already imported, else
the moment it is imported (a one-shot import hook for exactly that module,
removed once it fires, on `off` and on unload; see importhook.py).
"""

from __future__ import annotations

import sys
from types import ModuleType
from typing import Any

import torch

from .importhook import ImportHook, after_import
from .torchinfo import inductor_follows_deterministic_algorithms

CONFIG_MODULE = "torch._inductor.config"
_NOT_LOADED = object()  # save(): inductor's config was not imported yet
_NOTHING = object()


def inductor_deterministic() -> bool | None:
    """Inductor's `deterministic` config when inductor's config is loaded; None otherwise (never imports it)."""
    config = sys.modules.get(CONFIG_MODULE)
    value = getattr(config, "deterministic", None) if config is not None else None
    return value if isinstance(value, bool) else None


class InductorDeterminism:
    """What `torch.use_deterministic_algorithms` does to inductor, done lazily; `save`/`restore` for `off`."""

    def __init__(self) -> None:
        self._hook: ImportHook | None = None
        self._saved: Any = _NOTHING  # the value before the first `on`, or _NOT_LOADED
        self._default_at_import: Any = _NOTHING  # inductor's own value, read before the hook changed it

    @property
    def pending(self) -> bool:
        """Whether the import hook is waiting for inductor's config to be imported."""
        return self._hook is not None

    def follow(self, enabled: bool) -> None:
        """Give inductor the deterministic-algorithms setting, as torch >= 2.10 does, without importing it."""
        if not inductor_follows_deterministic_algorithms():
            return
        config = sys.modules.get(CONFIG_MODULE)
        if config is not None:
            config.deterministic = enabled
        elif self._hook is None:
            self._hook = after_import(CONFIG_MODULE, self._imported)

    def _imported(self, config: ModuleType) -> None:
        self.remove_hook()
        self._default_at_import = getattr(config, "deterministic", _NOTHING)
        # The live flag, not a remembered one: whatever set it last (on, off, configure) wins, as in torch.
        config.deterministic = bool(torch.are_deterministic_algorithms_enabled())

    def remove_hook(self) -> None:
        if self._hook is not None:
            self._hook.remove()
            self._hook = None

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

    def checkpoint(self) -> tuple[Any, ...]:
        """Inductor's setting (None: its config not imported), whether the hook waits, and what this
        object keeps for `off` (everything but the hook)."""
        kept = {name: value for name, value in vars(self).items() if name != "_hook"}
        return inductor_deterministic(), self.pending, kept

    def restore_checkpoint(self, checkpoint: tuple[Any, ...], *, enabled: bool) -> None:
        """Put back what `checkpoint` saw; `enabled`: the deterministic flag now (what the hook would give)."""
        value, pending, kept = checkpoint
        config = sys.modules.get(CONFIG_MODULE)
        if config is not None and value is None:  # imported in between: the value it would have had since
            if pending:
                value = enabled
            else:
                value = self._default_at_import if isinstance(self._default_at_import, bool) else None
        if config is not None and value is not None:
            config.deterministic = value
        if not pending:
            self.remove_hook()
        elif config is None:
            self.follow(enabled)  # waits again (a no-op if it still does)
        vars(self).update(kept)


INDUCTOR = InductorDeterminism()
"""One per process, like the import system it hooks into; `flags` and `state` drive it."""
