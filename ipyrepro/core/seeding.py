"""Seeding every RNG a notebook draws from, once or before every cell.

`seed_all` is the reference: it calls `random.seed`, `np.random.seed` and
`torch.manual_seed`. `Reseeder` leaves exactly the same RNG states but skips
the slow part of `torch.manual_seed` (which formats a stack trace each call
to queue CUDA's lazy seeding), because it runs before every cell. Neither
imports `numpy.random` or torch: until the notebook imports one, its seed
waits for the import (numpyrandom.py, lazytorch.py).
"""

from __future__ import annotations

import hashlib
import random
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .lazytorch import TORCH
from .lazytorch import imported as imported_torch
from .numpyrandom import MODULE as NUMPY_RANDOM_MODULE
from .numpyrandom import NUMPY_RANDOM
from .seederplugins import GROUP as SEEDER_GROUP
from .seederplugins import registering_distributions
from .validation import RESEED_MODES, SEED_LIMIT, validate_reseed_mode, validate_seed  # noqa: F401  (re-exported)

Seeder = Callable[[int], None]


def derive_cell_seed(base: int, cell_id: str) -> int:
    """The seed a cell starts from in `cell` mode.

    The first 4 bytes (big-endian) of BLAKE2b over "<base>:<cell id>" with the
    personalisation b"ipyrepro": stable across processes and machines (unlike
    `hash`), different for different cells, unchanged when a cell is edited.
    """
    digest = hashlib.blake2b(f"{base}:{cell_id}".encode(), digest_size=4, person=b"ipyrepro").digest()
    return int.from_bytes(digest, "big")


def normalize_source(code: str) -> str:
    """The cell's code as every frontend sends it: line endings as LF, no trailing whitespace or newlines.

    Only what frontends are known to change: Windows editors send CRLF, a
    terminal IPython ends a multi-line block with an empty line, and editors
    differ on a final newline. Everything else (indentation, comments,
    blank lines inside the cell) is part of the code and changes the seed.
    """
    return code.replace("\r\n", "\n").replace("\r", "\n").rstrip()


def derive_source_seed(base: int, code: str) -> int:
    """The seed a cell starts from in `source` mode (and in `cell` mode when no cell id is sent).

    The first 4 bytes (big-endian) of BLAKE2b over "<base>:<normalised code>"
    (UTF-8) with the personalisation b"ipyrepro-source": every frontend sends
    the same code, so every frontend derives the same seed; cells with
    identical code get identical seeds.
    """
    text = f"{base}:{normalize_source(code)}"
    digest = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=4, person=b"ipyrepro-source").digest()
    return int.from_bytes(digest, "big")


def load_seeders() -> list[Seeder]:
    """Callables that other libraries register under the `ipyrepro.seeders` entry-point group.

    `importlib.metadata.entry_points()` parses every installed package's entry points (30-40 ms
    with a data-science stack); seederplugins.py finds the few packages that register seeders
    (from a cache while nothing was installed), and only those are parsed, in the same order and
    with the same rule for duplicates (the first on sys.path wins).
    """
    found: list[Seeder] = []
    for path in registering_distributions():
        from importlib.metadata import PathDistribution  # only for a package that registers seeders

        entries = PathDistribution(Path(path)).entry_points.select(group=SEEDER_GROUP)
        found += [NamedSeeder(entry.name, entry.load()) for entry in entries]
    return found


class NamedSeeder:
    """A registered seeder with its entry-point name, so its errors can say which plugin raised them."""

    def __init__(self, name: str, seeder: Seeder) -> None:
        self.name = name
        self.seeder = seeder

    def __call__(self, seed: int) -> None:
        self.seeder(seed)

    def __repr__(self) -> str:
        return f"<ipyrepro seeder {self.name!r}: {self.seeder!r}>"


def seeder_name(seeder: Seeder) -> str:
    if isinstance(seeder, NamedSeeder):
        return seeder.name
    return getattr(seeder, "__qualname__", None) or repr(seeder)


def call_seeders(seeders: list[Seeder] | tuple[Seeder, ...], seed: int) -> None:
    """Call each seeder; an error keeps its own type, tagged (`ipyrepro_seeder`) and noted with the plugin's name."""
    for seeder in seeders:
        try:
            seeder(seed)
        except KeyboardInterrupt:
            raise
        except BaseException as error:
            if getattr(error, "ipyrepro_seeder", None) is None:
                name = seeder_name(seeder)
                try:
                    error.ipyrepro_seeder = name  # type: ignore[attr-defined]
                    error.add_note(f"(raised by the ipyrepro seeder plugin {name!r}, called with seed {seed})")
                except (AttributeError, TypeError):
                    pass
            raise


def capture_rng() -> tuple[object, ...]:
    """The states `seed_all` changes (CUDA's only when initialised: reading it would initialise it;
    NumPy's and torch's, or their pending seeds, without importing `numpy.random` or torch)."""
    return random.getstate(), NUMPY_RANDOM.capture(), TORCH.capture()


def restore_rng(saved: tuple[object, ...]) -> None:
    random.setstate(saved[0])  # type: ignore[arg-type]
    NUMPY_RANDOM.restore(saved[1])
    TORCH.restore(saved[2])


def seed_all(seed: int, seeders: list[Seeder] | tuple[Seeder, ...] = (), *, reseeder: Reseeder | None = None) -> int:
    """Seed Python, NumPy's global RNG, torch on every device, and any registered seeders.

    torch, when not imported yet, is seeded the moment it is (with the seed applied last). With
    `reseeder`, torch is seeded through its fast path: the same states, without the stack trace
    `torch.manual_seed` formats for CUDA's lazy seeding (a few ms, most of `enable()` after `import torch`)."""
    seed = validate_seed(seed)
    random.seed(seed)
    NUMPY_RANDOM.seed(seed)
    torch = imported_torch()
    if reseeder is not None:
        reseeder.reseed_torch(seed)
    elif torch is None:
        TORCH.seed_on_import(seed)
    else:
        torch.manual_seed(seed)
    call_seeders(seeders, seed)
    return seed


def _other_accelerators() -> bool:
    """Whether an accelerator other than CUDA could hold a generator torch.manual_seed would seed."""
    import torch  # only called once torch is imported

    checks = (
        lambda: torch.backends.mps.is_available(),
        lambda: torch.xpu.is_available(),
        lambda: torch.mtia.is_available(),
        lambda: torch._C._get_privateuse1_backend_name() != "privateuseone",
    )
    for check in checks:
        try:
            if check():
                return True
        except Exception:  # an attribute this torch lacks, or a backend that can't answer
            continue
    return False


class Reseeder:
    """The per-cell fast path of `seed_all`, with the same resulting RNG states.

    CUDA is seeded directly once initialised; before that, a lazy callback
    like the one `torch.cuda.manual_seed_all` queues is queued once, without
    formatting a stack trace, and later cells only change the seed it applies. Python's
    generator is seeded through the C-level `seed` that `random.seed` wraps: restoring a
    cached state reads 25 KiB of boxed integers, which between real cells (caches cold, a
    new seed per cell) costs more than computing the state again; only a seed given twice in
    a row (`fixed` mode, a cell rerun) restores the state the first one left. NumPy's generator
    is seeded directly (its `set_state` is ten times slower than seeding). torch's CPU generator
    is set from the state its seed gives, kept per seed (`TORCH_STATES_KEPT` of them, 5 KiB
    each): a copy, where `manual_seed` computes the state again.
    Until `numpy.random` (or torch) is imported, its seed is left for its import.
    """

    TORCH_STATES_KEPT = 256  # seeds whose torch CPU state is kept: a notebook's cells several times over

    def __init__(self, seeders: list[Seeder] | None = None) -> None:
        self.seeders = list(seeders or [])
        self._cuda_seed = 0  # what the queued CUDA seeding applies (see _seed_cuda)
        self._cuda_callback = self._seed_cuda_generators  # one bound method: the queue holds this object
        self._cuda_queued: Any = None  # the entry _seed_cuda queued with torch's lazy seed tracker
        self._python = random._inst  # the generator behind random.random() & co.
        self._python_seed = super(random.Random, self._python).seed  # _random.Random.seed, bound
        self._python_set = super(random.Random, self._python).setstate  # _random.Random.setstate, bound
        self._python_last_seed = -1  # the last seed given (no seed is negative)
        self._python_state: tuple[int, ...] | None = None  # the state it gives, once it came twice in a row
        self._numpy_seed: Callable[[int], None] | None = _numpy_seed_method()  # None: not imported yet
        self._full_torch_seed = False
        self._torch_generator: Any = None  # torch.default_generator; None: torch not imported yet
        self._torch_states: dict[int, Any] = {}  # seed -> the CPU generator's state right after manual_seed(seed)
        self._cuda: Any = None  # torch.cuda, bound with torch
        self._cuda_tracker: Any = None  # torch.cuda's lazy seed tracker
        self._bind_torch()

    def _bind_torch(self) -> bool:
        """Look up torch's fast seeding path once torch is imported; False while it is not."""
        torch = imported_torch()
        if torch is None:
            return False
        self._full_torch_seed = _other_accelerators() or not _has_lazy_cuda_seeding(torch)
        self._cuda = torch.cuda
        self._cuda_tracker = getattr(torch.cuda, "_lazy_seed_tracker", None)  # torch's one, for the process
        self._torch_generator = torch.default_generator
        self._torch_states = {}
        return True

    def reseed(self, seed: int) -> None:
        """Every generator as `seed_all(seed)` leaves it. Runs before every cell, so it reads what it bound
        once: between cells, each attribute walk costs cache misses."""
        python = self._python
        if seed != self._python_last_seed:
            self._python_seed(seed)  # `random.seed(seed)` for an int seed: the C-level seeding it wraps
            self._python_last_seed, self._python_state = seed, None
        elif self._python_state is not None:
            self._python_set(self._python_state)  # the same seed again: its state back, a copy
        else:
            self._python_seed(seed)
            self._python_state = super(random.Random, python).getstate()
        python.gauss_next = None  # what `Random.seed` adds
        numpy_seed = self._numpy_seed
        if numpy_seed is not None:
            numpy_seed(seed)
        else:
            self._seed_numpy_lazily(seed)
        if self._torch_generator is None or self._full_torch_seed:
            self.reseed_torch(seed)
        else:
            self._seed_torch_cpu(seed)
            self._cuda_seed = seed  # what the queued CUDA seeding applies; while CUDA has not started
            queued = self._cuda_queued  # and that seeding is still the latest queued, that is all
            if self._cuda._initialized or queued is None or self._cuda_tracker.call_order[-1] is not queued:
                self._seed_cuda(seed)
        if self.seeders:
            call_seeders(self.seeders, seed)

    def _seed_numpy_lazily(self, seed: int) -> None:
        """`np.random.seed(seed)` once `numpy.random` is imported, else when it is."""
        self._numpy_seed = _numpy_seed_method()
        if self._numpy_seed is None:
            NUMPY_RANDOM.seed_on_import(seed)
        else:
            self._numpy_seed(seed)

    def reseed_torch(self, seed: int) -> None:
        """Only torch (CPU and every CUDA device), the cheap way: for callers such as pytest-randomly
        that seed `random` and NumPy themselves, from seeds that may not fit NumPy's range."""
        if self._torch_generator is None and not self._bind_torch():
            TORCH.seed_on_import(seed)
        elif self._full_torch_seed:
            imported_torch().manual_seed(seed)  # type: ignore[union-attr]
        else:
            self._seed_torch_cpu(seed)
            self._seed_cuda(seed)

    def _seed_torch_cpu(self, seed: int) -> None:
        """`torch.default_generator.manual_seed(seed)`, from the state kept for `seed` when there is one."""
        state = self._torch_states.get(seed)
        if state is not None:
            self._torch_generator.set_state(state)
        else:
            self._first_torch_seed(seed)

    def _first_torch_seed(self, seed: int) -> None:
        """`manual_seed(seed)`, keeping the state it gives for the next time `seed` comes."""
        generator = self._torch_generator
        generator.manual_seed(seed)
        if len(self._torch_states) >= self.TORCH_STATES_KEPT:
            self._torch_states.clear()
        self._torch_states[seed] = generator.get_state()

    def _seed_cuda(self, seed: int) -> None:
        """CUDA's generators now, or at CUDA's lazy start: one callback, queued as manual_seed_all queues its
        own, seeds them with the seed of the latest re-seed; while it is still the latest queued seeding, a
        cell only changes that seed (no lock, no new callback: `reseed` checks that inline)."""
        cuda = self._cuda
        self._cuda_seed = seed
        if cuda.is_initialized():
            for generator in cuda.default_generators:
                generator.manual_seed(seed)
            return
        try:
            tracker = cuda._lazy_seed_tracker
            queued = tracker.manual_seed_all_cb
            if queued is not None and queued[0] is self._cuda_callback and tracker.call_order[-1] is queued:
                self._cuda_queued = queued
                return  # already the latest queued seeding: it reads the seed just set
            with cuda._initialization_lock:
                if cuda.is_initialized():
                    self._cuda_callback()
                else:
                    tracker.queue_seed_all(self._cuda_callback, ["ipyrepro: re-seed before a cell\n"])
                    self._cuda_queued = tracker.manual_seed_all_cb
        except AttributeError:  # a torch without these internals: take the public, slower path
            cuda.manual_seed_all(seed)

    def _seed_cuda_generators(self) -> None:
        """The same work as torch.cuda.manual_seed_all's callback, with the latest re-seed's seed."""
        cuda = self._cuda
        for index in range(cuda.device_count()):
            cuda.default_generators[index].manual_seed(self._cuda_seed)


def _has_lazy_cuda_seeding(torch: Any) -> bool:
    """Whether torch.cuda has the internals `Reseeder` queues CUDA's seeding with (else `torch.manual_seed`)."""
    cuda = torch.cuda
    tracker = getattr(cuda, "_lazy_seed_tracker", None)
    return isinstance(getattr(cuda, "_initialized", None), bool) and isinstance(
        getattr(tracker, "call_order", None), list
    )


def _numpy_seed_method() -> Callable[[int], None] | None:
    """What `np.random.seed` delegates to, if `numpy.random` is imported (never imports it)."""
    module = sys.modules.get(NUMPY_RANDOM_MODULE)
    return module.mtrand._rand.seed if module is not None else None
