"""The determinism settings that `%repro on` changes: read live, applied and restored as one unit.

Before torch is imported, the torch flags are what its import will give (what waits in
lazytorch.py, else torch's defaults), and applying them leaves them waiting for that import;
the cuBLAS variable, which torch reads when it starts, is set at once either way.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from types import ModuleType
from typing import Any

from .lazytorch import TORCH, Settings
from .lazytorch import imported as imported_torch
from .records import Record
from .torchinfo import deterministic_algorithms_mode
from .validation import (  # noqa: F401  (re-exported)
    DETERMINISTIC_CUBLAS_VALUES,
    DETERMINISTIC_MODES,
    validate_cublas_value,
    validate_deterministic_mode,
)

CUBLAS_VAR = "CUBLAS_WORKSPACE_CONFIG"
# os.environ's own (encoded) key for the cuBLAS variable: reading its entry skips encoding the name
_CUBLAS_KEY = os.environ.encodekey(CUBLAS_VAR) if hasattr(os.environ, "encodekey") else None


class Flags(Record):
    """One reading (or one target) of every setting that `on` manages."""

    cudnn_benchmark: bool
    cudnn_deterministic: bool
    deterministic_algorithms: str  # "off" | "warn" | "error"
    cublas_workspace_config: str | None

    @classmethod
    def read(cls) -> Flags:
        """The settings in force right now, read from torch (or what its import will give) and the environment."""
        torch = imported_torch()
        if torch is None:
            return cls(*TORCH.settings_at_import(), cublas_workspace_config=os.environ.get(CUBLAS_VAR))
        return cls(
            cudnn_benchmark=bool(torch.backends.cudnn.benchmark),
            cudnn_deterministic=bool(torch.backends.cudnn.deterministic),
            deterministic_algorithms=deterministic_algorithms_mode(),
            cublas_workspace_config=os.environ.get(CUBLAS_VAR),
        )

    def is_live(self) -> bool:
        """Whether these are the settings in force; cheap enough to ask after every cell."""
        torch = imported_torch()
        if torch is None:
            return self == Flags.read()
        return (
            torch.backends.cudnn.benchmark == self.cudnn_benchmark
            and torch.backends.cudnn.deterministic == self.cudnn_deterministic
            and os.environ.get(CUBLAS_VAR) == self.cublas_workspace_config
            and deterministic_algorithms_mode() == self.deterministic_algorithms
        )

    def apply(self) -> None:
        """Put these settings in force (torch's when it is imported); the env var is removed when the value is None."""
        validate_deterministic_mode(self.deterministic_algorithms)
        set_cublas_variable(self.cublas_workspace_config)
        torch = imported_torch()
        if torch is None:
            TORCH.set_on_import(self.torch_settings())
        else:
            apply_settings(torch, self.torch_settings())

    def torch_settings(self) -> Settings:
        return Settings(self.cudnn_benchmark, self.cudnn_deterministic, self.deterministic_algorithms)

    def differences(self, other: Flags) -> dict[str, tuple[object, object]]:
        """Fields where `other` differs from self, as name -> (self's value, other's value)."""
        mine, theirs = self._asdict(), other._asdict()
        return {name: (mine[name], theirs[name]) for name in mine if mine[name] != theirs[name]}


class FlagWatch:
    """A cheap key of what the work after a cell depends on, read after every cell to tell whether any may
    have changed: which torch is in `sys.modules`, whether CUDA has started, the settings `on` manages.

    Equal keys mean an equal `Flags.read()` (and the same torch, CUDA not started since), so the work is
    done only when the key changed. Four of torch's C getters, bound once (no walk through
    `torch.backends`), torch.cuda's own `_initialized` flag (what `is_initialized()` reads first) and
    os.environ's own encoded entry for the cuBLAS variable: under a microsecond, where `Flags.is_live`
    costs three times that.
    """

    def __init__(self) -> None:
        self._torch: ModuleType | None = None  # the torch the getters are bound to
        self._getters: tuple[Any, ...] = ()
        data = getattr(os.environ, "_data", None)  # os.environ's own dict, which its setters keep with the process's
        own = isinstance(data, dict) and _CUBLAS_KEY is not None
        self._cublas: Callable[[], Any] = functools.partial(data.get, _CUBLAS_KEY) if own else _read_cublas

    def key(self) -> tuple[Any, ...]:
        cublas = self._cublas()
        torch = sys.modules.get("torch")
        if torch is None or (torch is not self._torch and not self._bind(torch)):
            return (None, TORCH.settings_at_import(), cublas)  # what waits for its import is what status reads
        benchmark, deterministic, algorithms, warn_only, cuda = self._getters
        return (torch, cuda._initialized, benchmark(), deterministic(), algorithms(), warn_only(), cublas)

    def _bind(self, module: ModuleType) -> bool:
        """Bind the getters of the torch in `sys.modules` once it is wholly imported; False until then."""
        torch = imported_torch()
        if torch is not module:
            return False
        C = torch._C
        self._getters = (
            C._get_cudnn_benchmark,
            C._get_cudnn_deterministic,
            C._get_deterministic_algorithms,
            C._get_deterministic_algorithms_warn_only,
            torch.cuda if hasattr(torch.cuda, "_initialized") else _CudaStarted(torch.cuda),
        )
        self._torch = torch
        return True


def _read_cublas() -> str | None:
    return os.environ.get(CUBLAS_VAR)


class _CudaStarted:
    """`torch.cuda._initialized` for a torch without that flag: `is_initialized()`, as an attribute."""

    def __init__(self, cuda: ModuleType) -> None:
        self._cuda = cuda

    @property
    def _initialized(self) -> bool:
        return bool(self._cuda.is_initialized())


def apply_settings(torch: ModuleType, settings: Settings, inductor: bool = True) -> None:
    """Put `settings` in force in an imported torch; inductor follows lazily unless `inductor` is False
    (after unloading, when inductor's own import hook is gone)."""
    torch.backends.cudnn.benchmark = settings.cudnn_benchmark
    torch.backends.cudnn.deterministic = settings.cudnn_deterministic
    if inductor:
        set_deterministic_algorithms(settings.deterministic_algorithms)
    else:
        mode = settings.deterministic_algorithms
        torch._C._set_deterministic_algorithms(mode != "off", warn_only=mode == "warn")


TORCH.apply_settings = apply_settings  # what the import hook does with settings that waited (lazytorch.py)


def set_deterministic_algorithms(mode: str) -> None:
    """`torch.use_deterministic_algorithms`, without its 2 s import of inductor: inductor follows lazily.

    Before torch is imported, the mode waits for its import with the other torch flags."""
    from .inductor import INDUCTOR

    validate_deterministic_mode(mode)
    torch = imported_torch()
    if torch is None:
        TORCH.set_on_import(TORCH.settings_at_import()._replace(deterministic_algorithms=mode))
        return
    torch._C._set_deterministic_algorithms(mode != "off", warn_only=mode == "warn")
    INDUCTOR.follow(mode != "off")


def set_cudnn(*, benchmark: bool | None = None, deterministic: bool | None = None) -> None:
    """Set cuDNN's flags (None leaves one as it is); before torch is imported, they wait for its import."""
    torch = imported_torch()
    if torch is None:
        pending = TORCH.settings_at_import()
        TORCH.set_on_import(
            pending._replace(
                cudnn_benchmark=pending.cudnn_benchmark if benchmark is None else benchmark,
                cudnn_deterministic=pending.cudnn_deterministic if deterministic is None else deterministic,
            )
        )
        return
    if benchmark is not None:
        torch.backends.cudnn.benchmark = benchmark
    if deterministic is not None:
        torch.backends.cudnn.deterministic = deterministic


def set_cublas_variable(value: str | None) -> None:
    set_env_variable(CUBLAS_VAR, value)


def set_env_variable(name: str, value: str | None) -> None:
    """Set an environment variable, or remove it when `value` is None (how `off` restores "unset")."""
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


def recipe(*, warn_only: bool, cublas: str, current: Flags) -> Flags:
    """The settings `on` puts in force; a deterministic cuBLAS value the user already set is kept."""
    kept = current.cublas_workspace_config
    return Flags(
        cudnn_benchmark=False,
        cudnn_deterministic=True,
        deterministic_algorithms="warn" if warn_only else "error",
        cublas_workspace_config=kept if kept in DETERMINISTIC_CUBLAS_VALUES else cublas,
    )


def inductor_checkpoint() -> tuple[Any, ...]:
    """Inductor's setting and import hook as they are now, for a scoped change to put back exactly."""
    from .inductor import INDUCTOR

    return INDUCTOR.checkpoint()


def restore_inductor(checkpoint: tuple[Any, ...]) -> None:
    """Put back what `inductor_checkpoint` saw; call it after the flags are back."""
    from .inductor import INDUCTOR

    INDUCTOR.restore_checkpoint(checkpoint, enabled=deterministic_algorithms_mode() != "off")
