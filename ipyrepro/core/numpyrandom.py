"""NumPy's legacy global RNG (`np.random.seed`), seeded without importing `numpy.random`.

NumPy 2 imports `numpy.random` (its extension modules: tens of ms in a fresh
kernel) only on first use, and torch never uses it. Nothing can draw from the
global RNG before `numpy.random` is imported, so seeding it the moment it is
imported, with the seed ipyrepro applied last, leaves exactly the state eager
seeding would have: ipyrepro seeds it now if it is imported, else puts a
one-shot import hook (importhook.py) that seeds it on import. `off` and
unloading cancel a pending seed. `capture`/`restore` treat "not imported yet,
seed S pending" as a state of its own.
"""

from __future__ import annotations

import importlib
import sys
from types import ModuleType
from typing import Any

from .importhook import ImportHook, after_import
from .records import Record

MODULE = "numpy.random"


class NotImported(Record):
    """`capture()` when `numpy.random` was not imported: the seed its import would get (None: none)."""

    pending: int | None


class LazyNumpySeed:
    """Seeds NumPy's global RNG now, or the moment `numpy.random` is imported."""

    def __init__(self) -> None:
        self._hook: ImportHook | None = None
        self._seed: int | None = None

    @property
    def pending(self) -> int | None:
        """The seed `numpy.random` gets when it is imported; None when nothing is pending."""
        return self._seed if self._hook is not None else None

    def seed(self, seed: int) -> None:
        """`np.random.seed(seed)`, deferred to its import when `numpy.random` is not imported."""
        module = sys.modules.get(MODULE)
        if module is not None:
            module.seed(seed)
        else:
            self.seed_on_import(seed)

    def seed_on_import(self, seed: int) -> None:
        """Seed `numpy.random` with `seed` when it is imported (the caller knows it is not yet)."""
        self._seed = seed
        if self._hook is None:
            self._hook = after_import(MODULE, self._imported)

    def _imported(self, module: ModuleType) -> None:
        seed, self._seed, self._hook = self._seed, None, None
        if seed is not None:
            module.seed(seed)

    def settle(self) -> None:
        """Import `numpy.random` now if a seed waits for it (the hook seeds it at once).

        For the tracer of causes/shell.py: creating NumPy's global generator on import reads OS
        entropy, which would be blamed on the user's line that imported it, although ipyrepro's
        seed replaces that state right away. Nothing draws in between, so the states are the same.
        """
        if self.pending is not None and MODULE not in sys.modules:
            importlib.import_module(MODULE)

    def cancel(self) -> None:
        """Forget a pending seed and take the hook out of the import system (`off`, unloading)."""
        if self._hook is not None:
            self._hook.remove()
        self._hook, self._seed = None, None

    def capture(self) -> Any:
        """The global RNG's state, or `NotImported(pending seed)`; never imports `numpy.random`."""
        module = sys.modules.get(MODULE)
        if module is None:
            return NotImported(self.pending)
        return module.get_state()

    def restore(self, saved: Any) -> None:
        """Put back what `capture` saw.

        Captured before `numpy.random` was imported: if it still is not, the pending seed is
        put back (or cancelled); if it was imported since, it gets the state it would have had
        then: seeded with the pending seed, or without one a fresh state from OS entropy, as
        its import leaves it.
        """
        module = sys.modules.get(MODULE)
        if isinstance(saved, NotImported):
            if module is None:
                if saved.pending is None:
                    self.cancel()
                else:
                    self.seed_on_import(saved.pending)
            else:
                module.seed(saved.pending)
            return
        self.cancel()
        if module is None:  # imported at capture, since taken out of sys.modules: import it again
            import numpy.random as module
        module.set_state(saved)


def generator_types() -> tuple[type, ...]:
    """NumPy's `Generator` and `RandomState`, if `numpy.random` is imported: nothing can be one before."""
    module = sys.modules.get(MODULE)
    return (module.Generator, module.RandomState) if module is not None else ()


NUMPY_RANDOM = LazyNumpySeed()
"""One per process, like NumPy's global RNG and the import system; `seeding` drives it."""
