"""Per-cell overhead of re-seeding before each cell, as ratios to a shell with no hook.

Runs trivial cells (`pass`: IPython skips the hooks for an empty cell)
through one real IPython shell in four configurations, interleaved so that
drift in machine speed hits all of them alike:
no hook; ipyrepro `fixed`; ipyrepro `cell`; Lightning's `seed_everything`
registered as a pre_run_cell hook (what people write by hand).

    python benchmarks/bench_cell_overhead.py [--cells 2000] [--rounds 7]

Target: ipyrepro adds <= 10 us per cell.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cells", type=int, default=2000, help="cells per configuration per round")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds; the median is reported")
    args = parser.parse_args()
    os.environ.setdefault("IPYTHONDIR", tempfile.mkdtemp(prefix="ipyrepro-bench-"))

    from IPython.testing.globalipapp import start_ipython

    shell = start_ipython()
    cell_ids = [str(uuid.uuid4()) for _ in range(50)]  # a notebook's worth of cells, rerun

    def run_cells() -> float:
        start = time.perf_counter()
        for index in range(args.cells):
            shell.run_cell("pass", cell_id=cell_ids[index % len(cell_ids)])
        return (time.perf_counter() - start) / args.cells * 1e6

    def no_hook() -> Callable[[], None]:
        return lambda: None

    def ipyrepro_mode(mode: str) -> Callable[[], Callable[[], None]]:
        def setup() -> Callable[[], None]:
            shell.run_line_magic("load_ext", "ipyrepro")
            shell.run_line_magic("repro", f"on --seed 1 --reseed {mode}")
            return lambda: (shell.run_line_magic("repro", "off"), shell.run_line_magic("unload_ext", "ipyrepro"))

        return setup

    def lightning() -> Callable[[], None]:
        from lightning_fabric.utilities.seed import seed_everything

        def hook(info: object) -> None:
            seed_everything(1, verbose=False)

        shell.events.register("pre_run_cell", hook)
        return lambda: shell.events.unregister("pre_run_cell", hook)

    configurations: dict[str, Callable[[], Callable[[], None]]] = {
        "no hook": no_hook,
        "ipyrepro fixed": ipyrepro_mode("fixed"),
        "ipyrepro cell": ipyrepro_mode("cell"),
        "lightning seed_everything": lightning,
    }
    samples: dict[str, list[float]] = {name: [] for name in configurations}
    for _ in range(args.rounds):
        for name, setup in configurations.items():
            teardown = setup()
            run_cells()  # warm up caches for this configuration
            samples[name].append(run_cells())
            teardown()

    base = statistics.median(samples["no hook"])
    print(f"{'configuration':<28}{'us/cell':>10}{'added us':>10}{'ratio':>8}")
    for name, values in samples.items():
        median = statistics.median(values)
        print(f"{name:<28}{median:>10.1f}{median - base:>10.1f}{median / base:>8.2f}")
    added = max(statistics.median(samples[name]) - base for name in ("ipyrepro fixed", "ipyrepro cell"))
    print(f"\nipyrepro adds at most {added:.1f} us per cell (target <= 10 us).")
    callbacks_alone(shell)


def callbacks_alone(shell: object) -> None:
    """The hooks' own cost, without the shell's noise: pre_run_cell + post_run_cell per cell."""
    import timeit
    from types import SimpleNamespace

    from lightning_fabric.utilities.seed import seed_everything

    from ipyrepro.hooks import CellHooks
    from ipyrepro.state import ReproState

    state = ReproState()
    state.enable(1)
    hooks = CellHooks(shell, state)
    info = SimpleNamespace(cell_id="4b1e0d9c-cell")
    runs = {
        "ipyrepro fixed": ("fixed", lambda: (hooks.pre_run_cell(info), hooks.post_run_cell(None))),
        "ipyrepro cell": ("cell", lambda: (hooks.pre_run_cell(info), hooks.post_run_cell(None))),
        "lightning seed_everything": ("off", lambda: seed_everything(1, verbose=False)),
    }
    print(f"\n{'callbacks alone':<28}{'us/cell':>10}")
    for name, (mode, call) in runs.items():
        state.reseed = mode
        number = 200 if "lightning" in name else 20000
        best = min(timeit.repeat(call, number=number, repeat=7)) / number * 1e6
        print(f"{name:<28}{best:>10.2f}")
    state.disable()


if __name__ == "__main__":
    main()
