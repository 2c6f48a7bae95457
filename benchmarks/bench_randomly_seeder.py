"""Cost of ipyrepro's pytest-randomly seeder, which pytest-randomly calls three times per test.

Measured against `torch.manual_seed` (what a hand-written seeder would call) in the same run,
interleaved over rounds, with the seed changing every call as pytest-randomly's per-test
seeds do. Also reports what importing the pytest plugin costs a session that does not use it.

    python benchmarks/bench_randomly_seeder.py [--calls 5000] [--rounds 7]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time


def per_call(fn, calls: int) -> float:
    start = time.perf_counter()
    for seed in range(calls):
        fn(seed * 7919 + 2**32)  # pytest-randomly's seeds can pass 2**32
    return (time.perf_counter() - start) / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()

    import torch

    from ipyrepro.testing.pytest_plugin import SEED_LIMIT, randomly_seeder

    def manual_seed(seed: int) -> None:
        torch.manual_seed(seed % SEED_LIMIT)

    times: dict[str, list[float]] = {"ipyrepro seeder": [], "torch.manual_seed": []}
    for _ in range(args.rounds):
        times["ipyrepro seeder"].append(per_call(randomly_seeder, args.calls))
        times["torch.manual_seed"].append(per_call(manual_seed, args.calls))
    base = statistics.median(times["torch.manual_seed"])
    for name, values in times.items():
        median = statistics.median(values)
        print(f"{name:20s} {median * 1e6:8.1f} us per call   ratio to torch.manual_seed {median / base:.3f}")

    code = "import time; t = time.perf_counter(); import ipyrepro.testing.pytest_plugin; print(time.perf_counter() - t)"
    pytest_code = "import pytest; " + code  # pytest is already imported when pytest loads the plugin
    imports = [float(subprocess.check_output([sys.executable, "-c", pytest_code])) for _ in range(5)]
    print(f"importing the plugin after pytest: {statistics.median(imports) * 1e3:.1f} ms (no torch)")


if __name__ == "__main__":
    main()
