"""`ipyrepro.compare` and `%%repro` end to end, and the memory `%%repro`'s snapshot takes.

    python benchmarks/bench_compare_end_to_end.py [--mib 256] [--params 100e6] [--rounds 5]

1. `ipyrepro.compare(lambda: a.clone(), runs=2)` on a MiB-sized float32 tensor, against its floor:
   two clones and one `torch.equal` (what any two-run comparison must do).   Target: <= 1.5x.
2. `%%repro` over the cell `b = a.clone()` in a real IPython shell (`a` in the namespace), against
   the same floor.                                                              Target: <= 1.5x.
3. Peak RSS that `%%repro` adds over a cell that reads a model of about 100 M parameters (in a
   fresh process, so the peak is the cell's), as a multiple of the model's bytes.   Target: <= 1.1x.

Rounds are interleaved so that machine drift (the machine is shared) hits baseline and subject
alike; medians are reported, and every ratio is against a baseline measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable

import torch


def interleaved(cases: dict[str, Callable[[], object]], rounds: int) -> dict[str, float]:
    for fn in cases.values():
        fn()  # warm up: allocator, page faults
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(rounds):
        for name, fn in cases.items():
            start = time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in samples.items()}


def show(title: str, results: dict[str, float], baseline: str, target: float) -> None:
    print(f"\n{title}")
    base = results[baseline]
    for name, seconds in results.items():
        ratio = seconds / base
        mark = "" if name == baseline else f"   target <= {target}x: {'met' if ratio <= target else 'MISSED'}"
        print(f"  {name:<48} {seconds * 1e3:9.1f} ms  {ratio:5.2f}x{mark}")


def bench_time(args: argparse.Namespace) -> None:
    import ipyrepro

    os.environ.setdefault("IPYTHONDIR", tempfile.mkdtemp(prefix="ipyrepro-bench-"))
    from IPython.testing.globalipapp import start_ipython

    shell = start_ipython()
    shell.run_line_magic("load_ext", "ipyrepro")
    a = torch.randn(args.mib * (1 << 20) // 4)
    shell.user_ns["a"] = a

    def floor() -> None:
        torch.equal(a.clone(), a.clone())

    def repro_cell() -> None:
        result = shell.run_cell_magic("repro", "--runs 2", "b = a.clone()")
        assert result.ok, result

    results = interleaved(
        {
            "floor: two clones + torch.equal": floor,
            "ipyrepro.compare(lambda: a.clone(), runs=2)": lambda: ipyrepro.compare(lambda: a.clone(), runs=2),
            "%%repro --runs 2 over `b = a.clone()`": repro_cell,
        },
        args.rounds,
    )
    show(f"1-2. compare and %%repro, {args.mib} MiB float32", results, "floor: two clones + torch.equal", 1.5)


MEMORY_PROBE = """
import json, os, sys, tempfile
os.environ.setdefault("IPYTHONDIR", tempfile.mkdtemp())
import torch
from IPython.testing.globalipapp import start_ipython
shell = start_ipython()
shell.run_line_magic("load_ext", "ipyrepro")
width = 2048
layers = max(1, round({params} / (width * width + width)))
with torch.no_grad():
    model = torch.nn.Sequential(*[torch.nn.Linear(width, width) for _ in range(layers)])
shell.user_ns["model"] = model
model_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
cell = "total = sum(float(p.sum()) for p in model.parameters())"
shell.run_cell(cell)  # the cell itself, once, so its own peak is in the baseline
def peak():  # VmHWM: this process's own peak (ru_maxrss can carry the parent's from before exec)
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmHWM:"))
before = peak()
{subject}
after = peak()
print("RESULT" + json.dumps({{"model_bytes": model_bytes, "extra": after - before}}))
"""


def bench_memory(args: argparse.Namespace) -> None:
    subjects = {
        "plain cell (baseline)": "shell.run_cell(cell)",
        "%%repro --runs 2": "assert shell.run_cell_magic('repro', '--runs 2', cell).ok",
        "%%repro --runs 3": "assert shell.run_cell_magic('repro', '--runs 3', cell).ok",
    }
    print(f"\n3. peak RSS added by the cell, model of about {args.params / 1e6:.0f} M float32 parameters")
    for name, subject in subjects.items():
        code = textwrap.dedent(MEMORY_PROBE).format(params=args.params, subject=subject)
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        line = next(line for line in done.stdout.splitlines() if line.startswith("RESULT"))
        result = json.loads(line.removeprefix("RESULT"))
        ratio = result["extra"] / result["model_bytes"]
        mark = "" if "baseline" in name else f"   target <= 1.1x: {'met' if ratio <= 1.1 else 'MISSED'}"
        print(f"  {name:<48} {result['extra'] / 2**20:9.0f} MiB  {ratio:5.2f}x the model{mark}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mib", type=int, default=256, help="tensor size for 1 and 2 (MiB)")
    parser.add_argument("--params", type=float, default=100e6, help="model size for 3")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds; medians are reported")
    parser.add_argument("--skip-memory", action="store_true", help="only 1 and 2")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, {args.rounds} rounds")
    bench_time(args)
    if not args.skip_memory:
        bench_memory(args)


if __name__ == "__main__":
    main()
