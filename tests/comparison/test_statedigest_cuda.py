"""State digests of tensors on a real GPU (marked `cuda`: skipped without one)."""

from __future__ import annotations

import pytest
import torch

from ipyrepro.comparison.statedigest import StateDigester

pytestmark = pytest.mark.cuda


def test_gpu_state_digests_as_the_same_data_on_the_cpu_and_reads_the_cuda_generators() -> None:
    weights = torch.randn(1 << 20, device="cuda")
    digester = StateDigester()
    on_gpu = digester.digest({"weights": weights}, {}, None)
    on_cpu = digester.digest({"weights": weights.cpu()}, {}, None)
    assert on_gpu["names"]["weights"]["digest"] == on_cpu["names"]["weights"]["digest"]
    assert "<torch.cuda:0>" in on_gpu["rngs"]  # CUDA was initialised by the notebook: its generators count
    digester.configure(True, [])
    nudged = digester.digest({"weights": weights + 1e-7}, {}, None)["names"]["weights"]
    assert nudged["floats"][0]["stats"]["numel"] == 1 << 20  # statistics taken on the device
