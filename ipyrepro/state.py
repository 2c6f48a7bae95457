"""The one state object: what `on` set, what `off` restores, and what the hooks have seen.

Every face (magics, panel, hooks, CLI) calls methods here; nothing else
keeps state. It lives in this submodule so `%reload_ext ipyrepro`, which
re-imports only the package's top module, keeps it.
"""

from __future__ import annotations

import contextlib
import os
import warnings
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

from . import seeding
from .flags import (
    CUBLAS_VAR,
    Flags,
    recipe,
    set_cublas_variable,
    set_deterministic_algorithms,
    validate_cublas_value,
    validate_deterministic_mode,
)
from .torchinfo import cuda_initialized


class ReproWarning(UserWarning):
    """A setting that defeats reproducibility, with its cause and fix."""


_UNKNOWN = object()  # the cuBLAS variable when CUDA was first initialised, if never observed
_KEEP = object()  # configure(): leave the cuBLAS variable as it is (None means unset it)


class CellSeed(NamedTuple):
    """The seed the last cell started from, and the cell id it came from (None: no id sent)."""

    seed: int
    cell_id: str | None


@dataclass(frozen=True)
class Saved:
    """What was in force before the first `on`, for `off` to restore."""

    flags: Flags
    reseed: str


class ReproState:
    """All of ipyrepro's state for one process."""

    def __init__(self) -> None:
        self.enabled = False
        self.seed: int | None = None
        self.reseed = "off"
        self.target: Flags | None = None
        self.saved: Saved | None = None
        self.last_cell: CellSeed | None = None
        self.cell_id_missing = False
        self.hook_errors: list[str] = []
        self._hook_error_keys: set[tuple[str, str | None, str]] = set()
        self._cublas_at_cuda_init: Any = _UNKNOWN
        self._seen_uninitialised = False
        self._warned: set[str] = set()
        self._listeners: list[weakref.ref] = []
        self._reseeder: seeding.Reseeder | None = None
        self._cell_seeds: dict[tuple[int, str], int] = {}
        self.shell_hooks: dict[int, Any] = {}  # id(shell) -> the CellHooks registered on it
        self.observe_cuda()

    # -- seeding -------------------------------------------------------------------

    @property
    def reseeder(self) -> seeding.Reseeder:
        if self._reseeder is None:
            self._reseeder = seeding.Reseeder(seeding.load_seeders())
        return self._reseeder

    def seed_all(self, seed: int) -> int:
        """Seed every RNG now and make `seed` the base seed for re-seeding."""
        seed = seeding.validate_seed(seed)
        seeding.seed_all(seed, self.reseeder.seeders)
        self.seed = seed
        self.notify()
        return seed

    def set_reseed(self, mode: str) -> None:
        self.reseed = seeding.validate_reseed_mode(mode)
        self.notify()

    def before_cell(self, cell_id: str | None) -> None:
        """Re-seed for the cell about to run, per the re-seed mode. Runs before every cell."""
        mode = self.reseed
        if mode == "off":
            return
        base = self.seed or 0
        if mode == "cell" and cell_id:
            seed = self._cell_seeds.get((base, cell_id))
            if seed is None:
                if len(self._cell_seeds) >= 4096:
                    self._cell_seeds.clear()
                seed = self._cell_seeds[base, cell_id] = seeding.derive_cell_seed(base, cell_id)
            self.cell_id_missing = False
        else:
            seed = base
            self.cell_id_missing = mode == "cell"
        self.reseeder.reseed(seed)
        self.last_cell = CellSeed(seed, cell_id)

    def after_cell(self) -> None:
        """After every cell: refresh views and warn about drift, reading only a few flags."""
        if self._cublas_at_cuda_init is _UNKNOWN:
            self.observe_cuda()
        if self.enabled and self.target is not None and not self.target.is_live():
            self.warn_new()
        if self._listeners:
            self.notify()

    # -- the recipe ----------------------------------------------------------------

    def enable(
        self,
        seed: int = 0,
        *,
        warn_only: bool = False,
        cublas: str = ":4096:8",
        reseed: str = "cell",
    ) -> None:
        """Apply the full recipe; a second `on` keeps what the first one saved for `off`."""
        seed = seeding.validate_seed(seed)
        validate_cublas_value(cublas)
        seeding.validate_reseed_mode(reseed)
        if not isinstance(warn_only, bool):
            raise ValueError(f"warn_only must be True or False; got {warn_only!r}")
        current = Flags.read()
        before = (self.saved, self.target, self.enabled, self.reseed, self.seed, seeding.capture_rng())
        try:
            if self.saved is None:
                self.saved = Saved(current, self.reseed)
            self.target = recipe(warn_only=warn_only, cublas=cublas, current=current)
            self._apply_flags(self.target)
            self.enabled = True
            self.reseed = reseed
            self.seed_all(seed)
        except BaseException as error:  # all or nothing: e.g. a seeder plugin raised
            self.saved, self.target, self.enabled, self.reseed, self.seed, rng = before
            self._apply_flags(current)
            seeding.restore_rng(rng)
            with contextlib.suppress(AttributeError, TypeError):
                error.add_note("(`on` was undone: flags, env vars, re-seed mode, seed and RNG states are as before)")
            self.notify()
            raise
        self.warn_new()

    def disable(self) -> None:
        """Restore every flag, env var and the re-seed mode to what they were before `on`."""
        if self.saved is not None:
            self._apply_flags(self.saved.flags)
            self.reseed = self.saved.reseed
        self.enabled = False
        self.target = None
        self.saved = None
        self.notify()
        self.warn_new()

    def configure(
        self,
        *,
        cudnn_benchmark: bool | None = None,
        cudnn_deterministic: bool | None = None,
        deterministic_algorithms: str | None = None,
        cublas_workspace_config: Any = _KEEP,
    ) -> None:
        """Change single settings (the panel's toggles); None leaves a setting as it is.

        `cublas_workspace_config=None` unsets the variable. A change away from
        what `on` set shows as drift in status.
        """
        for name, value in (("cudnn_benchmark", cudnn_benchmark), ("cudnn_deterministic", cudnn_deterministic)):
            if value is not None and not isinstance(value, bool):
                raise ValueError(f"{name} must be True or False; got {value!r}")
        if deterministic_algorithms is not None:
            validate_deterministic_mode(deterministic_algorithms)
        if cublas_workspace_config is not _KEEP:
            validate_cublas_value(cublas_workspace_config)
        import torch

        if cudnn_benchmark is not None:
            torch.backends.cudnn.benchmark = cudnn_benchmark
        if cudnn_deterministic is not None:
            torch.backends.cudnn.deterministic = cudnn_deterministic
        if deterministic_algorithms is not None:
            set_deterministic_algorithms(deterministic_algorithms)
        if cublas_workspace_config is not _KEEP:
            self._set_cublas(cublas_workspace_config)
        self.notify()
        self.warn_new(quiet=True)  # asked for on purpose: status and the panel show the drift

    def _apply_flags(self, flags: Flags) -> None:
        self._set_cublas(flags.cublas_workspace_config)
        flags.apply()

    def _set_cublas(self, value: str | None) -> None:
        self.observe_cuda()
        current = os.environ.get(CUBLAS_VAR)
        if self._cublas_at_cuda_init is _UNKNOWN and current != value and cuda_initialized():
            # CUDA came up before we could watch, and this is a change: the value until now is the evidence.
            self._cublas_at_cuda_init = current
        set_cublas_variable(value)

    # -- what the hooks watch ------------------------------------------------------

    def observe_cuda(self) -> None:
        """Remember the cuBLAS variable as it was when CUDA was first seen initialised.

        Read after the cell that initialised CUDA, so a cell that sets the
        variable and then uses the GPU counts as setting it in time.
        """
        if self._cublas_at_cuda_init is not _UNKNOWN:
            return
        if not cuda_initialized():
            self._seen_uninitialised = True
        elif self._seen_uninitialised:
            self._cublas_at_cuda_init = os.environ.get(CUBLAS_VAR)

    @property
    def cublas_at_cuda_init(self) -> str | None:
        """The cuBLAS variable when CUDA was initialised; raises LookupError when not known."""
        if self._cublas_at_cuda_init is _UNKNOWN:
            raise LookupError("CUDA is not initialised, or was initialised before ipyrepro could see it")
        return self._cublas_at_cuda_init

    def record_hook_error(self, where: str, error: BaseException) -> None:
        """A hook failed: keep the error for status and warn once per hook, plugin and error type
        (a message that holds the seed would otherwise warn on every cell); the user's cell still runs."""
        plugin = getattr(error, "ipyrepro_seeder", None)
        key = (where, plugin, type(error).__qualname__)
        if key in self._hook_error_keys:
            return
        self._hook_error_keys.add(key)
        cause = f"the seeder plugin {plugin!r} raised " if plugin else ""
        text = (
            f"ipyrepro's {where} hook failed ({cause}{type(error).__name__}: {error}); the cell ran without it. "
            "Run `%repro status` to see what is in force, and `%reload_ext ipyrepro` to reset."
        )
        self.hook_errors.append(text)
        _emit(text)

    # -- status and listeners ------------------------------------------------------

    def status(self):
        from .status import Status

        self.observe_cuda()
        return Status.read(self)

    def warn_new(self, *, quiet: bool = False) -> None:
        """Emit each status warning (not note) once, as a ReproWarning; `quiet` only marks them seen."""
        for text in self.status().warnings:
            if text not in self._warned:
                self._warned.add(text)
                if not quiet:
                    _emit(text)

    def subscribe(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call `callback` after every change and every cell; held weakly. Returns an unsubscribe."""
        ref = weakref.WeakMethod(callback) if hasattr(callback, "__self__") else weakref.ref(callback)
        self._listeners.append(ref)
        return lambda: self._listeners.remove(ref) if ref in self._listeners else None

    def notify(self) -> None:
        alive = []
        for ref in self._listeners:
            callback = ref()
            if callback is None:
                continue
            alive.append(ref)
            try:
                callback()
            except Exception as error:  # a broken view must not break the state change
                self.record_hook_error("view refresh", error)
        self._listeners[:] = alive

    def reset(self) -> None:
        """Forget everything (tests use it); the settings in force are left as they are."""
        self.__init__()


def _emit(text: str) -> None:
    """A ReproWarning without a misleading source line; warning filters still apply."""
    warnings.warn_explicit(text, ReproWarning, filename="ipyrepro", lineno=0, module="ipyrepro")


STATE = ReproState()
