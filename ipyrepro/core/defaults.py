"""Where a setting nobody gave comes from: one rule for every face.

`%repro on`, `enable()`, the panel, the reproducible kernel's preload, `ipyrepro check` and the
pytest marker all resolve the seed, the re-seed mode and the deterministic-algorithms mode here:
an explicit option wins; else the value already in force (a second `on`, a mode chosen while off);
else the kernel's (IPYREPRO_SEED, IPYREPRO_RESEED, IPYREPRO_DETERMINISTIC: the reproducible
kernel's kernelspec sets them and `on` exports them to child processes); else the built-in default.
No torch import: the `ipyrepro check` client resolves a kernelspec's settings with it too.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

from .records import Record
from .validation import (
    DETERMINISTIC_VAR,
    RESEED_VAR,
    SEED_VAR,
    validate_deterministic_mode,
    validate_reseed_mode,
    validate_seed,
)


class ChildSettings(Record):
    """The settings one source gives (None: that source does not say): the options given, what is in
    force, or the variables a kernel (or a parent's `on`) set."""

    seed: int | None = None
    reseed: str | None = None
    deterministic: str | None = None


class Settings(Record):
    """A complete set, every value decided."""

    seed: int
    reseed: str
    deterministic: str


BUILT_IN = Settings(seed=0, reseed="cell", deterministic="error")
_FIELDS = ("seed", "reseed", "deterministic")


def resolve_settings(
    explicit: ChildSettings,
    in_force: ChildSettings | None = None,
    kernel: ChildSettings | Callable[[], ChildSettings] | None = None,
) -> Settings:
    """Each setting from the first source that says: `explicit`, `in_force`, `kernel`, the built-in default.

    `kernel` None reads this process's environment (a bad variable raises ValueError naming it);
    it is read only when the sources before it leave a setting open, so a full set of options
    never trips over a bad variable. A callable is called just as late.
    """
    picked = {name: _first(name, explicit, in_force) for name in _FIELDS}
    if any(value is None for value in picked.values()):
        source = settings_from_env() if kernel is None else kernel() if callable(kernel) else kernel
        picked = {name: value if value is not None else getattr(source, name) for name, value in picked.items()}
    return Settings(**{name: value if value is not None else getattr(BUILT_IN, name) for name, value in picked.items()})


def _first(name: str, *sources: ChildSettings | None) -> Any:
    return next((getattr(s, name) for s in sources if s is not None and getattr(s, name) is not None), None)


def settings_from_env(environ: Mapping[str, str] | None = None) -> ChildSettings:
    """Read and validate IPYREPRO_SEED, IPYREPRO_RESEED and IPYREPRO_DETERMINISTIC; a bad value
    raises ValueError naming the variable and the fix."""
    environ = os.environ if environ is None else environ

    def read(name: str, parse: Callable[[str], Any]) -> Any:
        text = environ.get(name)
        if text is None:
            return None
        try:
            return parse(text.strip())
        except ValueError as error:
            raise ValueError(
                f"environment variable {name}={text!r}: {error}. `%repro on` in a parent process or the "
                "kernel's kernelspec (`ipyrepro kernel install`) sets it; fix or unset it, or pass the "
                "setting explicitly."
            ) from None

    return ChildSettings(
        seed=read(SEED_VAR, lambda text: validate_seed(_int(text))),
        reseed=read(RESEED_VAR, validate_reseed_mode),
        deterministic=read(DETERMINISTIC_VAR, validate_deterministic_mode),
    )


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError("seed must be an integer with 0 <= seed < 2**32") from None
