"""Per-cell overhead of re-seeding before each cell, measured in a real IPython shell.

Seven configurations run the same trivial cells (`pass`: IPython skips the
hooks for an empty cell) in one shell, interleaved and rotated so that drift
in machine speed hits all of them alike: no hook; ipyrepro `fixed`; ipyrepro
`cell`; ipyrepro `source`; ipyrepro `fixed` with one open panel (it redraws only when
something it shows changed, so here never: in `cell` mode the last cell's seed it shows changes
from cell to cell, and each such redraw costs about 150 us); the seeding alone (a hook that only
seeds Python's, NumPy's and torch's generators with a new seed per cell: the floor of any re-seed);
Lightning's `seed_everything` registered as a pre_run_cell hook (what people write by hand).

Two numbers per configuration:
- whole cell: microseconds per cell, and the ratio to no hook. On a small VM
  this is noisy at the scale of a few microseconds.
- in situ: the time spent inside the configuration's own callbacks, taken
  between timestamp callbacks registered just before and just after them, so
  caches are as cold as between real cells (a hot loop over the callbacks
  alone reads several times faster than what a cell pays).

    python benchmarks/bench_cell_overhead.py [--cells 2000] [--rounds 7]

torch and `numpy.random` are imported first, as in a PyTorch notebook, so every
configuration seeds Python's, NumPy's and torch's RNGs (and queues CUDA's).
`--only "ipyrepro cell"` runs one configuration (with "no hook") for a quick look.

Targets: ipyrepro's hooks <= 10 us per cell in situ, in every re-seed mode; an
open panel whose content did not change <= 10 us more. The machine is shared and noisy: the
medians of interleaved rounds are reported, and ratios against "no hook" from
the same run.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from typing import Any


class Stopwatch:
    """Timestamp callbacks around the hooks under test, for pre_run_cell and post_run_cell."""

    def __init__(self, shell: Any) -> None:
        self.shell = shell
        self.spent: list[float] = []
        self._start = 0.0
        self._pre_total = 0.0

    def start_pre(self, info: Any) -> None:
        self._start = time.perf_counter()

    def stop_pre(self, info: Any) -> None:
        self._pre_total = time.perf_counter() - self._start

    def start_post(self, result: Any) -> None:
        self._start = time.perf_counter()

    def stop_post(self, result: Any) -> None:
        self.spent.append(self._pre_total + time.perf_counter() - self._start)

    def around(self, install: Callable[[], Callable[[], None]]) -> Callable[[], None]:
        """Register the first timestamps, then the hooks under test, then the second timestamps."""
        events = self.shell.events
        events.register("pre_run_cell", self.start_pre)
        events.register("post_run_cell", self.start_post)
        uninstall = install()
        events.register("pre_run_cell", self.stop_pre)
        events.register("post_run_cell", self.stop_post)

        def remove() -> None:
            for event, callback in (
                ("pre_run_cell", self.start_pre),
                ("pre_run_cell", self.stop_pre),
                ("post_run_cell", self.start_post),
                ("post_run_cell", self.stop_post),
            ):
                events.unregister(event, callback)
            uninstall()

        return remove


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cells", type=int, default=2000, help="cells per configuration per round")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds; the median is reported")
    parser.add_argument(
        "--only", default="", help="comma-separated configurations to run besides 'no hook' (default: all)"
    )
    args = parser.parse_args()
    os.environ.setdefault("IPYTHONDIR", tempfile.mkdtemp(prefix="ipyrepro-bench-"))

    from IPython.testing.globalipapp import start_ipython

    shell = start_ipython()
    shell.run_cell("import numpy.random, torch")  # a PyTorch notebook's: the hooks then seed all three RNGs
    cell_ids = [str(uuid.uuid4()) for _ in range(50)]  # a notebook's worth of cells, rerun

    def run_cells() -> float:
        gc.collect()
        gc.disable()  # as timeit does: a collection landing in one configuration is noise
        try:
            start = time.perf_counter()
            for index in range(args.cells):
                shell.run_cell("pass", cell_id=cell_ids[index % len(cell_ids)])
            return (time.perf_counter() - start) / args.cells * 1e6
        finally:
            gc.enable()

    def no_hook() -> Callable[[], None]:
        return lambda: None

    def ipyrepro_mode(mode: str) -> Callable[[], Callable[[], None]]:
        def install() -> Callable[[], None]:
            shell.run_line_magic("load_ext", "ipyrepro")
            shell.run_line_magic("repro", f"on --seed 1 --reseed {mode}")
            return lambda: (shell.run_line_magic("repro", "off"), shell.run_line_magic("unload_ext", "ipyrepro"))

        return install

    def with_panel() -> Callable[[], None]:
        uninstall = ipyrepro_mode("fixed")()
        import ipyrepro

        panel = ipyrepro.panel()
        return lambda: (panel.close(), uninstall())

    def floor() -> Callable[[], None]:
        """What any re-seed before a cell must do: seed the three generators (a new seed per cell, as in
        `cell` mode), through their own C-level calls, from a hook; no lookup, no check after the cell."""
        import hashlib
        import random

        import numpy.random
        import torch

        seed_python = super(random.Random, random._inst).seed  # what random.seed(int) runs
        seed_numpy, seed_torch = numpy.random.mtrand._rand.seed, torch.default_generator.manual_seed
        seeds = {
            cell: int.from_bytes(hashlib.blake2b(cell.encode(), digest_size=4).digest(), "big") for cell in cell_ids
        }

        def hook(info: Any) -> None:
            seed = seeds[info.cell_id]
            seed_python(seed)
            seed_numpy(seed)
            seed_torch(seed)

        shell.events.register("pre_run_cell", hook)
        return lambda: shell.events.unregister("pre_run_cell", hook)

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
        "ipyrepro source": ipyrepro_mode("source"),
        "ipyrepro fixed + 1 panel": with_panel,
        "seeding alone (the floor)": floor,
        "lightning seed_everything": lightning,
    }
    if args.only:
        chosen = {"no hook", *(name.strip() for name in args.only.split(","))}
        configurations = {name: install for name, install in configurations.items() if name in chosen}
    whole: dict[str, list[float]] = {name: [] for name in configurations}
    in_situ: dict[str, list[float]] = {name: [] for name in configurations}
    order = list(configurations.items())
    for round_index in range(args.rounds):
        rotation = round_index % len(order)  # no configuration always runs first or last
        for name, install in order[rotation:] + order[:rotation]:
            stopwatch = Stopwatch(shell)
            remove = stopwatch.around(install)
            run_cells()  # warm up this configuration
            stopwatch.spent.clear()
            whole[name].append(run_cells())
            in_situ[name].append(statistics.median(stopwatch.spent) * 1e6)
            remove()

    base = statistics.median(whole["no hook"])
    bare = statistics.median(in_situ["no hook"])  # the timestamp callbacks themselves
    print(f"{'configuration':<28}{'us/cell':>9}{'ratio':>7}{'hooks in situ, us':>19}")
    for name in configurations:
        cell = statistics.median(whole[name])
        hooks = statistics.median(in_situ[name]) - bare
        print(f"{name:<28}{cell:>9.1f}{cell / base:>7.2f}{hooks:>19.1f}")
    modes = [name for name in ("ipyrepro fixed", "ipyrepro cell", "ipyrepro source") if name in configurations]
    if modes:
        worst = max(modes, key=lambda name: statistics.median(in_situ[name]))
        hooks = statistics.median(in_situ[worst]) - bare
        print(f"\nipyrepro's hooks take {hooks:.1f} us per cell in situ at most ({worst}; target <= 10 us)", end="")
        if "lightning seed_everything" in configurations:
            lightning = statistics.median(in_situ["lightning seed_everything"]) - bare
            print(f", {hooks / lightning:.3f}x Lightning's seed_everything ({lightning:.0f} us)", end="")
        print(".")
        if "seeding alone (the floor)" in configurations:
            seeding = statistics.median(in_situ["seeding alone (the floor)"]) - bare
            print(f"Seeding Python's, NumPy's and torch's generators alone, from a hook, takes {seeding:.1f} us here.")
    if "ipyrepro fixed + 1 panel" in configurations and "ipyrepro fixed" in configurations:
        panel = statistics.median(in_situ["ipyrepro fixed + 1 panel"]) - statistics.median(in_situ["ipyrepro fixed"])
        print(f"An open panel with nothing to redraw adds {panel:.1f} us per cell (target <= 10 us).")


if __name__ == "__main__":
    main()
