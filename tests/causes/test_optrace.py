"""--trace-ops: device digests, the user's line, the cap, and the first divergent op between two "machines"."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import torch

from ipyrepro.causes.opcompare import CellTrace, first_divergence, tie_to_environment, traces_from
from ipyrepro.causes.optrace import OpTracer, device_hash, op_digest

AVX2_LAPTOP = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}

TRAINING_STEP = textwrap.dedent(
    """
    import json, sys
    import torch
    import torch.nn.functional as F
    from ipyrepro.causes.opcompare import CellTrace
    from ipyrepro.causes.optrace import OpTracer

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(144, 10))
    images, labels = torch.randn(16, 1, 8, 8), torch.randint(0, 10, (16,))
    trace = CellTrace("step")
    with OpTracer(trace):
        logits = model(images)
        loss = F.cross_entropy(logits, labels)
        loss.backward()
    json.dump([trace.to_dict()], sys.stdout)
    """
)


def run_step(tmp_path: Path, extra_env: dict[str, str]) -> list[CellTrace]:
    script = tmp_path / "step.py"
    script.write_text(TRAINING_STEP)
    env = {key: value for key, value in os.environ.items() if key not in AVX2_LAPTOP}
    done = subprocess.run(
        [sys.executable, str(script)], env={**env, **extra_env}, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    return list(traces_from(json.loads(done.stdout)))


def test_first_divergent_op_between_avx512_and_avx2_kernels(tmp_path: Path) -> None:
    here, there = run_step(tmp_path, {}), run_step(tmp_path, AVX2_LAPTOP)
    assert first_divergence(here, run_step(tmp_path, {})) is None  # the same machine twice: the same bits
    divergence = first_divergence(here, there)
    assert divergence is not None
    if torch.backends.cpu.get_cpu_capability() != "AVX512":  # pragma: no cover - only on an AVX-512 CPU
        return
    assert divergence.here.op == "aten::convolution"
    assert divergence.same_inputs
    assert divergence.here.line == 13 and divergence.here.code == "logits = model(images)"
    tied = tie_to_environment(divergence, ["cpu_capability"], {"cpu_capability": ("AVX512", "AVX2")})
    assert tied.text() == (
        "aten::convolution at cell step, line 13 of step.py (logits = model(images)): same inputs, different outputs; "
        "explained by the CPU capability (AVX512 here, AVX2 there)"
    )


def test_backward_ops_are_traced_at_the_backward_line() -> None:
    trace = CellTrace("1")
    weights = torch.randn(3, 3, requires_grad=True)
    with OpTracer(trace):
        loss = (weights @ weights).sum()
        loss.backward()
    names = [(op.op, op.code) for op in trace.ops]
    assert ("aten::mm", "loss = (weights @ weights).sum()") in names
    assert any(code == "loss.backward()" and op == "aten::mm" for op, code in names)
    assert all(not op.startswith(("aten::view", "aten::t", "aten::detach")) for op, _ in names)


def test_in_place_ops_record_inputs_as_they_were() -> None:
    trace = CellTrace("1")
    values = torch.zeros(4)
    with OpTracer(trace):
        values.add_(1)
    (record,) = trace.ops
    assert record.inputs[0] == op_digest(torch.zeros(4))
    assert record.outputs[0] == op_digest(torch.ones(4))


def test_cap_stops_recording_and_says_so() -> None:
    trace = CellTrace("7", cap=3)
    with OpTracer(trace):
        for _ in range(5):
            torch.ones(2) + 1
    assert len(trace.ops) == 3 and trace.truncated > 0
    assert trace.note().startswith("cell 7: the op trace stopped at 3 ops")
    assert "IPYREPRO_TRACE_CAP" in trace.note()


def test_device_hash_is_exact_and_position_dependent() -> None:
    data = torch.arange(64, dtype=torch.uint8)
    swapped = data.clone()
    swapped[[0, 1]] = swapped[[1, 0]]
    assert device_hash(data) == device_hash(data.clone())
    assert device_hash(data) != device_hash(swapped)
    assert device_hash(data[:63]) != device_hash(data[:62])  # byte path (not a multiple of 4)
    floats = torch.tensor([0.0, -0.0])
    assert op_digest(floats[:1]) != op_digest(floats[1:])  # bits, not values


def test_op_digest_hashes_dtype_and_shape() -> None:
    assert op_digest(torch.zeros(4)) != op_digest(torch.zeros(2, 2))
    assert op_digest(torch.zeros(4)) != op_digest(torch.zeros(4, dtype=torch.int32))
    assert op_digest(torch.zeros(4, dtype=torch.bfloat16))
