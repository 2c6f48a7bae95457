"""Speed of `%%repro`'s comparing, fingerprinting and snapshotting, as ratios to baselines in the same run.

    python benchmarks/bench_compare.py [--mib 256] [--params 100e6] [--rounds 7] [--device cpu|cuda]

1. compare two equal 256 MiB float32 tensors (`ipyrepro.comparison.compare_tensors`, NaN-aware,
   bitwise) against `torch.equal` on the same data.            Target: <= 1.5x.
2. fingerprint one (`tensor_digest`: xxh3-128 of dtype, shape and bytes) against a plain copy
   of the same bytes into a preallocated buffer.               Target: <= 2x.
   Also shown: the full saved record (digest + summary statistics), and a copy that allocates.
   On a GPU the digest is computed on the host (xxHash is a CPU hash), so it is bounded by the
   device-to-host copy, also shown; the target is for data in host memory.
3. snapshot and restore of a model with about 100 M parameters (`Snapshot.take` / `restore`,
   deep copies with a shared memo) against cloning its state dict.  (No target: reported.)

Rounds are interleaved so machine drift hits baseline and subject alike; medians are shown.
GB/s is the size of one tensor (or the model) divided by the time.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from ipyrepro.comparison.digests import leaf_record, tensor_digest
from ipyrepro.comparison.snapshot import CellNames, Snapshot, format_bytes
from ipyrepro.comparison.values import Tolerance, compare_tensors


def timed(fn: Callable[[], object], sync: Callable[[], None]) -> float:
    sync()
    start = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - start


def interleaved(cases: dict[str, Callable[[], object]], rounds: int, sync: Callable[[], None]) -> dict[str, float]:
    for fn in cases.values():  # warm up: allocator, page faults, lazy init
        fn()
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(rounds):
        for name, fn in cases.items():
            samples[name].append(timed(fn, sync))
    return {name: statistics.median(values) for name, values in samples.items()}


def show(title: str, results: dict[str, float], baseline: str, nbytes: int, target: float | None = None) -> None:
    print(f"\n{title}")
    base = results[baseline]
    for name, seconds in results.items():
        ratio = seconds / base
        rate = nbytes / seconds / 1e9
        mark = ""
        if target is not None and name != baseline and not name.startswith("("):
            mark = f"   target <= {target}x: {'met' if ratio <= target else 'MISSED'}"
        print(f"  {name:<44} {seconds * 1e3:9.2f} ms  {rate:7.2f} GB/s  {ratio:5.2f}x{mark}")


def model_with(params: float, device: torch.device) -> torch.nn.Module:
    width = 2048
    per_layer = width * width + width
    layers = max(1, round(params / per_layer))
    return torch.nn.Sequential(*[torch.nn.Linear(width, width) for _ in range(layers)]).to(device)


def bench_compare(args: argparse.Namespace, device: torch.device, sync: Callable[[], None]) -> None:
    numel = args.mib * (1 << 20) // 4
    a = torch.randn(numel, device=device)
    b = a.clone()
    nbytes = a.numel() * a.element_size()
    exact = Tolerance()
    results = interleaved(
        {
            "torch.equal(a, b)": lambda: torch.equal(a, b),
            "compare_tensors(a, b) (bitwise, NaN-aware)": lambda: compare_tensors(a, b, "a", exact),
            "compare_tensors(a, b, rtol=1e-6)": lambda: compare_tensors(a, b, "a", Tolerance(rtol=1e-6)),
        },
        args.rounds,
        sync,
    )
    show(f"1. compare two equal {args.mib} MiB float32 tensors", results, "torch.equal(a, b)", nbytes, 1.5)
    b[numel // 2] += 1
    slow = interleaved(
        {
            "torch.equal(a, b)": lambda: torch.equal(a, b),
            "(one element differs: the detail path)": lambda: compare_tensors(a, b, "a", exact),
        },
        max(3, args.rounds // 2),
        sync,
    )
    show(
        "   ... and when one element differs (not a target; computes count, index, max diffs)",
        slow,
        "torch.equal(a, b)",
        nbytes,
    )


def bench_fingerprint(args: argparse.Namespace, device: torch.device, sync: Callable[[], None]) -> None:
    a = torch.randn(args.mib * (1 << 20) // 4, device=device)
    nbytes = a.numel() * a.element_size()
    buffer = torch.empty_like(a)
    results = interleaved(
        {
            "copy into a preallocated buffer": lambda: buffer.copy_(a),
            "tensor_digest(a) (xxh3-128)": lambda: tensor_digest(a),
            "(a.clone(): a copy that allocates)": lambda: a.clone(),
            "(leaf_record(a): digest + statistics)": lambda: leaf_record(a),
            **({"(a.cpu(): the host copy a digest needs)": lambda: a.cpu()} if device.type != "cpu" else {}),
        },
        args.rounds,
        sync,
    )
    show(f"2. fingerprint one {args.mib} MiB float32 tensor", results, "copy into a preallocated buffer", nbytes, 2.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mib", type=int, default=256, help="tensor size for compare and fingerprint (MiB)")
    parser.add_argument("--params", type=float, default=100e6, help="model size for snapshot/restore")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds; medians are reported")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    args = parser.parse_args()
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    print(f"torch {torch.__version__}, device {device}, {torch.get_num_threads()} CPU threads, {args.rounds} rounds")

    bench_compare(args, device, sync)
    bench_fingerprint(args, device, sync)
    model = model_with(args.params, device)
    count = sum(p.numel() for p in model.parameters())
    names = CellNames(bound=(), read=("model",))
    namespace = {"model": model}
    holder: dict[str, Snapshot] = {}

    def take() -> None:
        holder["snapshot"] = Snapshot.take(namespace, names)

    take()
    results = interleaved(
        {
            "clone every tensor of the state dict": lambda: {k: v.clone() for k, v in model.state_dict().items()},
            "Snapshot.take (deep copy)": take,
            "Snapshot.restore (a fresh deep copy)": lambda: holder["snapshot"].restore(dict(namespace)),
        },
        max(3, args.rounds // 2),
        sync,
    )
    model_bytes = count * 4
    show(
        f"3. snapshot/restore of a {count / 1e6:.0f} M-parameter model ({format_bytes(model_bytes)})",
        results,
        "clone every tensor of the state dict",
        model_bytes,
    )


if __name__ == "__main__":
    main()
