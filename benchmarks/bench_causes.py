"""What the traced diagnostic run costs, as ratios to the same code untraced in the same run.

    python benchmarks/bench_causes.py [--rounds 5]

Causes are looked for only after a difference was found, in one extra run under a profiler
(`ipyrepro.causes.tracer.trace`), so a reproducible cell pays nothing. This measures that one run:

1. Python-heavy: 300k calls of a small Python function (the profiler's worst case: one callback
   per call and return).                                       No target: reported.
2. torch-heavy: 50 matmuls of 512x512 float32 (few Python calls, long C calls).  Target: <= 1.2x.

Rounds are interleaved so machine drift hits baseline and subject alike; medians are shown.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from ipyrepro.causes.tracer import trace


def _small(i: int) -> int:
    return i * 2


def python_heavy() -> int:
    total = 0
    for i in range(300_000):
        total += _small(i)
    return total


def torch_heavy() -> torch.Tensor:
    x = torch.randn(512, 512)
    for _ in range(50):
        x = torch.tanh(x @ x.T / 512)
    return x


def timed(fn: Callable[[], object], traced: bool) -> float:
    start = time.perf_counter()
    if traced:
        with trace(None):
            fn()
    else:
        fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)  # one thread: steadier timings on a shared machine
    for name, fn, target in (("Python-heavy", python_heavy, None), ("torch-heavy", torch_heavy, 1.2)):
        plain, traced = [], []
        for _ in range(args.rounds):
            plain.append(timed(fn, False))
            traced.append(timed(fn, True))
        base, subject = statistics.median(plain), statistics.median(traced)
        ratio = subject / base
        verdict = "" if target is None else f" (target <= {target}x: {'met' if ratio <= target else 'MISSED'})"
        print(f"{name}: untraced {base * 1e3:.1f} ms, traced {subject * 1e3:.1f} ms, {ratio:.2f}x{verdict}")


if __name__ == "__main__":
    main()
