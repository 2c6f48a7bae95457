"""What per-cell state digests cost, each case as a ratio to a baseline measured in the same run.

    python benchmarks/bench_state_digests.py [--cases hashing,strings,shared,model] [--rounds 3] [--params 100]

- hashing: the digest of a contiguous CPU tensor (float32, bfloat16) against `xxhash.xxh3_128` over the same
  bytes, in GB/s. Target: <= 1.5x.
- strings: a notebook holding two million short strings over four cells, `ipyrepro check` with digests against
  `--no-state`. Target: <= 1.5x the --no-state time plus 5 s.
- shared: self-referencing and shared structures (`a.append(a)`, `x = [x, x]` forty times), the same ratio.
- model: a model of about `--params` million float32 parameters (400 MB at 100), an SGD optimizer with
  momentum (as much again), a forward and backward pass, a step. Target: <= 1.10x.

Rounds alternate with and without digests so that machine drift hits both alike; medians are shown, with the
digest time the kernels themselves measured (the JSON's state.digest_seconds) per cell and per GB digested.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import nbformat

TARGETS = {"hashing": 1.5, "strings": 1.5, "shared": 1.5, "model": 1.10}
STRINGS_SLACK = 5.0  # seconds the strings and shared cases may add on top of their ratio


def write(path: Path, cells: list[str]) -> Path:
    book = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3"}})
    book.cells = [nbformat.v4.new_code_cell(source, id=f"c{index}") for index, source in enumerate(cells)]
    nbformat.write(book, path)
    return path


def model_cells(millions: int) -> list[str]:
    width = int((millions * 1_000_000 / 4) ** 0.5)  # four square layers
    return [
        "import torch\ntorch.set_num_threads(1)",
        f"model = torch.nn.Sequential(*[torch.nn.Linear({width}, {width}, bias=False) for _ in range(4)])\n"
        "params = sum(p.numel() for p in model.parameters())",
        f"optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)\nbatch = torch.randn(64, {width})",
        "loss = model(batch).pow(2).mean()\nloss.backward()",
        "optimizer.step()\noptimizer.zero_grad()",
        "loss = model(batch).pow(2).mean()",
        "print(f'{params / 1e6:.0f}M parameters, loss {loss.item():.4f}')",
    ]


STRING_CELLS = [
    "tokens = [f'tok{i % 50000}' for i in range(2_000_000)]",
    "vocabulary = sorted(set(tokens))",
    "counts = [len(token) for token in tokens[:1000]]",
    "print(len(tokens), len(vocabulary))",
]
SHARED_CELLS = [
    "a = []\na.append(a)\na.append(a)",
    "x = [1]\nfor _ in range(40):\n    x = [x, x]",
    "tree = {'left': x, 'right': x, 'self': a}",
    "print('next')",
]


def timed(path: Path, state: bool) -> tuple[float, Any]:
    from ipyrepro.notebooks.check import check

    start = time.perf_counter()
    report = check(path, runs=2, jobs=1, state=state, causes=False)
    elapsed = time.perf_counter() - start
    if report.exit_code != 0:
        raise SystemExit(f"the benchmark notebook did not reproduce:\n{report}")
    return elapsed, report.state


def notebook_case(name: str, cells: list[str], rounds: int, gigabytes: float = 0.0) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = write(Path(folder) / f"{name}.ipynb", cells)
        plain, digested, seconds, per_cell = [], [], [], []
        for _ in range(rounds):
            plain.append(timed(path, False)[0])
            elapsed, state = timed(path, True)
            digested.append(elapsed)
            seconds.append(state.seconds)
            per_cell.append(max((max(s) for s in state.cell_seconds.values()), default=0.0))
            print(
                f"  {name} round: --no-state {plain[-1]:.2f} s, state {elapsed:.2f} s ({seconds[-1]:.2f} s digesting)"
            )
    base, subject = statistics.median(plain), statistics.median(digested)
    ratio = statistics.median(b / a for a, b in zip(plain, digested))  # each round's pair ran back to back
    target = TARGETS[name]
    slack = 0.0 if name == "model" else STRINGS_SLACK
    met = subject <= target * base + slack if slack else ratio <= target
    limit = f"<= {target}x + {slack:g} s" if slack else f"<= {target}x"
    digest = statistics.median(seconds)
    cells_digested = 2 * len(cells)
    line = (
        f"{name}: --no-state {base:.2f} s, with state digests {subject:.2f} s, {ratio:.3f}x (target {limit}: "
        f"{'met' if met else 'MISSED'}); digesting {digest:.2f} s in all, {digest / cells_digested:.3f} s per cell "
        f"(slowest {statistics.median(per_cell):.3f} s)"
    )
    if gigabytes:
        line += f", {statistics.median(per_cell) / gigabytes:.3f} s per GB held (slowest cell, {gigabytes:.2f} GB)"
    print(line)


def hashing_case(rounds: int, megabytes: int = 256) -> None:
    import torch
    import xxhash

    from ipyrepro.comparison.digests import tensor_digest

    for dtype in (torch.float32, torch.bfloat16):
        tensor = torch.randn(megabytes << 18).to(dtype)
        raw = tensor.view(torch.uint8).numpy()
        size = tensor.numel() * tensor.element_size()
        baseline, subject = [], []
        xxhash.xxh3_128(raw).hexdigest()  # warm: both read memory already touched
        tensor_digest(tensor)
        for _ in range(max(rounds, 15)):  # interleaved, medians: a busy machine hits both alike
            start = time.perf_counter()
            xxhash.xxh3_128(raw).hexdigest()
            baseline.append(time.perf_counter() - start)
            start = time.perf_counter()
            tensor_digest(tensor)
            subject.append(time.perf_counter() - start)
        ratio = statistics.median(b / a for a, b in zip(baseline, subject))
        print(
            f"hashing {str(dtype).removeprefix('torch.')} ({size >> 20} MiB, CPU): xxh3_128 "
            f"{size / statistics.median(baseline) / 1e9:.2f} GB/s, tensor digest "
            f"{size / statistics.median(subject) / 1e9:.2f} GB/s, {ratio:.3f}x "
            f"(target <= {TARGETS['hashing']}x: {'met' if ratio <= TARGETS['hashing'] else 'MISSED'})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", default="hashing,strings,shared,model")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--params", type=int, default=100, help="millions of parameters (default 100)")
    args = parser.parse_args()
    cases = args.cases.split(",")
    if "hashing" in cases:
        hashing_case(args.rounds)
    if "strings" in cases:
        notebook_case("strings", STRING_CELLS, args.rounds)
    if "shared" in cases:
        notebook_case("shared", SHARED_CELLS, args.rounds)
    if "model" in cases:
        held = args.params * 4 * 3 / 1e3  # GB of float32 parameters, gradients and momentum at the peak
        notebook_case("model", model_cells(args.params), args.rounds, gigabytes=held)


if __name__ == "__main__":
    main()
