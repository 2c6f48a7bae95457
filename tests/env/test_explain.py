"""`ipyrepro explain A.json B.json` on fingerprints written by hand: one difference at a time, GPU fields included."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

GPU_MACHINE: dict[str, Any] = {
    "schema": 1,
    "software": {
        "python": "3.11.7",
        "torch": "2.13.0+cu126",
        "numpy": "2.4.6",
        "cuda": "12.6",
        "hip": None,
        "cudnn": 91000,
        "cublas": "12.6.4",
    },
    "gpu": {
        "names": ["NVIDIA A100-SXM4-80GB"],
        "capability": ["8.0"],
        "driver": "560.35.03",
        "cuda_driver": "12.6",
        "source": "nvml",
    },
    "cpu": {
        "model": "AMD EPYC 7763 64-Core Processor",
        "machine": "x86_64",
        "capability": "AVX2",
        "blas": "mkl",
        "mkl": "Intel(R) oneAPI Math Kernel Library Version 2024.2-Product Build 20240605",
        "onednn": "v3.12.0",
        "openmp": "201511",
    },
    "threads": {"intra_op": 4, "inter_op": 4},
    "variables": {"ATEN_CPU_CAPABILITY": None, "OMP_NUM_THREADS": None, "CUBLAS_WORKSPACE_CONFIG": ":4096:8"},
    "precision": {
        "float32_matmul_precision": "highest",
        "cuda.matmul.allow_tf32": False,
        "cudnn.allow_tf32": False,
        "cuda.matmul.fp32_precision": "ieee",
        "cudnn.conv.fp32_precision": "ieee",
    },
    "determinism": {"cudnn_benchmark": False, "cudnn_deterministic": True, "deterministic_algorithms": "error"},
    "ipyrepro": {"enabled": True, "seed": 0, "reseed": "cell", "portable": False},
}


def cpu_machine() -> dict[str, Any]:
    env = copy.deepcopy(GPU_MACHINE)
    env["software"].update(torch="2.13.0+cpu", cuda=None, cudnn=None, cublas=None)
    env["gpu"] = {"names": [], "capability": None, "driver": None, "cuda_driver": None, "source": None}
    return env


def fingerprint(env: dict[str, Any]) -> dict[str, Any]:
    return {"format": "ipyrepro.notebook-fingerprint", "schema": 1, "environment": env}


def explain(tmp_path: Path, a: dict[str, Any], b: dict[str, Any], *options: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "a.json").write_text(json.dumps(fingerprint(a)))
    (tmp_path / "b.json").write_text(json.dumps(fingerprint(b)))
    return subprocess.run(
        [sys.executable, "-m", "ipyrepro", "explain", "a.json", "b.json", *options],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_identical_fingerprints_expect_bitwise_equality(tmp_path: Path) -> None:
    done = explain(tmp_path, GPU_MACHINE, GPU_MACHINE)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(
        "Bitwise equality expected: same software, same ISA, same precision settings, "
        "so a difference is a bug or hidden randomness."
    )
    assert "No environment differences that can change numbers." in done.stdout


def test_thread_count_only(tmp_path: Path) -> None:
    other = copy.deepcopy(GPU_MACHINE)
    other["threads"]["intra_op"] = 16
    done = explain(tmp_path, GPU_MACHINE, other)
    assert done.returncode == 1
    first = done.stdout.splitlines()[0]
    assert first.startswith("Bitwise equality not expected: intra-op threads 4 in a.json, 16 in b.json")
    assert "portable profile" in first
    assert "parallel reductions" in done.stdout


def test_tf32_only_on_gpu_machines(tmp_path: Path) -> None:
    other = copy.deepcopy(GPU_MACHINE)
    other["precision"]["cuda.matmul.allow_tf32"] = True
    other["precision"]["cuda.matmul.fp32_precision"] = "tf32"
    done = explain(tmp_path, GPU_MACHINE, other)
    assert done.returncode == 1
    first = done.stdout.splitlines()[0]
    assert "Bitwise equality not expected: TF32 / fp32 precision" in first
    assert "False in a.json, True in b.json" in first
    assert "turn TF32 off on both" in first


def test_tf32_only_without_gpu_cannot_matter(tmp_path: Path) -> None:
    other = cpu_machine()
    other["precision"]["cuda.matmul.allow_tf32"] = True
    done = explain(tmp_path, cpu_machine(), other)
    assert done.returncode == 0, done.stdout
    assert done.stdout.startswith("Bitwise equality expected")
    assert "cannot change numbers here: precision.cuda.matmul.allow_tf32" in done.stdout


def test_torch_version_only(tmp_path: Path) -> None:
    other = copy.deepcopy(GPU_MACHINE)
    other["software"]["torch"] = "2.12.1+cu126"
    done = explain(tmp_path, GPU_MACHINE, other)
    assert done.returncode == 1
    assert done.stdout.splitlines()[0] == (
        "Bitwise equality not expected: torch 2.13.0+cu126 in a.json, 2.12.1+cu126 in b.json; "
        "install the same torch version on both."
    )


def test_gpu_model_and_cudnn_rank_above_the_driver(tmp_path: Path) -> None:
    other = copy.deepcopy(GPU_MACHINE)
    other["gpu"].update(names=["NVIDIA H100 80GB HBM3"], capability=["9.0"], driver="570.86.15")
    other["software"]["cudnn"] = 90100
    done = explain(tmp_path, GPU_MACHINE, other, "--json")
    assert done.returncode == 1
    report = json.loads(done.stdout)["environment"]
    fields = [d["field"] for d in report["differences"]]
    assert fields[-1] == "gpu.driver"  # rarely changes numbers: ranked last
    assert {"gpu.names", "gpu.capability", "software.cudnn"} <= set(fields[:3])
    assert report["bitwise_expected"] is False
    assert report["verdict"].startswith("Bitwise equality not expected: GPU NVIDIA A100-SXM4-80GB in a.json")


def test_cpu_capability(tmp_path: Path) -> None:
    other = cpu_machine()
    other["cpu"]["capability"] = "AVX512"
    done = explain(tmp_path, other, cpu_machine())
    assert done.returncode == 1
    expected = "Bitwise equality not expected: CPU kernels AVX512 in a.json, AVX2 in b.json; run both"
    assert done.stdout.startswith(expected)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{", "is not valid JSON"),
        ('{"format": "something else"}', "is not a notebook fingerprint"),
        ('{"format": "ipyrepro.notebook-fingerprint", "schema": 99, "environment": {}}', "newer than this ipyrepro"),
        ('{"format": "ipyrepro.notebook-fingerprint", "schema": 1}', 'missing "environment"'),
    ],
)
def test_bad_files_exit_2_and_say_why(tmp_path: Path, content: str, message: str) -> None:
    (tmp_path / "a.json").write_text(json.dumps(fingerprint(GPU_MACHINE)))
    (tmp_path / "b.json").write_text(content)
    done = subprocess.run(
        [sys.executable, "-m", "ipyrepro", "explain", "a.json", "b.json"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert message in done.stderr
    assert "b.json" in done.stderr
    assert done.stdout == ""


def test_explain_never_imports_torch(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text(json.dumps(fingerprint(GPU_MACHINE)))
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "ipyrepro", "explain", "a.json", "a.json"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    modules = {line.rsplit("|", 1)[1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
    assert "torch" not in modules and "numpy" not in modules
