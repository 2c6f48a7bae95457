"""`ipyrepro.compare(fn)`: call a function N times from the same seed and compare what it returns."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ..comparison.aliasing import aliased, keep_run_one
from ..comparison.report import CompareReport
from ..comparison.values import (
    Tolerance,
)
from ..core import seeding
from ..core.state import STATE
from .engine import (
    _ABSENT,
    RESULT,
    _prepare_files,
    _resolve_seed,
    _run_all,
    _RunFailed,
    _Runner,
    _validate_names,
    _validate_runs,
)

# -- a callable ------------------------------------------------------------------


class _CallableRunner(_Runner):
    def __init__(self, fn: Callable[[], Any], names: list[str] | None) -> None:
        self.fn = fn
        self.names = names
        self.subject = getattr(fn, "__qualname__", None) or repr(fn)
        self._rng: tuple[Any, ...] | None = None
        self._kept: dict[str, Any] = {}
        self._by_reference: set[str] = set()

    def execute(self) -> dict[str, Any]:
        try:
            value = self.fn()
        except Exception as error:
            raise _RunFailed(error) from error
        if isinstance(value, dict) and value and all(isinstance(key, str) for key in value):
            values = dict(value)
        else:
            values = {RESULT: value}
        if self.names is not None:
            values = {name: values.get(name, _ABSENT) for name in self.names}
        return values

    def last_value(self, values: Mapping[str, Any]) -> Any:
        return values.get(RESULT) if set(values) == {RESULT} else dict(values)

    def freeze(self, values: dict[str, Any]) -> dict[str, Any]:
        """Run 1's objects as they are where nothing else can reach them; copies of the rest."""
        self._kept, self._by_reference = keep_run_one(values)
        return self._kept

    def aliased(self, values: Mapping[str, Any]) -> list[str]:
        return aliased(self._kept, self._by_reference, values)

    def begin_diagnosis(self) -> None:
        self._rng = seeding.capture_rng()  # NumPy's without importing numpy.random (it may wait for its seed)

    def end_diagnosis(self) -> None:
        if self._rng is not None:
            seeding.restore_rng(self._rng)


def compare(
    fn: Callable[[], Any],
    runs: int = 2,
    *,
    seed: int | None = None,
    rtol: float = 0.0,
    atol: float = 0.0,
    names: Iterable[str] | None = None,
    diagnose: bool = True,
    save: str | None = None,
    check: str | None = None,
) -> CompareReport:
    """Call `fn()` `runs` times, each from the same seed, and compare what it returns.

    A dict with string keys is compared key by key (`names` picks some); anything
    else is compared as one value named "result". Bitwise by default; with
    rtol/atol, values within `torch.isclose`'s tolerance match. Returns a report
    with `.ok` and `.differences`; a run that raises is reported, not re-raised.
    """
    if not callable(fn):
        raise ValueError(f"compare needs a callable that takes no arguments; got {type(fn).__name__}")
    runs = _validate_runs(runs)
    tol = Tolerance(rtol, atol)
    explicit = _validate_names(names)
    saved = _prepare_files(save, check)
    seed = _resolve_seed(seed, STATE, saved)
    runner = _CallableRunner(fn, explicit)
    report = CompareReport(runner.subject, runs, seed, tol, restore=False)
    return _run_all(
        runner,
        runs=runs,
        seed=seed,
        tol=tol,
        state=STATE,
        explicit=explicit,
        want_diagnosis=diagnose,
        save=save,
        saved=saved,
        report=report,
    )
