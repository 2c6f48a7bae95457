"""torch's determinism settings and seed, applied the moment torch is imported, without importing it.

`import torch` costs seconds, and a notebook (or a kernel `ipyrepro check`
starts) may never use it. Nothing can draw from torch's generators or run a
torch op before torch is imported, so setting its flags and seeding it the
moment it is imported, with what ipyrepro applied last, leaves exactly the
state eager application would have: ipyrepro applies them now if torch is
imported, else keeps them pending behind a one-shot import hook on `torch`
(importhook.py) that applies them right after torch's own `__init__` ran, in
the same cell. What must be in place before torch starts (environment
variables such as CUBLAS_WORKSPACE_CONFIG) is set at once by the callers.

What waits: the cuDNN flags and the deterministic-algorithms mode (`Settings`),
the seed for `torch.manual_seed` (every device), and named extra steps other
features add (`apply_on_import`, e.g. a portable-numerics profile). `capture`
and `restore` treat "not imported yet, seed S pending" as a state of its own.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from types import ModuleType
from typing import Any

from .importhook import ImportHook, after_import
from .records import Record

MODULE = "torch"


class Settings(Record):
    """The torch flags `on` manages (the cuBLAS variable is an env var: set at once, never pending)."""

    cudnn_benchmark: bool
    cudnn_deterministic: bool
    deterministic_algorithms: str  # "off" | "warn" | "error"


TORCH_DEFAULTS = Settings(cudnn_benchmark=False, cudnn_deterministic=False, deterministic_algorithms="off")
"""What `import torch` leaves in force (torch reads no environment variable for any of them)."""

PENDING_TEXT = "torch not imported yet; applied when it is"


class NotImported(Record):
    """`capture()` when torch was not imported: the seed its import would get (None: none)."""

    pending: int | None


def imported() -> ModuleType | None:
    """torch, if it is imported; never imports it. While another thread is still running torch's `__init__`,
    None: until then the module has no `cuda`, `backends`... (the importing thread itself sees it, so the
    import's own callbacks work)."""
    module = sys.modules.get(MODULE)
    if module is not None and getattr(getattr(module, "__spec__", None), "_initializing", False):
        return None if _importing_elsewhere() else module
    return module


def _importing_elsewhere() -> bool:
    """Whether another thread holds torch's import lock (it is running torch's `__init__`)."""
    import threading
    from importlib import _bootstrap

    ref = getattr(_bootstrap, "_module_locks", {}).get(MODULE)
    lock = ref() if ref is not None else None
    owner = getattr(lock, "owner", None)
    return owner is not None and owner != threading.get_ident()


class LazyTorch:
    """Applies torch settings and seeds now, or the moment torch is imported."""

    def __init__(self) -> None:
        self._hook: ImportHook | None = None
        self._settings: Settings | None = None
        self._seed: int | None = None
        self._extra: dict[str, Callable[[ModuleType], None]] = {}
        self.inductor_follows = True  # False after unloading: inductor's own import hook is gone then
        self.on_error: Callable[[str, BaseException], None] | None = None  # the state records hook errors
        # How settings are put in force in an imported torch: flags.py sets it (`Flags.apply` does the same
        # eagerly), so that this module needs nothing above it.
        self.apply_settings: Callable[[ModuleType, Settings, bool], None] | None = None
        self._seen: ModuleType | None = None  # the torch module last seen imported, for `reattach`

    def reattach(self) -> ModuleType | None:
        """torch taken out of `sys.modules` (`del sys.modules['torch']`) while its module lives on: put it back,
        so ipyrepro goes on seeding it and reading its flags, and `import torch` gives that same module (a second
        import of torch in one process fails). Returns the module when it did; cheap enough for every cell."""
        module = sys.modules.get(MODULE)
        if module is not None:
            if module is not self._seen and imported() is module:
                self._seen = module
            return None
        if self._seen is None:
            return None
        sys.modules[MODULE] = self._seen
        return self._seen

    # -- what waits ----------------------------------------------------------------

    @property
    def pending(self) -> bool:
        """Whether anything waits for torch's import."""
        return self._hook is not None

    @property
    def pending_seed(self) -> int | None:
        return self._seed if self._hook is not None else None

    def settings_at_import(self) -> Settings:
        """The settings torch will have when it is imported: what waits, else torch's own defaults."""
        return self._settings or TORCH_DEFAULTS

    def set_on_import(self, settings: Settings) -> None:
        """Apply `settings` when torch is imported (the caller knows it is not yet); torch's defaults need nothing."""
        self._settings = None if settings == TORCH_DEFAULTS else settings
        self._sync_hook()

    def seed_on_import(self, seed: int | None) -> None:
        """`torch.manual_seed(seed)` when torch is imported (None: forget a pending seed)."""
        self._seed = seed
        self._sync_hook()

    def apply_on_import(self, name: str, step: Callable[[ModuleType], None] | None) -> None:
        """A named extra step run with torch right after the flags, before the seed (None removes it).

        The seam for features with their own torch settings (a portable-numerics profile): they
        keep eager and deferred application the same by calling this when `imported()` is None.
        """
        if step is None:
            self._extra.pop(name, None)
        else:
            self._extra[name] = step
        self._sync_hook()

    def cancel(self) -> None:
        """Forget everything pending and take the hook out of the import system."""
        self._settings, self._seed = None, None
        self._extra.clear()
        self._sync_hook()

    def _sync_hook(self) -> None:
        wanted = self._settings is not None or self._seed is not None or bool(self._extra)
        if wanted and self._hook is None and MODULE not in sys.modules:  # not for an import already under way
            self._hook = after_import(MODULE, self._imported)
        elif not wanted and self._hook is not None:
            self._hook.remove()
            self._hook = None

    # -- the import ----------------------------------------------------------------

    def _imported(self, torch: ModuleType) -> None:
        settings, seed, extra = self._settings, self._seed, list(self._extra.items())
        self._hook, self._settings, self._seed = None, None, None
        self._extra.clear()
        steps: list[tuple[str, Callable[[], Any]]] = []
        if settings is not None and self.apply_settings is not None:
            apply, follows = self.apply_settings, self.inductor_follows
            steps.append(("torch settings", lambda: apply(torch, settings, follows)))
        steps += [(name, lambda step=step: step(torch)) for name, step in extra]
        if seed is not None:
            steps.append(("torch seed", lambda: torch.manual_seed(seed)))
        for where, step in steps:
            try:
                step()
            except Exception as error:  # never break the user's `import torch`
                if self.on_error is None:
                    raise
                self.on_error(f"import torch ({where})", error)

    # -- scoped use: rollback and checkpoints ----------------------------------------

    def capture(self) -> Any:
        """torch's CPU and (initialised) CUDA RNG states, or `NotImported(pending seed)`; never imports torch."""
        torch = imported()
        if torch is None:
            return NotImported(self.pending_seed)
        cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
        return torch.get_rng_state(), cuda

    def restore(self, saved: Any) -> None:
        """Put back what `capture` saw.

        Captured before torch was imported: if it still is not, the pending seed is put back
        (or forgotten); if it was imported since, torch gets the state it would have had then:
        seeded with the pending seed, or without one a fresh seed from the OS, as its import leaves it.
        """
        torch = imported()
        if isinstance(saved, NotImported):
            if torch is None:
                self.seed_on_import(saved.pending)
            elif saved.pending is None:
                torch.seed()
            else:
                torch.manual_seed(saved.pending)
            return
        if torch is None:  # imported at capture and taken out of sys.modules since: nothing to restore into
            return
        cpu, cuda = saved
        torch.set_rng_state(cpu)
        if cuda is not None and torch.cuda.is_initialized():
            torch.cuda.set_rng_state_all(cuda)

    def checkpoint(self) -> tuple[Any, ...]:
        """Everything pending (settings, seed, extra steps), for `restore_checkpoint`."""
        return self._settings, self._seed, dict(self._extra), self.inductor_follows

    def restore_checkpoint(self, checkpoint: tuple[Any, ...]) -> None:
        """Put back what waited at `checkpoint` (only while torch is still not imported)."""
        settings, seed, extra, follows = checkpoint
        self.inductor_follows = follows
        if imported() is not None:
            return
        self._settings, self._seed, self._extra = settings, seed, dict(extra)
        self._sync_hook()


TORCH = LazyTorch()
"""One per process, like torch and the import system; `flags`, `seeding` and `state` drive it."""
