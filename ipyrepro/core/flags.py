"""The determinism settings that `%repro on` changes: read live, applied and restored as one unit."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Any

import torch

from .torchinfo import deterministic_algorithms_mode
from .validation import DETERMINISTIC_CUBLAS_VALUES, validate_cublas_value  # noqa: F401  (re-exported)

CUBLAS_VAR = "CUBLAS_WORKSPACE_CONFIG"
DETERMINISTIC_MODES = ("off", "warn", "error")


@dataclass(frozen=True)
class Flags:
    """One reading (or one target) of every setting that `on` manages."""

    cudnn_benchmark: bool
    cudnn_deterministic: bool
    deterministic_algorithms: str  # "off" | "warn" | "error"
    cublas_workspace_config: str | None

    @classmethod
    def read(cls) -> Flags:
        """The settings in force right now, read from torch and the environment."""
        return cls(
            cudnn_benchmark=bool(torch.backends.cudnn.benchmark),
            cudnn_deterministic=bool(torch.backends.cudnn.deterministic),
            deterministic_algorithms=deterministic_algorithms_mode(),
            cublas_workspace_config=os.environ.get(CUBLAS_VAR),
        )

    def is_live(self) -> bool:
        """Whether these are the settings in force; cheap enough to ask after every cell."""
        return (
            torch.backends.cudnn.benchmark == self.cudnn_benchmark
            and torch.backends.cudnn.deterministic == self.cudnn_deterministic
            and os.environ.get(CUBLAS_VAR) == self.cublas_workspace_config
            and deterministic_algorithms_mode() == self.deterministic_algorithms
        )

    def apply(self) -> None:
        """Put these settings in force; the env var is removed when the value is None."""
        torch.backends.cudnn.benchmark = self.cudnn_benchmark
        torch.backends.cudnn.deterministic = self.cudnn_deterministic
        set_deterministic_algorithms(self.deterministic_algorithms)
        set_cublas_variable(self.cublas_workspace_config)

    def differences(self, other: Flags) -> dict[str, tuple[object, object]]:
        """Fields where `other` differs from self, as name -> (self's value, other's value)."""
        mine, theirs = asdict(self), asdict(other)
        return {name: (mine[name], theirs[name]) for name in mine if mine[name] != theirs[name]}


def set_deterministic_algorithms(mode: str) -> None:
    """`torch.use_deterministic_algorithms`, without its 2 s import of inductor: inductor follows lazily."""
    from .inductor import INDUCTOR

    validate_deterministic_mode(mode)
    torch._C._set_deterministic_algorithms(mode != "off", warn_only=mode == "warn")
    INDUCTOR.follow(mode != "off")


def set_cublas_variable(value: str | None) -> None:
    set_env_variable(CUBLAS_VAR, value)


def set_env_variable(name: str, value: str | None) -> None:
    """Set an environment variable, or remove it when `value` is None (how `off` restores "unset")."""
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


def validate_deterministic_mode(mode: str) -> str:
    if mode not in DETERMINISTIC_MODES:
        raise ValueError(f"deterministic algorithms mode must be one of {', '.join(DETERMINISTIC_MODES)}; got {mode!r}")
    return mode


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

    INDUCTOR.restore_checkpoint(checkpoint, enabled=bool(torch.are_deterministic_algorithms_enabled()))
