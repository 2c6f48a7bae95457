"""Start-up costs: `enable()` after `import torch`, the CLI, a fresh kernel, and `ipyrepro check`.

    python benchmarks/bench_startup.py [--rounds 3] [--only enable,cli,kernel,check]

1. enable: in a fresh process after `import torch`, `ipyrepro.enable()` (ms), and whether it
   imported `torch._inductor`; `torch.use_deterministic_algorithms(True)` for comparison.
   Target: <= 30 ms, no inductor import.
2. cli: `python -m ipyrepro --help`, `check --help`, `kernel install` against `python -c pass`
   (what any Python command costs here).                             Target: <= 0.3 s.
3. kernel: in a fresh kernel, the cell `%load_ext ipyrepro` + `%repro on` against the cell
   `import torch` in the same kind of fresh kernel.                  Target: <= 1.1x.
   Also each with the next, small cell: `import torch` leaves a full garbage collection due,
   which lands in whichever cell next allocates (in ipyrepro's case, in `%repro on` itself).
4. check: `ipyrepro check NB` (2 runs, default mode and --jobs) against two plain nbclient runs
   of NB one after the other, for a NumPy-only notebook and a small torch training notebook.
   Target: <= 1.2x; with 2 parallel kernels on a 2-core machine, a single-threaded notebook
   <= 0.75x.

The machine may be shared: cases are interleaved round by round and the median (and minimum)
of each is reported, with ratios against baselines measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_notebook


def interleaved(cases: dict[str, Callable[[], float | None]], rounds: int) -> dict[str, list[float]]:
    """Each case returns its own measurement in seconds, or None to be timed from outside."""
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(rounds):
        for name, fn in cases.items():
            start = time.perf_counter()
            measured = fn()
            samples[name].append(time.perf_counter() - start if measured is None else measured)
    return samples


def show(title: str, samples: dict[str, list[float]], baseline: str | None, target: str) -> None:
    print(f"\n{title}   (target: {target})")
    base = statistics.median(samples[baseline]) if baseline else None
    for name, values in samples.items():
        median = statistics.median(values)
        ratio = f"{median / base:6.2f}x" if base else ""
        print(f"  {name:<58} median {median * 1e3:8.1f} ms  min {min(values) * 1e3:8.1f} ms {ratio}")


def python(*arguments: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *arguments], capture_output=True, text=True, check=True, env={**os.environ, **(env or {})}
    )


def timed_python(*arguments: str, env: dict[str, str] | None = None) -> Callable[[], None]:
    """A case that runs Python with these arguments (timed from outside)."""

    def run() -> None:
        python(*arguments, env=env)

    return run


ENABLE_PROBE = """
import json, sys, time
import torch
{setup}
start = time.perf_counter()
{call}
took = time.perf_counter() - start
print(json.dumps({{"seconds": took, "inductor": "torch._inductor" in sys.modules}}))
"""


def bench_enable(rounds: int) -> None:
    calls = {
        "import ipyrepro + enable(0), after import torch": ("", "import ipyrepro; ipyrepro.enable(0)"),
        "enable(0) alone, after import torch and ipyrepro's modules": (
            "import ipyrepro, ipyrepro.core.state, ipyrepro.core.status",
            "ipyrepro.enable(0)",
        ),
        "(torch.use_deterministic_algorithms(True), for comparison)": ("", "torch.use_deterministic_algorithms(True)"),
    }
    inductor: dict[str, bool] = {}

    def case(name: str, setup: str, call: str) -> Callable[[], float]:
        def run() -> float:
            probe = ENABLE_PROBE.format(setup=setup, call=call)
            result = json.loads(python("-c", probe).stdout.strip().splitlines()[-1])
            inductor[name] = result["inductor"]
            return result["seconds"]

        return run

    samples = interleaved({name: case(name, *code) for name, code in calls.items()}, rounds)
    show("1. enable after import torch (fresh processes)", samples, None, "<= 30 ms, no inductor import")
    for name, imported in inductor.items():
        print(f"  {name:<58} imported torch._inductor: {imported}")


def bench_cli(rounds: int) -> None:
    prefix = tempfile.mkdtemp(prefix="ipyrepro-bench-kernel-")
    cases: dict[str, Callable[[], float | None]] = {
        "python -c pass (baseline)": lambda: python("-c", "pass") and None,
        "ipyrepro --help": lambda: python("-m", "ipyrepro", "--help") and None,
        "ipyrepro check --help": lambda: python("-m", "ipyrepro", "check", "--help") and None,
        "ipyrepro kernel install --prefix TMP --force": lambda: (
            python("-m", "ipyrepro", "kernel", "install", "--prefix", prefix, "--force") and None
        ),
    }
    show(
        "2. the CLI (wall time of the whole process)",
        interleaved(cases, rounds),
        "python -c pass (baseline)",
        "<= 0.3 s",
    )


NEXT_CELL = "numbers = [[index] for index in range(3000)]"  # a small cell that allocates a few thousand objects


def bench_kernel(rounds: int) -> None:
    from ipyrepro.notebooks.kernelrun import running_kernel

    # As installed packages are: with bytecode caches (this machine sets PYTHONDONTWRITEBYTECODE, so
    # a source checkout would be compiled on every start while torch's caches exist), in an empty folder.
    cache = tempfile.mkdtemp(prefix="ipyrepro-bench-pycache-")
    folder = tempfile.mkdtemp(prefix="ipyrepro-bench-cwd-")
    env = {"PYTHONDONTWRITEBYTECODE": "", "PYTHONPYCACHEPREFIX": cache}

    next_cell: dict[str, list[float]] = {}

    def cell_in_fresh_kernel(name: str, code: str) -> Callable[[], float]:
        def run() -> float:
            with running_kernel("python3", cwd=folder, env=env) as kernel:
                start = time.perf_counter()
                result = kernel.execute(code, timeout=300)
                took = time.perf_counter() - start
                start = time.perf_counter()
                after = kernel.execute(NEXT_CELL, timeout=300)
                next_cell.setdefault(name, []).append(time.perf_counter() - start)
            assert result.status == "ok", result.outputs
            assert after.status == "ok", after.outputs
            return took

        return run

    names = ("import torch (baseline)", "%load_ext ipyrepro + %repro on")
    cases = {
        names[0]: cell_in_fresh_kernel(names[0], "import torch"),
        names[1]: cell_in_fresh_kernel(names[1], "%load_ext ipyrepro\n%repro on"),
    }
    for case in cases.values():
        case()  # warm up: the bytecode caches, the OS file cache
    next_cell.clear()
    first = interleaved(cases, rounds)
    show("3. a fresh kernel's first cell", first, names[0], "<= 1.1x")
    # `import torch` leaves a full garbage collection due (about 200k objects, 60-70 ms here): the
    # next cell that allocates a few thousand objects pays it, whichever that is. The first two
    # cells together count it once on each side.
    both = {f"{name}, then a small cell": [a + b for a, b in zip(first[name], next_cell[name])] for name in names}
    show(
        "   ... and the next, small cell with it (the GC that `import torch` left due, counted once)",
        both,
        f"{names[0]}, then a small cell",
        "<= 1.1x",
    )


NUMPY_NOTEBOOK = [
    "import numpy as np\nrng = np.random.default_rng(0)",
    "x = rng.normal(size=(200, 200))\nprint(float((x @ x.T).trace()))",
    "print(np.linalg.svd(x, compute_uv=False)[:3])",
]
TORCH_NOTEBOOK = [
    "import torch\ntorch.set_num_threads(1)\ntorch.manual_seed(0)",
    "data = torch.randn(512, 16)\ntarget = data @ torch.randn(16, 1)\nmodel = torch.nn.Sequential("
    "torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 1))\n"
    "opt = torch.optim.SGD(model.parameters(), lr=0.01)",
    "for step in range(200):\n    opt.zero_grad()\n    loss = torch.nn.functional.mse_loss(model(data), target)\n"
    "    loss.backward()\n    opt.step()\nprint(round(loss.item(), 6))",
]
PLAIN_RUNS = """
import sys, nbformat
from nbclient import NotebookClient
for _ in range(2):
    nb = nbformat.read(sys.argv[1], as_version=4)
    NotebookClient(nb, kernel_name="python3", timeout=600).execute()
"""


def bench_check(rounds: int) -> None:
    folder = Path(tempfile.mkdtemp(prefix="ipyrepro-bench-check-"))
    env = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}  # single-threaded
    for name, sources in (("numpy-only", NUMPY_NOTEBOOK), ("torch training", TORCH_NOTEBOOK)):
        nb = new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3"}})
        nb.cells = [new_code_cell(source, id=f"c{index}") for index, source in enumerate(sources)]
        path = folder / f"{name.replace(' ', '-')}.ipynb"
        nbformat.write(nb, path)
        plain = ("-c", PLAIN_RUNS, str(path))
        check = ("-m", "ipyrepro", "check", str(path), "--quiet")
        cases: dict[str, Callable[[], float | None]] = {
            "two plain nbclient runs, one after the other (baseline)": timed_python(*plain, env=env),
            "ipyrepro check NB --jobs 1": timed_python(*check, "--jobs", "1", env=env),
            "ipyrepro check NB (default --jobs: min(runs, CPUs))": timed_python(*check, env=env),
        }
        show(
            f"4. {name} notebook, 2 runs",
            interleaved(cases, rounds),
            "two plain nbclient runs, one after the other (baseline)",
            "<= 1.2x; parallel on 2 cores <= 0.75x",
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; medians are reported")
    parser.add_argument("--only", default="enable,cli,kernel,check", help="comma-separated parts to run")
    args = parser.parse_args()
    parts = set(args.only.split(","))
    os.environ.setdefault("IPYTHONDIR", tempfile.mkdtemp(prefix="ipyrepro-bench-"))
    print(f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, {args.rounds} rounds")
    for part, bench in (("enable", bench_enable), ("cli", bench_cli), ("kernel", bench_kernel), ("check", bench_check)):
        if part in parts:
            bench(args.rounds)


if __name__ == "__main__":
    main()
