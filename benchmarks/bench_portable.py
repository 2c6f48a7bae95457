"""The portable profile's cost: a small CNN's training step with and without it, ratio in one run.

    python benchmarks/bench_portable.py [--rounds 3] [--steps 30]

Each case is a fresh process (the profile's CPU variables are read only at start):
1. baseline: this machine's own kernels and thread count;
2. portable: `ipyrepro.core.portable.start_variables()` in the environment and `apply_runtime()`
   (AVX2 kernels on x86-64, 4 threads, TF32 off, IEEE fp32);
3. portable kernels, own threads: the same variables but this machine's thread count, to separate the
   cost of the pinned ISA from that of the pinned thread count.
Reported: the median step time of each (median over rounds of each process's median step), and the
ratio to the baseline measured in the same run. Cases are interleaved round by round.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

STEP = textwrap.dedent(
    """
    import json, statistics, sys, time
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
    if sys.argv[1] == "portable":
        from ipyrepro.core.portable import apply_runtime
        apply_runtime()
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 7 * 7, 10),
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    images, labels = torch.randn(64, 1, 28, 28), torch.randint(0, 10, (64,))
    times = []
    for step in range(int(sys.argv[2]) + 5):
        start = time.perf_counter()
        optimizer.zero_grad()
        F.cross_entropy(model(images), labels).backward()
        optimizer.step()
        if step >= 5:  # warm-up steps are not counted
            times.append(time.perf_counter() - start)
    print(json.dumps({"step": statistics.median(times), "capability": torch.backends.cpu.get_cpu_capability(),
                      "threads": torch.get_num_threads()}))
    """
)


def case(mode: str, extra_env: dict[str, str], steps: int) -> dict[str, object]:
    from ipyrepro.core.portable import start_variables

    env = {key: value for key, value in os.environ.items() if key not in start_variables()}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    done = subprocess.run(
        [sys.executable, "-c", STEP, mode, str(steps)],
        env={**env, **extra_env},
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=30)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from ipyrepro.core.portable import THREAD_START_VARIABLES, start_variables

    kernels_only = {key: value for key, value in start_variables().items() if key not in THREAD_START_VARIABLES}
    cases = {
        "baseline (own kernels, own threads)": ("plain", {}),
        "portable profile": ("portable", start_variables()),
        "portable kernels, own threads": ("plain", kernels_only),
    }
    samples: dict[str, list[float]] = {name: [] for name in cases}
    seen: dict[str, dict[str, object]] = {}
    for _ in range(args.rounds):
        for name, (mode, extra) in cases.items():
            result = case(mode, extra, args.steps)
            samples[name].append(float(result["step"]))  # type: ignore[arg-type]
            seen[name] = result
    base = statistics.median(samples["baseline (own kernels, own threads)"])
    print(f"Small CNN training step (batch 64, 28x28), {args.rounds} rounds of {args.steps} steps")
    for name, values in samples.items():
        median = statistics.median(values)
        info = seen[name]
        print(
            f"  {name:<38} {median * 1e3:8.2f} ms  {median / base:5.2f}x  "
            f"(CPU kernels {info['capability']}, {info['threads']} threads)"
        )


if __name__ == "__main__":
    main()
