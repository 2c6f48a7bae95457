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
from typing import TYPE_CHECKING, Any

from . import seeding
from .cellseeds import CellSeed, CellSeeds
from .defaults import ChildSettings, resolve_settings
from .flags import (
    CUBLAS_VAR,
    Flags,
    FlagWatch,
    inductor_checkpoint,
    recipe,
    restore_inductor,
    set_cublas_variable,
    set_cudnn,
    set_deterministic_algorithms,
    set_env_variable,
    validate_cublas_value,
    validate_deterministic_mode,
)
from .inductor import INDUCTOR
from .lazytorch import TORCH
from .lazytorch import imported as imported_torch
from .numpyrandom import NUMPY_RANDOM
from .processes import (
    CHILD_VARS,
    PERSISTENT_WORKERS_WARNING,
    child_environment,
    derive_rank_seed,
    validate_rank,
    watch_persistent_workers,
)
from .records import Record
from .torchinfo import cuda_initialized, deterministic_algorithms_mode

if TYPE_CHECKING:
    from .pendingrestore import PendingRestore
    from .status import Status

PORTABLE_STEP = "portable profile"  # its run-time half, applied at torch's import when torch is not imported yet


class ReproWarning(UserWarning):
    """A setting that defeats reproducibility, with its cause and fix."""


_UNKNOWN = object()  # the cuBLAS variable when CUDA was first initialised, if never observed
_KEEP = object()  # configure(): leave the cuBLAS variable as it is (None means unset it)


class Saved(Record):
    """What was in force before the first `on`, for `off` to restore."""

    flags: Flags
    reseed: str
    env: dict[str, str | None]  # the variables exported to child processes
    inductor: tuple[Any, ...]  # see flags.inductor_checkpoint


class Checkpoint(Record):
    """What `ReproState.checkpoint` saw, for `restore`."""

    flags: Flags
    settings: tuple[Any, ...]
    rng: tuple[Any, ...]
    env: dict[str, str | None]  # the variables exported to child processes
    inductor: tuple[Any, ...]  # see flags.inductor_checkpoint
    torch: tuple[Any, ...]  # what waits for torch's import: see LazyTorch.checkpoint


class ReproState:
    """All of ipyrepro's state for one process."""

    def __init__(self) -> None:
        self.enabled = False
        self.seed: int | None = None
        self.reseed = "off"
        self.target: Flags | None = None
        self.saved: Saved | None = None
        self.last_cell: CellSeed | None = None
        self.pending_restore: PendingRestore | None = None  # set by ipyrepro.load_checkpoint / set_rng_state
        self.cell_id_missing = False
        self.hook_errors: list[str] = []
        self._hook_error_keys: set[tuple[str, str | None, str]] = set()
        self._cublas_at_cuda_init: Any = _UNKNOWN
        self._seen_uninitialised = False
        self._warned: set[str] = set()
        self.notes_shown: set[str] = set()  # notes a notebook face has shown: each at most once per kernel
        self._listeners: list[weakref.ref] = []
        self._reseeder: seeding.Reseeder | None = None
        self._cell_seeds = CellSeeds()
        self._flag_watch = FlagWatch()
        self._flags_seen: tuple[Any, ...] | None = None  # FlagWatch's key after the last cell
        self._target_seen: Flags | None = None  # and the target then
        self.shell_hooks: dict[int, Any] = {}  # id(shell) -> the CellHooks registered on it
        self.rank: int | None = None  # set by seed_rank / enable(rank=...)
        self.rank_seed: int | None = None
        self.portable = False  # the portable profile's run-time half was applied (see core/portable.py)
        self.portable_report: Any = None  # its PortableReport: what was set, which start variables are missing
        self.persistent_worker_iterators: weakref.WeakSet = weakref.WeakSet()  # see processes.py
        self.persistent_workers_seen = False  # whether one was ever added there: a bool, read after every cell
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
        seeding.seed_all(seed, self.reseeder.seeders, reseeder=self.reseeder)
        self.seed = seed
        self.rank = self.rank_seed = None
        self._export_child_env()
        self.notify()
        return seed

    def seed_for_rank(self, base: int, rank: int) -> int:
        """Seed every RNG with the rank's derived seed; the base seed stays as it is."""
        seed = seeding.seed_all(derive_rank_seed(base, rank), self.reseeder.seeders, reseeder=self.reseeder)
        self.rank, self.rank_seed = rank, seed
        self.notify()
        return seed

    def set_reseed(self, mode: str) -> None:
        self.reseed = seeding.validate_reseed_mode(mode)
        self._export_child_env()
        self.notify()

    def restore_reseed_state(
        self,
        *,
        seed: int | None,
        reseed: str | None,
        rank: int | None,
        rank_seed: int | None,
        pending: PendingRestore | None,
    ) -> None:
        """A checkpoint's re-seed state back (`set_rng_state`): the base seed, mode and rank as at the save
        (when ipyrepro had seeded that run; else these stay), and the restore waiting for its cell."""
        if seed is not None:
            self.seed = seeding.validate_seed(seed)
            self.reseed = seeding.validate_reseed_mode(reseed or self.reseed)
            self.rank, self.rank_seed = rank, rank_seed
            self._export_child_env()
        self.pending_restore = pending
        self.notify()

    def before_cell(self, cell_id: str | None, code: str = "") -> None:
        """Re-seed for the cell about to run, per the re-seed mode. Runs before every cell: a dict lookup for
        the cell's cached seed record (cellseeds.py) and the re-seed itself, a few us.

        `cell` mode without a cell id (nbconvert, papermill, nbval, a terminal)
        derives the seed from the code, as `source` does, never the fixed base seed.
        """
        mode = self.reseed
        if mode == "off":
            return
        cell = self._cell_seeds.lookup(mode, self.seed or 0, cell_id, code)
        self.cell_id_missing = mode == "cell" and not cell_id
        pending = self.pending_restore
        if pending is not None and pending.matches(cell.seed, cell_id, cell.derivation):
            self.pending_restore = None  # the cell that was running at the save: it continues, not re-seeded
            pending.apply()
        else:
            (self._reseeder or self.reseeder).reseed(cell.seed)
            if pending is not None and not pending.warned:  # re-seeded first: a warning raised as an error
                pending.warned = True  # (-W error) must not keep the cell from its seed
                _emit(pending.elsewhere_text())
        self.last_cell = cell

    def source_seed(self, code: str) -> int:
        """The seed `source` re-seeding gives a cell with this code, from the current base seed."""
        return self._cell_seeds.source_seed(self.seed or 0, code or "")

    def after_cell(self) -> None:
        """After every cell: refresh views, and look for drift only when something it depends on changed (a
        tuple of a few C reads, compared with the last cell's, `FlagWatch`); status is built only then."""
        key, target = self._flag_watch.key(), self.target  # `on` and `off` set target (None while off)
        if key != self._flags_seen or target is not self._target_seen:
            self._flags_seen, self._target_seen = key, target
            self._after_change()
        if (
            self.persistent_workers_seen
            and self.persistent_worker_iterators.data
            and PERSISTENT_WORKERS_WARNING not in self._warned
        ):
            self.warn_new()
        if self._listeners:
            self.notify()

    def _after_change(self) -> None:
        """The cell changed a setting, started CUDA, imported torch or took it out of `sys.modules`."""
        # Before the drift check, so that torch's flags are read from torch itself, not as if never imported.
        if self.enabled and TORCH.reattach() is not None:
            _emit(TORCH_REATTACHED)
        if self._cublas_at_cuda_init is _UNKNOWN:
            self.observe_cuda()
        target = self.target
        if target is not None and self.enabled and not target.is_live():
            self.warn_new()

    # -- the recipe ----------------------------------------------------------------

    def enable(
        self,
        seed: int | None = None,
        *,
        warn_only: bool | None = None,
        cublas: str = ":4096:8",
        reseed: str | None = None,
        rank: int | None = None,
        portable: bool = False,
    ) -> Status:
        """Apply the full recipe; a second `on` keeps what the first one saved for `off`. Returns the status
        after it (read once, for its warnings and the caller).

        A setting not given follows the one rule of core/defaults.py: what is in force (a second
        `on`, a re-seed mode chosen while off, the base seed), else the kernel's IPYREPRO_SEED,
        IPYREPRO_RESEED, IPYREPRO_DETERMINISTIC, else seed 0, `cell`, `error`.
        With `rank`, every RNG is then seeded with that rank's derived seed. With `portable`, the
        portable profile's run-time settings are applied too (`set_portable`).
        """
        if seed is not None:
            seeding.validate_seed(seed)
        if not isinstance(portable, bool):
            raise ValueError(f"portable must be True or False; got {portable!r}")
        validate_cublas_value(cublas)
        if reseed is not None:
            seeding.validate_reseed_mode(reseed)
        if warn_only is not None and not isinstance(warn_only, bool):
            raise ValueError(f"warn_only must be True or False; got {warn_only!r}")
        explicit = ChildSettings(seed, reseed, None if warn_only is None else "warn" if warn_only else "error")
        seed, reseed, deterministic = resolve_settings(explicit, self.in_force())
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
            self.target = target._replace(deterministic_algorithms=deterministic)
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
        if imported_torch() is None:  # torch's DataLoader can exist only once torch is imported
            TORCH.apply_on_import("persistent-workers watch", lambda torch: watch_persistent_workers(self))
        else:
            watch_persistent_workers(self)
        if portable:
            self.set_portable()
        return self.warn_new()

    def in_force(self) -> ChildSettings:
        """What a setting left out of `on` keeps (the second source of core/defaults.py's rule): the base
        seed; the re-seed mode while on, or one chosen while off (`off` is the resting mode then, not a
        choice); the deterministic mode while on (torch's own while off was not chosen)."""
        return ChildSettings(
            seed=self.seed,
            reseed=self.reseed if self.enabled or self.reseed != "off" else None,
            deterministic=self.target.deterministic_algorithms if self.enabled and self.target is not None else None,
        )

    def cell_ran_from(self, seed: int, derivation: str) -> None:
        """`%%repro` ran this cell's body from `seed`: status shows that seed, not the one the re-seed
        hook derived from the cell's text with its `%%repro` line ("given": `%%repro --seed` or a file's)."""
        last = self.last_cell
        if last is not None and (last.seed, last.derivation) != (seed, derivation):
            self.last_cell = CellSeed(seed, last.cell_id, derivation)

    def set_portable(self) -> Any:
        """Apply the portable profile's run-time settings (threads, TF32 off, IEEE fp32); returns its report,
        which names the start-only variables this process lacks (None while torch is not imported yet: then
        they are applied at its import). `off` leaves these settings as they are."""
        from .portable import apply_runtime

        def apply(torch: Any = None) -> None:
            self.portable_report = apply_runtime()

        self.portable = True
        if imported_torch() is None:
            self.portable_report = None
            TORCH.apply_on_import(PORTABLE_STEP, apply)
        else:
            apply()
        self.notify()
        return self.portable_report

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
        self.portable = False
        TORCH.apply_on_import(PORTABLE_STEP, None)  # a profile still waiting for torch's import is dropped
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
        set_cudnn(benchmark=cudnn_benchmark, deterministic=cudnn_deterministic)  # when torch is imported, if not yet
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
        torch = imported_torch()  # cuda_initialized(), inlined: this runs after every cell until CUDA starts
        if torch is None or not torch.cuda.is_initialized():
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

    def status(self) -> Status:
        from .status import Status

        self.observe_cuda()
        return Status.read(self)

    def status_once(self, *, notes_seen: set[str] | None = None) -> Status:
        """The status as a notebook face shows it: each note at most once per kernel.

        Notes shown before (in `notes_seen`, by default those any face has shown) are left out, and the
        rest are marked shown; `status()` and the JSON keep them all.
        """
        status = self.status()
        seen = self.notes_shown if notes_seen is None else notes_seen
        status.notes = [note for note in status.notes if note not in seen]
        self.notes_shown.update(status.notes)
        return status

    def warn_new(self, *, quiet: bool = False) -> Status:
        """Emit each status warning (not note) once, as a ReproWarning; `quiet` only marks them seen.
        Returns the status read for them."""
        status = self.status()
        for text in status.warnings:
            if text not in self._warned:
                self._warned.add(text)
                if not quiet:
                    _emit(text)
        return status

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
        return Checkpoint(
            Flags.read(),
            self._settings(),
            seeding.capture_rng(),
            {name: os.environ.get(name) for name in CHILD_VARS},
            inductor_checkpoint(),
            TORCH.checkpoint(),
        )

    _SETTINGS = (
        "enabled",
        "seed",
        "reseed",
        "target",
        "saved",
        "last_cell",
        "cell_id_missing",
        "rank",
        "rank_seed",
        "pending_restore",
    )

    def _settings(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self._SETTINGS)

    def restore(self, checkpoint: Checkpoint) -> None:
        """Put back what `checkpoint` saw, whatever happened in between (even another `on`)."""
        self._apply_flags(checkpoint.flags)
        restore_inductor(checkpoint.inductor)
        for name, value in checkpoint.env.items():
            set_env_variable(name, value)
        for name, value in zip(self._SETTINGS, checkpoint.settings):
            setattr(self, name, value)
        seeding.restore_rng(checkpoint.rng)
        TORCH.restore_checkpoint(checkpoint.torch)  # what waited for torch's import (if it still does)
        self.notify()


TORCH_REATTACHED = (
    "torch was taken out of sys.modules; ipyrepro put the same module back (importing torch a second time in one "
    "process fails), so the next cells are re-seeded and `import torch` gives that module again"
)


def _emit(text: str) -> None:
    """A ReproWarning without a misleading source line; warning filters still apply."""
    warnings.warn_explicit(text, ReproWarning, filename="ipyrepro", lineno=0, module="ipyrepro")


STATE = ReproState()
TORCH.on_error = STATE.record_hook_error  # a failing step at `import torch` is reported, never raised
