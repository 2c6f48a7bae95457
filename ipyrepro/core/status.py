"""What is in force right now, read live from the libraries, with warnings that name cause and fix."""

from __future__ import annotations

import copy
import json
import os
import sys
from typing import TYPE_CHECKING, Any

from .flags import CUBLAS_VAR, Flags
from .inductor import inductor_deterministic
from .lazytorch import PENDING_TEXT
from .lazytorch import imported as imported_torch
from .portable import describe as describe_portable
from .records import Record
from .rendering import TextReport
from .torchinfo import (
    DETERMINISTIC_CUBLAS_VALUES,
    PRECISION_DEFAULTS,
    cublas_facts,
    cuda_available,
    cuda_initialized,
    installed_version,
    late_cublas_message,
    precision_flags,
    precision_key,
    torch_version,
    torch_version_text,
)

if TYPE_CHECKING:
    from .state import ReproState

DRIFT_ADVICE = {
    "cudnn_benchmark": "torch.backends.cudnn.benchmark",
    "cudnn_deterministic": "torch.backends.cudnn.deterministic",
    "deterministic_algorithms": "torch.use_deterministic_algorithms",
    "cublas_workspace_config": CUBLAS_VAR,
}


DOCS = "https://github.com/ipyrepro/ipyrepro/blob/main/docs"
NO_CELL_ID_NOTE = (
    "no cell id from this frontend, so `cell` re-seeding seeded the cell from its code, as `source` does: "
    f"{DOCS}/reseeding.md"
)
FRONTEND_NOTES = (NO_CELL_ID_NOTE,)  # they depend on the frontend: shown in status, never printed by `%repro on`


class Status(TextReport, Record, mutable=True):
    """A snapshot of ipyrepro's state and the live library settings; renders as text or HTML."""

    enabled: bool
    seed: int | None
    reseed: str
    cell_seed: int | None
    cell_id: str | None
    derivation: str | None  # how the last cell's seed was derived: "cell", "source", "fixed", "given"; None before any
    cudnn_benchmark: bool
    cudnn_deterministic: bool
    deterministic_algorithms: str
    cublas_workspace_config: str | None
    cuda_launch_blocking: str | None
    python_hash_seed: str | None
    cuda_available: bool | None  # None: torch is not imported yet (asking would import it)
    cuda_initialized: bool
    torch_version: str
    numpy_version: str
    python_version: str
    precision: dict[str, Any]
    inductor_deterministic: bool | None  # None: inductor's config is not loaded
    pending_restore: dict[str, Any] | None  # a checkpoint's RNG states waiting for their cell: seed, id, how
    torch_imported: bool  # False: the torch flags shown are what its import will get (lazytorch.py)
    portable: str  # the portable profile: "in force", "partly" or "off" (core/portable.py)
    portable_missing: list[str]  # what "partly" lacks
    drift: dict[str, dict[str, Any]]
    warnings: list[str]
    notes: list[str]

    @classmethod
    def read(cls, state: ReproState) -> Status:
        flags = Flags.read()
        pending = state.pending_restore
        portable, portable_missing = describe_portable(state.portable)
        drift = {}
        if state.enabled and state.target is not None:
            for name, (expected, actual) in state.target.differences(flags).items():
                drift[name] = {"expected": expected, "actual": actual}
        status = cls(
            enabled=state.enabled,
            seed=state.seed,
            reseed=state.reseed,
            cell_seed=state.last_cell.seed if state.last_cell else None,
            cell_id=state.last_cell.cell_id if state.last_cell else None,
            derivation=state.last_cell.derivation if state.last_cell else None,
            cudnn_benchmark=flags.cudnn_benchmark,
            cudnn_deterministic=flags.cudnn_deterministic,
            deterministic_algorithms=flags.deterministic_algorithms,
            cublas_workspace_config=flags.cublas_workspace_config,
            cuda_launch_blocking=os.environ.get("CUDA_LAUNCH_BLOCKING"),
            python_hash_seed=os.environ.get("PYTHONHASHSEED"),
            cuda_available=cuda_available(),
            cuda_initialized=cuda_initialized(),
            torch_version=torch_version_text(),
            numpy_version=_numpy_version(),
            python_version=sys.version.split()[0],  # platform.python_version(), without importing platform
            precision=precision_flags(),
            inductor_deterministic=inductor_deterministic(),
            pending_restore=None
            if pending is None
            else dict(
                seed=pending.seed, cell_id=pending.cell_id, derivation=pending.derivation, cell=pending.cell_name()
            ),
            torch_imported=imported_torch() is not None,
            portable=portable,
            portable_missing=portable_missing,
            drift=drift,
            warnings=[],
            notes=[],
        )
        status._diagnose(state)
        return status

    @staticmethod
    def signature(state: ReproState) -> tuple[Any, ...]:
        """A cheap key of everything the renderings show, read through torch's C getters (a few us).

        Equal keys mean an equal text and HTML status, so a view redraws only when its key changed.
        Left out: versions and CUDA availability, fixed for a process, and the last cell's id, not shown.
        A new line in `read` or `_diagnose` needs its inputs here too.
        """
        last = state.last_cell
        return (
            state.enabled,
            state.seed,
            state.reseed,
            None if last is None else (last.seed, last.derivation),
            state.cell_id_missing,
            state.target,
            len(state.hook_errors),
            state._cublas_at_cuda_init,
            state._flag_watch.key(),  # torch's flags (or what waits for its import), CUDA's start, the cuBLAS variable
            _env_key(),
            precision_key(),
            inductor_deterministic(),
            state.rank,
            state.rank_seed,
            None if state.pending_restore is None else state.pending_restore.seed,
            state.portable,
            _torch_threads(),
            _live_workers(state) if state.persistent_workers_seen else 0,
        )

    def _diagnose(self, state: ReproState) -> None:
        for name, values in self.drift.items():
            self.warnings.append(
                f"{DRIFT_ADVICE[name]} is now {_show(values['actual'])}, not {_show(values['expected'])} as "
                "`%repro on` set it, so results may differ run to run. "
                "Fix: undo that change, or run `%repro on` again."
            )
        self._diagnose_cublas(state)
        if self.python_hash_seed is None:
            self.notes.append(
                "PYTHONHASHSEED is not set, so str and bytes hashes (and the order of sets of strings) "
                "differ between processes. It only takes effect at interpreter start: set it in the "
                "kernel's environment, e.g. with `ipyrepro kernel install`."
            )
        if self.reseed == "cell" and state.cell_id_missing:
            self.notes.append(NO_CELL_ID_NOTE)
        from .processes import PERSISTENT_WORKERS_WARNING, live_persistent_workers

        if state.enabled and state.reseed != "off" and live_persistent_workers(state.persistent_worker_iterators):
            self.warnings.append(PERSISTENT_WORKERS_WARNING)
        if state.rank_seed is not None:
            self.notes.append(
                f"This process is rank {state.rank}, seeded with {state.rank_seed} = derive_rank_seed({self.seed}, "
                f"{state.rank}) by seed_rank; the base seed stays {self.seed}."
            )
        if self.portable == "partly":
            self.notes.append(
                PORTABLE_NOTE_START + "; missing: " + "; ".join(self.portable_missing) + ". "
                "Variables read at process start need a kernel installed with `ipyrepro kernel install --portable`."
            )
        self.warnings.extend(state.hook_errors)

    def _diagnose_cublas(self, state: ReproState) -> None:
        if not self.cuda_initialized:
            return
        try:
            at_init = state.cublas_at_cuda_init
        except LookupError:
            if self.enabled:
                self.notes.append(
                    "CUDA was initialised before ipyrepro could see it, so whether CUBLAS_WORKSPACE_CONFIG "
                    "was in place at the first cuBLAS use is not known. To be sure, restart the kernel and "
                    "run `%repro on` first."
                )
            return
        current = self.cublas_workspace_config
        if current != at_init:
            severity, text = late_cublas_message(current)
            (self.warnings if severity == "warning" else self.notes).append(text)
        elif (
            cublas_facts().needs_variable
            and self.deterministic_algorithms != "off"
            and current not in DETERMINISTIC_CUBLAS_VALUES
        ):
            self.warnings.append(
                f"Deterministic algorithms are on but CUBLAS_WORKSPACE_CONFIG is {_show(current)}: torch "
                f"{torch_version()[0]}.{torch_version()[1]} needs :4096:8 or :16:8 set before the first cuBLAS "
                "use, so cuBLAS calls raise (or stay nondeterministic with warn-only). Fix: restart the kernel "
                "and run `%repro on` first."
            )

    def setup_notes(self) -> list[str]:
        """The notes that are the same in every frontend: what `%repro on` prints into a cell's output."""
        return [note for note in self.notes if note not in FRONTEND_NOTES]

    # -- renderings ----------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return copy.deepcopy(self._asdict())

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True, allow_nan=False)

    def rows(self) -> list[tuple[str, str, str | None]]:
        """(label, value, drift note or None), the table both renderings show."""

        def drift(name: str) -> str | None:
            if name not in self.drift:
                return None
            return f"drifted: `%repro on` set {_show(self.drift[name]['expected'])}"

        if self.reseed == "off":
            reseed = "off"
        elif self.cell_seed is None:
            reseed = f"{self.reseed} (no cell run yet)"
        else:
            reseed = f"{self.reseed} (last cell seed {self.cell_seed}, {DERIVED_FROM.get(self.derivation, '')})"
        if self.cuda_available is None:
            cuda = "not known until torch is imported"
        elif not self.cuda_available:
            cuda = "not available"
        else:
            cuda = "initialised" if self.cuda_initialized else "available, not initialised"
        precision = precision_text(self.precision) if self.torch_imported else "read when torch is imported"
        algorithms = algorithms_text(self.deterministic_algorithms)
        versions = f"torch {self.torch_version}, NumPy {self.numpy_version}, Python {self.python_version}"
        pending = [] if self.torch_imported else [("torch", PENDING_TEXT, None)]
        return [
            ("seed", "not set" if self.seed is None else str(self.seed), None),
            ("re-seed before each cell", reseed, None),
            *([("pending restore", self._pending_text(), None)] if self.pending_restore else []),
            *pending,
            ("cudnn.benchmark", str(self.cudnn_benchmark), drift("cudnn_benchmark")),
            ("cudnn.deterministic", str(self.cudnn_deterministic), drift("cudnn_deterministic")),
            ("deterministic algorithms", algorithms, drift("deterministic_algorithms")),
            (CUBLAS_VAR, _show(self.cublas_workspace_config), drift("cublas_workspace_config")),
            *(
                [("inductor deterministic", str(self.inductor_deterministic), None)]
                if self.inductor_deterministic is not None
                else []
            ),
            ("CUDA_LAUNCH_BLOCKING", _show(self.cuda_launch_blocking), None),
            ("PYTHONHASHSEED", _show(self.python_hash_seed), None),
            ("CUDA", cuda, None),
            ("precision", precision, None),
            ("portable profile", self.portable, None),
            ("versions", versions, None),
        ]

    def _pending_text(self) -> str:
        pending = self.pending_restore or {}
        return (
            f"a checkpoint's RNG states wait for {pending.get('cell') or 'the cell'}, which was running at its save "
            f"(seed {pending.get('seed')}, "
            f"{DERIVED_FROM.get(pending.get('derivation'), '')}): when it runs next it continues from them, "
            "not re-seeded"
        )

    def headline(self) -> str:
        return f"ipyrepro is {'ON' if self.enabled else 'OFF'}"

    def __str__(self) -> str:
        width = max(len(label) for label, _, _ in self.rows())
        lines = [self.headline()]
        for label, value, drift in self.rows():
            lines.append(f"  {label:<{width}}  {value}" + (f"   <- {drift}" if drift else ""))
        lines += [f"Warning: {text}" for text in self.warnings]
        lines += [f"Note: {text}" for text in self.notes]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        import html  # only for this rendering: `on` needs none of it

        body = []
        for label, value, drift in self.rows():
            style = ' style="background:#fff3cd"' if drift else ""
            note = f" <b>({html.escape(drift)})</b>" if drift else ""
            body.append(
                f"<tr{style}><td style='text-align:left'>{html.escape(label)}</td>"
                f"<td style='text-align:left'><code>{html.escape(value)}</code>{note}</td></tr>"
            )
        messages = "".join(
            f"<div style='border-left:4px solid {color};padding:2px 8px;margin:4px 0'><b>{kind}:</b> "
            f"{html.escape(text)}</div>"
            for kind, color, texts in (("Warning", "#d9534f", self.warnings), ("Note", "#5bc0de", self.notes))
            for text in texts
        )
        return (
            f"<div class='ipyrepro-status'><b>{html.escape(self.headline())}</b>"
            f"<table>{''.join(body)}</table>{messages}</div>"
        )


ALGORITHMS_TEXT = {
    "error": "on (raise on nondeterministic ops)",
    "warn": "on (warn on nondeterministic ops)",
    "off": "off",
}


def algorithms_text(mode: str) -> str:
    """`torch.use_deterministic_algorithms` as a setting reads: 'error' is the mode, not a failure."""
    return ALGORITHMS_TEXT.get(mode, mode)


def precision_text(precision: dict[str, Any]) -> str:
    """Only the precision flags that differ from torch's defaults (`Status.precision` has them all)."""
    changed = [f"{name}={value}" for name, value in precision.items() if PRECISION_DEFAULTS.get(name, value) != value]
    return ", ".join(changed) if changed else "torch's defaults"


PORTABLE_NOTE_START = "The portable profile is only partly in force"

DERIVED_FROM = {
    "cell": "from its cell id",
    "source": "from its code",
    "fixed": "the base seed",
    "given": "given to %%repro",
}


_SHOWN_ENV = (CUBLAS_VAR, "CUDA_LAUNCH_BLOCKING", "PYTHONHASHSEED")
_ENV_KEYS = tuple(os.environ.encodekey(name) for name in _SHOWN_ENV) if hasattr(os.environ, "encodekey") else ()


def _env_key() -> tuple[Any, ...]:
    """The environment variables status shows, as a change key: os.environ's own (encoded) entries,
    about 0.1 us each rather than 0.5 through os.environ.get."""
    data = getattr(os.environ, "_data", None)
    if data is not None and _ENV_KEYS:
        return tuple([data.get(key) for key in _ENV_KEYS])
    return tuple([os.environ.get(name) for name in _SHOWN_ENV])


def _numpy_version() -> str:
    """NumPy's version without importing it when nothing has yet (a kernel that never uses it)."""
    numpy = sys.modules.get("numpy")
    return str(numpy.__version__) if numpy is not None else installed_version("numpy")


def _live_workers(state: ReproState) -> int:
    from .processes import live_persistent_workers

    return live_persistent_workers(state.persistent_worker_iterators)


def _show(value: object) -> str:
    return "unset" if value is None else str(value)


def _torch_threads() -> int | None:
    """torch's intra-op thread count (the portable profile fixes it); None before torch is imported."""
    torch = imported_torch()
    return None if torch is None else torch.get_num_threads()
