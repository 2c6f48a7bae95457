"""`%%repro`'s comparing, snapshot and fingerprints on a real GPU (marked `cuda`: skipped without one)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

import ipyrepro
from ipyrepro.comparison import digests
from ipyrepro.comparison import fingerprint as fp
from ipyrepro.comparison.values import DIFFERS, IDENTICAL, compare_values

pytestmark = pytest.mark.cuda


def test_cuda_tensors_compare_on_the_gpu() -> None:
    a = torch.randn(1000, device="cuda")
    b = a.clone()
    b[123] = float("nan")
    assert compare_values(a, a.clone(), "x").status == IDENTICAL
    outcome = compare_values(a, b, "x")
    assert outcome.status == DIFFERS and outcome.first_index == (123,) and "NaN in one run only" in outcome.detail
    assert "device cuda:0 vs cpu" in compare_values(a, a.cpu(), "x").detail


def test_a_digest_does_not_depend_on_the_device() -> None:
    x = torch.randn(3, 5, device="cuda")
    assert digests.tensor_digest(x) == digests.tensor_digest(x.cpu())
    assert digests.tensor_stats(x)["numel"] == 15


def test_cell_on_the_gpu_reports_snapshot_per_device_and_checks_a_saved_file(ip: Any, tmp_path: Path) -> None:
    ip.run_cell("import torch\nw = torch.zeros(1024, device='cuda')")
    path = tmp_path / "gpu.json"
    report = ip.run_cell_magic("repro", f"--save {path}", "w.add_(1)\ny = w * torch.rand(1024, device='cuda')")
    assert report.ok, report
    assert report.snapshot_by_device == {"cuda:0": 4096}
    assert fp.load(path).environment["gpus"]  # CUDA is initialised, so the GPU name is recorded
    assert ip.run_cell_magic("repro", f"--check {path}", "w.add_(1)\ny = w * torch.rand(1024, device='cuda')").ok
    for name in ("w", "y"):
        ip.user_ns.pop(name)


def test_compare_names_a_cuda_op_without_a_deterministic_implementation() -> None:
    torch.manual_seed(0)
    index = torch.randint(0, 10, (100_000,), device="cuda")
    values = torch.randn(100_000, device="cuda")

    def racing() -> torch.Tensor:
        return torch.zeros(10, device="cuda").put_(index, values, accumulate=True)

    report = ipyrepro.compare(racing, runs=5)
    if report.ok:
        pytest.skip("the atomics did not race this time")
    assert report.diagnosis is not None and report.diagnosis.ops, report
