"""The environment report: what it reads, that it never initialises CUDA, and its four renderings."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from IPython.core.error import UsageError

import ipyrepro
from ipyrepro.env import nvml
from ipyrepro.env.report import ENV_VARS, collect

FAKE_NVML = r"""
#include <string.h>
typedef void* nvmlDevice_t;
static int inited = 0;
static const char* names[] = {"NVIDIA H100 80GB HBM3", "NVIDIA H100 | PCIe"};
int nvmlInit_v2(void) { inited = 1; return 0; }
int nvmlShutdown(void) { inited = 0; return 0; }
int nvmlSystemGetDriverVersion(char* v, unsigned int n) { strncpy(v, "550.54.15", n); return inited ? 0 : 1; }
int nvmlSystemGetCudaDriverVersion_v2(int* v) { *v = 12040; return 0; }
int nvmlDeviceGetCount_v2(unsigned int* c) { *c = 2; return 0; }
int nvmlDeviceGetHandleByIndex_v2(unsigned int i, nvmlDevice_t* d) { *d = (nvmlDevice_t)(names[i]); return 0; }
int nvmlDeviceGetName(nvmlDevice_t d, char* n, unsigned int len) { strncpy(n, (const char*)d, len); return 0; }
"""


@pytest.fixture(scope="module")
def fake_nvml(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A shared library with NVML's C interface and two made-up GPUs, to exercise the ctypes binding."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        pytest.skip("needs a C compiler to build the fake NVML library")
    folder = tmp_path_factory.mktemp("nvml")
    source = folder / "fake_nvml.c"
    source.write_text(FAKE_NVML)
    library = folder / "libfake-nvml.so"
    subprocess.run([compiler, "-shared", "-fPIC", "-o", str(library), str(source)], check=True)
    return str(library)


def test_report_reads_versions_threads_and_env_vars(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONHASHSEED", "123")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1,0")
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    monkeypatch.delenv("CUDA_LAUNCH_BLOCKING", raising=False)
    report = ipyrepro.env_report().to_dict()
    assert report["versions"]["torch"] == torch.__version__
    assert report["versions"]["numpy"] == np.__version__
    assert report["versions"]["ipython"] and report["versions"]["ipykernel"]
    assert report["environment"] == {
        "CUBLAS_WORKSPACE_CONFIG": os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
        "CUDA_LAUNCH_BLOCKING": None,
        "PYTHONHASHSEED": "123",
        "CUDA_VISIBLE_DEVICES": "1,0",
    }
    assert report["cpu"]["torch_threads"] == torch.get_num_threads()
    assert report["cpu"]["OMP_NUM_THREADS"] == "3"
    assert report["precision"]["float32_matmul_precision"] == torch.get_float32_matmul_precision()
    assert not any("PYTHONHASHSEED" in note for note in report["notes"])


def test_report_shows_what_repro_on_put_in_force(ip, capsys: pytest.CaptureFixture[str]) -> None:
    ip.run_line_magic("repro", "on --seed 7 --warn-only --cublas :16:8")
    capsys.readouterr()
    ip.run_line_magic("repro", "env --json")
    report = json.loads(capsys.readouterr().out)
    assert report["determinism"]["ipyrepro"] == "on" and report["determinism"]["seed"] == 7
    assert report["determinism"]["deterministic_algorithms"] == "warn"
    assert report["determinism"]["cudnn_benchmark"] is False
    assert report["environment"]["CUBLAS_WORKSPACE_CONFIG"] == ":16:8"


def test_reading_on_a_gpu_machine_never_initialises_cuda(fake_gpu) -> None:
    report = collect()
    assert fake_gpu.lazy_init_calls == []
    assert report.sections["cuda"]["cuda_available"] is True
    assert report.sections["cuda"]["cuda_initialized"] is False
    assert report.sections["cuda"]["cudnn"] is None
    str(report), report._repr_html_(), report.to_markdown(), report.to_json()  # rendering reads nothing more
    assert fake_gpu.lazy_init_calls == []


def test_without_nvml_gpu_facts_are_unknown_and_say_why(fake_gpu) -> None:
    report = collect(nvml_library="/nonexistent/libnvidia-ml.so.1")
    assert report.sections["gpu"]["source"] is None and report.sections["gpu"]["count"] is None
    assert any("NVML" in note for note in report.notes)
    assert "unknown" in str(report)


def test_gpus_come_from_nvml_before_cuda_is_initialised(fake_gpu, fake_nvml, monkeypatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    report = collect(nvml_library=fake_nvml)
    assert report.sections["gpu"] == {
        "source": "nvml",
        "count": 2,
        "names": ["NVIDIA H100 80GB HBM3", "NVIDIA H100 | PCIe"],
        "driver": "550.54.15",
        "cuda_driver": "12.4",
    }
    assert any("CUDA_VISIBLE_DEVICES" in note for note in report.notes)
    assert fake_gpu.lazy_init_calls == []


def test_nvml_read_degrades_to_none_without_the_library() -> None:
    assert nvml.read("/nonexistent/libnvidia-ml.so.1") is None


def test_markdown_is_a_two_column_table_with_pipes_escaped(fake_gpu, fake_nvml) -> None:
    markdown = collect(nvml_library=fake_nvml).to_markdown()
    rows = [line for line in markdown.splitlines() if line.startswith("|")]
    assert rows[0] == "| Setting | Value |"
    for row in rows:
        cells = [cell for cell in row.replace("\\|", "").split("|")[1:-1]]
        assert len(cells) == 2, row
    assert "NVIDIA H100 \\| PCIe" in markdown and "**GPU**" in markdown


def test_html_escapes_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "<b>0</b>")
    page = collect()._repr_html_()
    assert "&lt;b&gt;0&lt;/b&gt;" in page and "<b>0</b>" not in page
    assert "Environment variables" in page


def test_magic_shows_the_report_and_rejects_two_formats(ip) -> None:
    report = ip.run_line_magic("repro", "env")
    assert "Environment report" in str(report) and all(name in str(report) for name in ENV_VARS)
    with pytest.raises(UsageError, match="not allowed with"):
        ip.run_line_magic("repro", "env --json --markdown")


def test_cli_prints_json_for_the_environment_it_runs_in(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONHASHSEED": "5", "CUDA_LAUNCH_BLOCKING": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "ipyrepro", "env", "--json"], env=env, capture_output=True, text=True, check=True
    )
    report = json.loads(done.stdout)
    assert report["environment"]["PYTHONHASHSEED"] == "5"
    assert report["environment"]["CUDA_LAUNCH_BLOCKING"] == "1"
    assert report["determinism"]["ipyrepro"] == "off"
    markdown = subprocess.run(
        [sys.executable, "-m", "ipyrepro", "env", "--markdown"], env=env, capture_output=True, text=True, check=True
    )
    assert markdown.stdout.startswith("| Setting | Value |")


REAL_GPU_SCRIPT = """
import json, torch
from ipyrepro.env.report import collect
before = collect().to_dict()
initialised_by_reading = torch.cuda.is_initialized()
torch.zeros(1, device="cuda")
after = collect().to_dict()
print(json.dumps({"before": before, "initialised_by_reading": initialised_by_reading, "after": after}))
"""


@pytest.mark.cuda
def test_on_a_real_gpu_nvml_answers_before_cuda_and_torch_after() -> None:
    done = subprocess.run([sys.executable, "-c", REAL_GPU_SCRIPT], capture_output=True, text=True, check=True)
    seen = json.loads(done.stdout)
    assert seen["initialised_by_reading"] is False
    before, after = seen["before"], seen["after"]
    assert before["cuda"]["cuda_initialized"] is False and after["cuda"]["cuda_initialized"] is True
    assert before["gpu"]["source"] == "nvml" and before["gpu"]["count"] >= 1 and before["gpu"]["driver"]
    assert after["gpu"]["source"] == "torch" and after["gpu"]["count"] == torch.cuda.device_count()
    assert set(after["gpu"]["names"]) <= set(before["gpu"]["names"])
    if torch.backends.cudnn.is_available():
        assert isinstance(after["cuda"]["cudnn"], int)
