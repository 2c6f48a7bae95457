"""Whether the process seeded its global RNGs: the most common cause of a notebook run as written differing.

Python's `random`, NumPy's legacy global RandomState and torch's default
generator start from an OS seed in every process. A notebook that draws from
one without ever seeding it differs run to run, yet no call in the cell reads
entropy, so the tracer alone finds nothing. `ipyrepro check --as-is` arms this
watch in its diagnostic kernel before the notebook's first cell; the tracer
then names a draw from a global RNG that nothing seeded since.

How seeding is seen, per RNG (what is robust for each):

- torch: `torch.initial_seed()` is the seed the default generator was last
  seeded with; the one it had at the import (an OS seed) is kept, and any
  `manual_seed` (`torch.manual_seed`, `torch.random.manual_seed`,
  `torch.default_generator.manual_seed`) changes it. `torch.seed()` re-seeds
  from the OS, so the watch takes its new value as unseeded again.
- Python and NumPy: their states also change with every draw, so the seeding
  calls are wrapped: `random.seed(x)` and `numpy.random.seed(x)` with a seed
  (not None). NumPy's is wrapped when `numpy.random` is imported, and so are
  its draw functions (`np.random.rand`, ...): they are Cython functions, which
  `sys.setprofile` does not see, so the tracer watches the wrappers' calls.
- ipyrepro's own seeding: with `%repro on` (or a seed applied through
  `%repro seed`, which calls the wrapped functions) every global RNG counts as
  seeded.

Restoring a saved state (`random.setstate`, `np.random.set_state`,
`torch.set_rng_state`) is not counted as seeding for Python and NumPy.
"""

from __future__ import annotations

import random
import sys
from types import ModuleType
from typing import Any

from ..core.importhook import ImportHook, after_import

PYTHON, NUMPY, TORCH = "python", "numpy", "torch"

NAMES = {
    PYTHON: "Python's global `random` generator",
    NUMPY: "NumPy's global RandomState (`np.random.*`)",
    TORCH: "torch's default generator",
}
SEEDS = {PYTHON: "random.seed(0)", NUMPY: "np.random.seed(0)", TORCH: "torch.manual_seed(0)"}

# Draws watched for each RNG (calls of C functions, as the profiler sees them).
PYTHON_DRAWS = ("random", "getrandbits")  # every `random.*` function draws through one of these
NUMPY_NOT_DRAWS = ("seed", "get_state", "set_state")  # every other `np.random.*` of the global RandomState draws
TORCH_FUNCTIONS = (
    *("rand", "randn", "randint", "randperm", "rand_like", "randn_like", "randint_like"),
    *("normal", "bernoulli", "multinomial", "poisson", "binomial"),
    *("dropout", "dropout_", "feature_dropout", "alpha_dropout", "feature_alpha_dropout", "rrelu", "rrelu_"),
)
TORCH_METHODS = (
    *("uniform_", "normal_", "random_", "bernoulli", "bernoulli_", "multinomial", "exponential_"),
    *("geometric_", "log_normal_", "cauchy_"),
)  # `nn.init.*` and module constructors (nn.Linear) draw through `uniform_`/`normal_`


class GlobalRngWatch:
    """Records, from `arm()` on, whether each global RNG was seeded."""

    def __init__(self) -> None:
        self.armed = False
        self._seeded: set[str] = set()
        self._torch_os_seed: int | None = None
        self._hooks: list[ImportHook] = []

    def arm(self) -> None:
        """Start watching (once; before the notebook's first cell, so nothing is seeded yet)."""
        if self.armed:
            return
        self.armed = True
        random.seed = self._wrap_seed(random.seed, PYTHON)  # type: ignore[method-assign]
        for name, on_import in (("numpy.random", self._numpy_imported), ("torch", self._torch_imported)):
            module = sys.modules.get(name)
            if module is not None:
                on_import(module)
            else:
                self._hooks.append(after_import(name, on_import))

    def _wrap_seed(self, seed: Any, rng: str) -> Any:
        def seeding(*args: Any, **kwargs: Any) -> Any:
            result = seed(*args, **kwargs)
            value = args[0] if args else next(iter(kwargs.values()), None)
            if value is not None:
                self._seeded.add(rng)
            else:
                self._seeded.discard(rng)  # re-seeded from the OS
            return result

        seeding.__wrapped__ = seed  # type: ignore[attr-defined]
        seeding.__name__ = getattr(seed, "__name__", "seed")
        seeding.__doc__ = getattr(seed, "__doc__", None)
        return seeding

    def _numpy_imported(self, module: ModuleType) -> None:
        """Wrap `np.random.seed`, and each draw function (`np.random.rand`, ...): NumPy's are Cython functions,
        which the profiler does not see; the tracer sees the wrapper's code (`NUMPY_DRAW_CODE`) instead."""
        rand = getattr(getattr(module, "mtrand", None), "_rand", None)
        for name in dir(module):
            function = getattr(module, name, None)
            if name.startswith("_") or name in NUMPY_NOT_DRAWS or getattr(function, "__self__", None) is not rand:
                continue
            setattr(module, name, _numpy_draw(function, name))
        module.seed = self._wrap_seed(module.seed, NUMPY)  # type: ignore[attr-defined]

    def _torch_imported(self, module: ModuleType) -> None:
        self._torch_os_seed = int(module.initial_seed())
        original = module.seed

        def seed() -> int:
            value = original()
            self._torch_os_seed = int(value)
            return value

        seed.__wrapped__ = original  # type: ignore[attr-defined]
        seed.__doc__ = original.__doc__
        module.seed = seed  # type: ignore[attr-defined]

    def seeded(self, rng: str) -> bool:
        """Whether `rng` was seeded since `arm()` (always True when not armed, or under ipyrepro's seeding)."""
        if not self.armed:
            return True
        state = getattr(sys.modules.get("ipyrepro.core.state"), "STATE", None)
        if state is not None and getattr(state, "enabled", False):
            return True
        if rng == TORCH:
            torch = sys.modules.get("torch")
            if torch is None or self._torch_os_seed is None:
                return True
            return int(torch.initial_seed()) != self._torch_os_seed
        return rng in self._seeded


def _numpy_draw(function: Any, name: str) -> Any:
    """`np.random.<name>` as a Python function (the same code object for every name, for the tracer's table)."""

    def numpy_draw(*args: Any, **kwargs: Any) -> Any:
        return function(*args, **kwargs)

    numpy_draw.__name__ = numpy_draw.__qualname__ = name
    numpy_draw.__doc__ = function.__doc__
    numpy_draw.__wrapped__ = function  # type: ignore[attr-defined]
    return numpy_draw


NUMPY_DRAW_CODE = _numpy_draw(print, "print").__code__

GLOBAL_RNGS = GlobalRngWatch()


def arm_for_kernel() -> None:
    """The diagnostic kernel's first call (`ipyrepro check --as-is`): watch the global RNGs from here on."""
    GLOBAL_RNGS.arm()
