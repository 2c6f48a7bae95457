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
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

from . import seeding
from .flags import (
    CUBLAS_VAR,
    Flags,
    inductor_checkpoint,
    recipe,
    restore_inductor,
    set_cublas_variable,
    set_deterministic_algorithms,
    set_env_variable,
    validate_cublas_value,
    validate_deterministic_mode,
)
from .inductor import INDUCTOR
from .numpyrandom import NUMPY_RANDOM
from .processes import (
    CHILD_VARS,
    PERSISTENT_WORKERS_WARNING,
    ChildSettings,
    child_environment,
    derive_rank_seed,
    settings_from_env,
    validate_rank,
    watch_persistent_workers,
)
from .torchinfo import cuda_initialized, deterministic_algorithms_mode


class ReproWarning(UserWarning):
    """A setting that defeats reproducibility, with its cause and fix."""


_UNKNOWN = object()  # the cuBLAS variable when CUDA was first initialised, if never observed
_KEEP = object()  # configure(): leave the cuBLAS variable as it is (None means unset it)


class CellSeed(NamedTuple):
    """The seed the last cell started from, the cell id sent with it (None: none), and how the seed was derived.

    `derivation` is "cell" (from the cell id), "source" (from the cell's code)
    or "fixed" (the base seed).
    """

    seed: int
    cell_id: str | None
    derivation: str = "fixed"


@dataclass(frozen=True)
class Saved:
    """What was in force before the first `on`, for `off` to restore."""

    flags: Flags
    reseed: str
    env: dict[str, str | None] = field(default_factory=dict)  # the variables exported to child processes
    inductor: tuple[Any, ...] = ()  # see flags.inductor_checkpoint


@dataclass(frozen=True)
class Checkpoint:
    """What `ReproState.checkpoint` saw, for `restore`."""

    flags: Flags
    settings: tuple[Any, ...]
    rng: tuple[Any, ...]
    env: dict[str, str | None] = field(default_factory=dict)  # the variables exported to child processes
    inductor: tuple[Any, ...] = ()  # see flags.inductor_checkpoint


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
        self._source_seeds: dict[tuple[int, str], int] = {}
        self.shell_hooks: dict[int, Any] = {}  # id(shell) -> the CellHooks registered on it
        self.rank: int | None = None  # set by seed_rank / enable(rank=...)
        self.rank_seed: int | None = None
        self.persistent_worker_iterators: weakref.WeakSet = weakref.WeakSet()  # see processes.py
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
        self.rank = self.rank_seed = None
        self._export_child_env()
        self.notify()
        return seed

    def seed_for_rank(self, base: int, rank: int) -> int:
        """Seed every RNG with the rank's derived seed; the base seed stays as it is."""
        seed = seeding.seed_all(derive_rank_seed(base, rank), self.reseeder.seeders)
        self.rank, self.rank_seed = rank, seed
        self.notify()
        return seed

    def set_reseed(self, mode: str) -> None:
        self.reseed = seeding.validate_reseed_mode(mode)
        self._export_child_env()
        self.notify()

    def before_cell(self, cell_id: str | None, code: str = "") -> None:
        """Re-seed for the cell about to run, per the re-seed mode. Runs before every cell (a few us).

        `cell` mode without a cell id (nbconvert, papermill, nbval, a terminal)
        derives the seed from the code, as `source` does, never the fixed base seed.
        """
        mode = self.reseed
        if mode == "off":
            return
        seed, derivation = self.CELL_SEED[mode](self, cell_id, code)
        self.cell_id_missing = mode == "cell" and not cell_id
        (self._reseeder or self.reseeder).reseed(seed)
        last = self.last_cell
        if last is None or last.seed != seed or last.cell_id != cell_id or last.derivation != derivation:
            self.last_cell = CellSeed(seed, cell_id, derivation)

    def _fixed_seed(self, cell_id: str | None, code: str) -> tuple[int, str]:
        return self.seed or 0, "fixed"

    def _cell_seed(self, cell_id: str | None, code: str) -> tuple[int, str]:
        if not cell_id:
            return self._source_seed(cell_id, code)
        return _cached(self._cell_seeds, self.seed or 0, cell_id, seeding.derive_cell_seed), "cell"

    def _source_seed(self, cell_id: str | None, code: str) -> tuple[int, str]:
        return self.source_seed(code), "source"

    def source_seed(self, code: str) -> int:
        """The seed `source` re-seeding gives a cell with this code, from the current base seed."""
        return _cached(self._source_seeds, self.seed or 0, code or "", seeding.derive_source_seed)

    # The seed a cell starts from and how it was derived, by re-seed mode ("off" never gets here).
    CELL_SEED: dict[str, Callable[[ReproState, str | None, str], tuple[int, str]]] = {
        "fixed": _fixed_seed,
        "cell": _cell_seed,
        "source": _source_seed,
    }

    def after_cell(self) -> None:
        """After every cell: refresh views and warn about drift, reading only a few flags."""
        if self._cublas_at_cuda_init is _UNKNOWN:
            self.observe_cuda()
        target = self.target
        if target is not None and self.enabled and not target.is_live():
            self.warn_new()
        if self.persistent_worker_iterators and PERSISTENT_WORKERS_WARNING not in self._warned:
            self.warn_new()
        if self._listeners:
            self.notify()

    # -- the recipe ----------------------------------------------------------------

    def enable(
        self,
        seed: int | None = None,
        *,
        warn_only: bool | None = None,
        cublas: str = ":4096:8",
        reseed: str | None = None,
        rank: int | None = None,
    ) -> None:
        """Apply the full recipe; a second `on` keeps what the first one saved for `off`.

        `reseed=None` keeps the re-seed mode in force when ipyrepro is already on (a notebook's
        own `%repro on` in a kernel installed with `--reseed source` stays `source`). Otherwise a
        setting not given comes from what a parent's `on` exported (IPYREPRO_SEED,
        IPYREPRO_RESEED, IPYREPRO_DETERMINISTIC), else seed 0, `cell`, `error`.
        With `rank`, every RNG is then seeded with that rank's derived seed.
        """
        given = seed is not None and warn_only is not None and reseed is not None
        inherited = ChildSettings() if given else settings_from_env()
        seed = seeding.validate_seed(next(v for v in (seed, inherited.seed, 0) if v is not None))
        validate_cublas_value(cublas)
        if reseed is None and self.enabled and self.reseed != "off":
            reseed = self.reseed
        reseed = seeding.validate_reseed_mode(reseed or inherited.reseed or "cell")
        if warn_only is None:
            deterministic = inherited.deterministic or "error"
        elif isinstance(warn_only, bool):
            deterministic = "warn" if warn_only else "error"
        else:
            raise ValueError(f"warn_only must be True or False; got {warn_only!r}")
        if rank is not None:
            validate_rank(rank, "rank")
        current = Flags.read()
        before = (self.saved, self.target, self.enabled, self.reseed, self.seed, self.rank, self.rank_seed)
        rng = seeding.capture_rng()
        env_before = {name: os.environ.get(name) for name in CHILD_VARS}
        inductor = inductor_checkpoint()
        try:
            if self.saved is None:
                self.saved = Saved(current, self.reseed, dict(env_before), inductor)
                INDUCTOR.save()
            target = recipe(warn_only=deterministic == "warn", cublas=cublas, current=current)
            self.target = replace(target, deterministic_algorithms=deterministic)
            self._apply_flags(self.target)
            self.enabled = True
            self.reseed = reseed
            self.seed_all(seed)
            if rank is not None:
                self.seed_for_rank(seed, rank)
        except BaseException as error:  # all or nothing: e.g. a seeder plugin raised
            self.saved, self.target, self.enabled, self.reseed, self.seed, self.rank, self.rank_seed = before
            self._apply_flags(current)
            restore_inductor(inductor)  # its setting, and an import hook that waited before (or none)
            for name, value in env_before.items():
                set_env_variable(name, value)
            seeding.restore_rng(rng)
            with contextlib.suppress(AttributeError, TypeError):
                error.add_note("(`on` was undone: flags, env vars, re-seed mode, seed and RNG states are as before)")
            self.notify()
            raise
        watch_persistent_workers(self)
        self.warn_new()

    def disable(self) -> None:
        """Restore every flag, env var and the re-seed mode to what they were before `on`.

        A NumPy seed still waiting for `numpy.random`'s import is dropped: nothing of ipyrepro
        stays in the import system, and a later import leaves NumPy's own (unseeded) state."""
        NUMPY_RANDOM.cancel()
        if self.saved is not None:
            self._apply_flags(self.saved.flags)
            INDUCTOR.restore()
            if self.saved.inductor:  # and an import hook that waited before `on` (configure() while off)
                restore_inductor(self.saved.inductor)
            self.reseed = self.saved.reseed
            for name, value in self.saved.env.items():
                set_env_variable(name, value)
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
        self._export_child_env()
        self.notify()
        self.warn_new(quiet=True)  # asked for on purpose: status and the panel show the drift

    def _export_child_env(self) -> None:
        """While on, keep the variables child processes read (see processes.py) in step with the state."""
        if self.enabled:
            for name, value in child_environment(self.seed or 0, self.reseed, deterministic_algorithms_mode()).items():
                set_env_variable(name, value)

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
        dead = False
        for ref in self._listeners:
            callback = ref()
            if callback is None:
                dead = True
                continue
            try:
                callback()
            except Exception as error:  # a broken view must not break the state change
                self.record_hook_error("view refresh", error)
        if dead:  # a closed-over panel was collected: forget it
            self._listeners[:] = [ref for ref in self._listeners if ref() is not None]

    def reset(self) -> None:
        """Forget everything (tests use it); the settings in force are left as they are."""
        self.__init__()

    # -- scoped use (the pytest marker) --------------------------------------------

    def checkpoint(self) -> Checkpoint:
        """Everything `on` and seeding change, as it is now: flags, env vars (the exported ones too),
        this object's settings, inductor's setting and import hook, and every RNG state, for `restore`
        to put back exactly."""
        import random

        import torch

        cuda = torch.cuda.get_rng_state_all() if cuda_initialized() else None
        return Checkpoint(
            Flags.read(),
            self._settings(),
            (random.getstate(), NUMPY_RANDOM.capture(), torch.get_rng_state(), cuda),
            {name: os.environ.get(name) for name in CHILD_VARS},
            inductor_checkpoint(),
        )

    _SETTINGS = ("enabled", "seed", "reseed", "target", "saved", "last_cell", "cell_id_missing", "rank", "rank_seed")

    def _settings(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self._SETTINGS)

    def restore(self, checkpoint: Checkpoint) -> None:
        """Put back what `checkpoint` saw, whatever happened in between (even another `on`)."""
        import random

        import torch

        self._apply_flags(checkpoint.flags)
        restore_inductor(checkpoint.inductor)
        for name, value in checkpoint.env.items():
            set_env_variable(name, value)
        for name, value in zip(self._SETTINGS, checkpoint.settings):
            setattr(self, name, value)
        python, numpy, cpu, cuda = checkpoint.rng
        random.setstate(python)
        NUMPY_RANDOM.restore(numpy)
        torch.set_rng_state(cpu)
        if cuda is not None and cuda_initialized():
            torch.cuda.set_rng_state_all(cuda)
        self.notify()


def _cached(cache: dict[tuple[int, str], int], base: int, key: str, derive: Callable[[int, str], int]) -> int:
    """A derived seed, computed once per (base, key): the hook runs before every cell."""
    seed = cache.get((base, key))
    if seed is None:
        if len(cache) >= 4096:
            cache.clear()
        seed = cache[base, key] = derive(base, key)
    return seed


def _emit(text: str) -> None:
    """A ReproWarning without a misleading source line; warning filters still apply."""
    warnings.warn_explicit(text, ReproWarning, filename="ipyrepro", lineno=0, module="ipyrepro")


STATE = ReproState()
