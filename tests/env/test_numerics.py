"""The numerics environment: what it reads, read without initialising CUDA; the GPU parts where a GPU is present."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from ipyrepro.causes.opcompare import CellTrace
from ipyrepro.causes.optrace import OpTracer, op_digest
from ipyrepro.env.numerics import numerics_environment

PROBE = (
    "import json, torch\n"
    "from ipyrepro.env.numerics import numerics_environment\n"
    "env = numerics_environment()\n"
    "print(json.dumps([env, torch.cuda.is_initialized()]))"
)


def probe(extra: dict[str, str]) -> tuple[dict, bool]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE], env={**os.environ, **extra}, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    env, initialised = json.loads(done.stdout)
    return env, initialised


def test_reads_the_isa_threads_and_variables_of_the_process() -> None:
    env, initialised = probe({"ATEN_CPU_CAPABILITY": "default", "OMP_NUM_THREADS": "1", "MKL_CBWR": "AVX2"})
    assert not initialised
    assert env["cpu"]["capability"] == "DEFAULT"
    assert env["threads"]["intra_op"] == 1
    assert env["variables"]["MKL_CBWR"] == "AVX2" and env["variables"]["ATEN_CPU_CAPABILITY"] == "default"
    assert env["software"]["torch"] == torch.__version__
    sections = {"schema", "software", "gpu", "cpu", "threads", "variables", "precision", "determinism", "ipyrepro"}
    assert set(env) == sections
    assert "float32_matmul_precision" in env["precision"]


def test_records_ipyrepro_state() -> None:
    import ipyrepro

    ipyrepro.enable(5, reseed="source")
    from ipyrepro.core.state import STATE

    recorded = numerics_environment(STATE)["ipyrepro"]
    assert recorded == {"enabled": True, "seed": 5, "reseed": "source", "portable": False}
    assert not torch.cuda.is_initialized() or torch.cuda.is_available()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_gpu_facts_and_device_digests() -> None:  # pragma: no cover - runs where a GPU is present
    env, initialised = probe({})
    assert not initialised
    assert env["gpu"]["names"] and env["gpu"]["capability"]
    data = torch.randn(1000, 1000, device="cuda")
    assert op_digest(data) == op_digest(data.clone())
    trace = CellTrace("gpu")
    with OpTracer(trace):
        (data @ data).sum()
    assert [op.device for op in trace.ops] == ["cuda", "cuda"]
    after = numerics_environment()
    assert after["software"]["cublas"] is not None
