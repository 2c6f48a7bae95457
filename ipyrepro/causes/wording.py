"""The words for each kind of cause: what ran, why it differs, and the fix."""

from __future__ import annotations

from .frames import _BIT_GENERATORS, _ENTROPY_FIX, _GENERATOR_FIXES, _callee, _first_argument_is_none, _focus

# -- the words for each cause -------------------------------------------------------------------


def _entropy(expression: str, from_c: bool) -> tuple[str, str, str] | None:
    dotted, last, nargs = _callee(expression)
    shown = _focus(expression) or dotted
    if last == "RandomState" and not _first_argument_is_none(expression):
        return None  # RandomState(seed) seeds a fresh MT19937 from the OS, then re-seeds it from `seed`
    if last in _GENERATOR_FIXES or last in _BIT_GENERATORS:
        fix = _GENERATOR_FIXES.get(last) or f"pass a seed: `np.random.{last}(seed)`"
        return (
            f"`{shown}` draws its seed from the OS, so every run starts from a different state.",
            fix,
            ("unseeded-generator"),
        )
    if last == "seed" and "random" in dotted:
        return (
            f"`{shown}` re-seeds NumPy's global generator from the OS, undoing the seeding.",
            "pass a seed: `np.random.seed(seed)`, or leave seeding to `%repro on`.",
            "unseeded-generator",
        )
    if from_c and last not in ("randbits", "getrandbits", "urandom"):
        return (
            f"`{shown}` created a random generator without a seed: it read OS entropy for its seed.",
            "pass a seed to the generator it creates (e.g. `seed=`/`random_state=`).",
            "unseeded-generator",
        )
    return f"`{shown}` reads entropy from the OS (os.urandom), different every run.", _ENTROPY_FIX, "entropy"


def _random_seed(expression: str) -> tuple[str, str, str]:
    dotted, last, _ = _callee(expression)
    shown = _focus(expression) or dotted
    if last == "seed":
        return (
            f"`{shown}` re-seeds Python's generator from the OS, undoing the seeding.",
            "pass a seed: `random.seed(seed)`, or leave seeding to `%repro on`.",
            "unseeded-generator",
        )
    return (
        f"`{shown or 'random.Random()'}` creates a generator seeded from the OS, so every run draws different numbers.",
        "pass a seed: `random.Random(seed)`, or draw it from the seeded global RNG: "
        "`random.Random(random.getrandbits(64))`.",
        "unseeded-generator",
    )


def _global_draw(expression: str, rng: str) -> tuple[str, str, str]:
    from .globalrng import NAMES, SEEDS

    shown = _focus(expression) or "the call"
    others = ", ".join(f"`{SEEDS[name]}`" for name in SEEDS if name != rng)
    return (
        f"`{shown}` draws from {NAMES[rng]}, which nothing in this notebook seeded: it starts from an OS seed in "
        "every process.",
        f"seed it once at the top: `{SEEDS[rng]}` (and {others}), or run the notebook under ipyrepro "
        "(`%repro on`, or `ipyrepro kernel install`).",
        "unseeded-generator",
    )


def _torch_seed(expression: str) -> tuple[str, str, str]:
    dotted, _, _ = _callee(expression)
    shown = _focus(expression) or dotted or "Generator.seed()"
    fix = (
        "seed it: `torch.manual_seed(seed)` (or `%repro seed N`)."
        if dotted in ("torch.seed", "seed")
        else "seed it: `generator.manual_seed(seed)`."
    )
    return f"`{shown}` seeds a torch generator from the OS (non-deterministic by design).", fix, "unseeded-generator"


def _clock(name: str) -> tuple[str, str, str]:
    return (
        f"{name} reads the clock, which differs every run; a suspect if its value flows into results "
        "(timings alone are harmless).",
        "keep clock readings out of compared values (log them instead), or pass a fixed timestamp.",
        "clock",
    )


def _concurrency(what: str) -> tuple[str, str, str]:
    return (
        f"the cell started {what}: the order in which threads or processes run, and any unseeded draws inside "
        "them, can change results run to run.",
        "make the work order-independent (collect results by index, not completion order), seed inside each "
        "worker, or run it sequentially to check.",
        "concurrency",
    )


def _dataloader(workers: int, persistent: bool, survived: bool, has_init: bool) -> tuple[str, str, str]:
    detail = (
        f"a DataLoader with num_workers={workers} runs the dataset in worker processes; torch seeds torch and "
        "`random` in each worker, but unseeded sources there (np.random.default_rng(), os.urandom"
        + (", your worker_init_fn" if has_init else "")
        + ") differ run to run."
    )
    if survived:
        detail += " Its persistent_workers=True iterator survived from an earlier cell, so the workers continue "
        detail += "from the RNG state that cell left."
    fix = "seed per worker in worker_init_fn from `torch.initial_seed()`, pass a seeded `generator=` to the DataLoader"
    fix += ", and create the DataLoader in the same cell (or use persistent_workers=False)." if persistent else "."
    return detail, fix, "concurrency"


def _setting(what: str) -> tuple[str, str, str]:
    return (
        f"`{what}` lets torch choose nondeterministic algorithms from here on.",
        "remove it (or run `%repro on` after it): ipyrepro's recipe keeps these deterministic.",
        "setting",
    )


def _op(op: str) -> tuple[str, str, str]:
    return (
        f"{op} has no deterministic implementation (reported by torch in the rerun with "
        "`use_deterministic_algorithms(True, warn_only=True)`).",
        "use a deterministic alternative for this op (e.g. sort-based or scatter without accumulation), run it on "
        "the CPU, or compare with --rtol/--atol; `%repro on` makes torch raise here.",
        "nondeterministic-op",
    )


def _hash_order(what: str) -> tuple[str, str, str]:
    return (
        f"{what}: its order depends on string hashing, which changes with every process unless PYTHONHASHSEED is "
        "set (runs in one process agree; a fresh kernel does not).",
        "iterate in a fixed order, `sorted(...)`, or start the kernel with PYTHONHASHSEED fixed "
        "(`ipyrepro kernel install`).",
        "hash-order",
    )
