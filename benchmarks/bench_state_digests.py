"""What per-cell state digests add to `ipyrepro check`, as a ratio to the same check with `--no-state`, in one run.

    python benchmarks/bench_state_digests.py [--rounds 3] [--params 100]

The notebook holds a model of about `--params` million float32 parameters (400 MB at 100), an SGD optimizer
with momentum (as much again in its state), and a few cells that run a forward and backward pass, step and print
the loss; every cell's state is digested in both kernels. Target: <= 1.10x (issue 19).

Rounds alternate with and without digests so that machine drift hits both alike; medians are shown, with the
digest time the kernels themselves measured (the JSON's state.digest_seconds).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import nbformat

TARGET = 1.10


def notebook(path: Path, millions: int) -> Path:
    width = int((millions * 1_000_000 / 4) ** 0.5)  # four square layers
    cells = [
        "import torch\ntorch.set_num_threads(1)",
        f"model = torch.nn.Sequential(*[torch.nn.Linear({width}, {width}, bias=False) for _ in range(4)])\n"
        "params = sum(p.numel() for p in model.parameters())",
        f"optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)\nbatch = torch.randn(64, {width})",
        "loss = model(batch).pow(2).mean()\nloss.backward()",
        "optimizer.step()\noptimizer.zero_grad()",
        "loss = model(batch).pow(2).mean()",
        "print(f'{params / 1e6:.0f}M parameters, loss {loss.item():.4f}')",
    ]
    book = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3"}})
    book.cells = [nbformat.v4.new_code_cell(source, id=f"c{index}") for index, source in enumerate(cells)]
    nbformat.write(book, path)
    return path


def timed(path: Path, state: bool) -> tuple[float, float]:
    from ipyrepro.notebooks.check import check

    start = time.perf_counter()
    report = check(path, runs=2, jobs=1, state=state, causes=False)
    elapsed = time.perf_counter() - start
    if report.exit_code != 0:
        raise SystemExit(f"the benchmark notebook did not reproduce:\n{report}")
    return elapsed, report.state.seconds if state else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--params", type=int, default=100, help="millions of parameters (default 100)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = notebook(Path(folder) / "model.ipynb", args.params)
        plain, digested, digest_seconds = [], [], []
        for _ in range(args.rounds):
            plain.append(timed(path, False)[0])
            elapsed, seconds = timed(path, True)
            digested.append(elapsed)
            digest_seconds.append(seconds)
            print(f"  round: --no-state {plain[-1]:.2f} s, state {elapsed:.2f} s ({seconds:.2f} s digesting)")
    base, subject = statistics.median(plain), statistics.median(digested)
    ratio = statistics.median(b / a for a, b in zip(plain, digested))  # each round's pair ran back to back
    share = statistics.median(digest_seconds) / base
    print(
        f"{args.params}M-parameter notebook, 2 runs one after the other: --no-state {base:.2f} s, "
        f"with state digests {subject:.2f} s, {ratio:.3f}x (target <= {TARGET}x: "
        f"{'met' if ratio <= TARGET else 'MISSED'}); the kernels spent {statistics.median(digest_seconds):.2f} s "
        f"digesting, {share:.1%} of the --no-state time"
    )


if __name__ == "__main__":
    main()
