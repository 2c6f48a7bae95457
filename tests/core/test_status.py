"""Status tells the truth, names cause and fix, and never initialises CUDA by looking."""

from __future__ import annotations

import os
import sys

import pytest
import torch

import ipyrepro
from ipyrepro.core.state import STATE
from ipyrepro.core.torchinfo import (
    CUBLAS_FACTS,
    cublas_facts,
    installed_version,
    late_cublas_message,
    parse_version,
)


def messages(status) -> str:
    return "\n".join(status.warnings + status.notes)


def test_status_reads_user_changes_live_and_marks_drift() -> None:
    ipyrepro.enable()
    torch.backends.cudnn.benchmark = True
    status = ipyrepro.status()
    assert status.cudnn_benchmark is True
    assert status.drift == {"cudnn_benchmark": {"expected": False, "actual": True}}
    assert "drifted" in str(status) and "#fff3cd" in status._repr_html_()


def test_no_drift_is_reported_while_off() -> None:
    torch.backends.cudnn.benchmark = True
    assert ipyrepro.status().drift == {}


def test_python_hash_seed_unset_is_noted_with_the_fix(monkeypatch) -> None:
    monkeypatch.delenv("PYTHONHASHSEED", raising=False)
    status = ipyrepro.status()
    assert status.python_hash_seed is None
    assert any("PYTHONHASHSEED" in note and "kernel install" in note for note in status.notes)
    monkeypatch.setenv("PYTHONHASHSEED", "0")
    assert not any("PYTHONHASHSEED" in note for note in ipyrepro.status().notes)


def test_text_and_html_show_every_setting_and_escape_values(monkeypatch) -> None:
    monkeypatch.setenv("CUDA_LAUNCH_BLOCKING", "<1>")
    status = ipyrepro.enable(12)
    text, page = str(status), status._repr_html_()
    for label in ("cudnn.benchmark", "deterministic algorithms", "CUBLAS_WORKSPACE_CONFIG", "PYTHONHASHSEED"):
        assert label in text and label in page
    assert "CUDA_LAUNCH_BLOCKING" in text and "&lt;1&gt;" in page
    assert status.to_dict()["cuda_launch_blocking"] == "<1>"


@pytest.mark.parametrize(
    ("version", "severity", "words"),
    [
        ((2, 1), "warning", "requires it"),
        ((2, 9), "warning", "restart the kernel"),
        ((2, 10), "note", "re-reads the size"),
        ((2, 12), "note", "re-reads the size"),
        ((2, 13), "note", "freezes the workspace size"),
        ((3, 0), "note", "freezes the workspace size"),
    ],
)
def test_late_cublas_message_per_torch_version(version, severity, words) -> None:
    got_severity, text = late_cublas_message(":4096:8", version)
    assert got_severity == severity
    assert words in text and f"torch {version[0]}.{version[1]}" in text


def test_cublas_table_covers_every_version_once() -> None:
    for version in [(1, 13), (2, 0), (2, 9), (2, 10), (2, 12), (2, 13), (2, 20), (4, 0)]:
        assert sum(facts.covers(version) for facts in CUBLAS_FACTS) == 1
    assert cublas_facts((2, 9)).needs_variable and not cublas_facts((2, 10)).needs_variable


def test_parse_version_reads_local_and_prerelease_versions() -> None:
    assert parse_version("2.13.0+cpu") == (2, 13)
    assert parse_version("2.10.0a0+git123") == (2, 10)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("__version__ = '2.13.0+cpu'\n", "2.13.0+cpu"),
        ('from typing import Optional\n__all__ = ["__version__"]\nversion: str = "1.2.3"  # local\n', "1.2.3"),
        ("__version__ == 'no'\nversion = compute()\n", "9.9"),  # neither is an assignment of a string
    ],
)
def test_an_installed_version_is_read_from_version_py_without_importing_the_package(
    source: str, expected: str, tmp_path, monkeypatch
) -> None:
    package = tmp_path / "fakeversioned"
    package.mkdir()
    (package / "__init__.py").write_text("raise RuntimeError('imported')\n")
    (package / "version.py").write_text(source)
    info = tmp_path / "fakeversioned-9.9.dist-info"  # the metadata's version: the fallback
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fakeversioned\nVersion: 9.9\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    installed_version.cache_clear()
    try:
        assert installed_version("fakeversioned") == expected
    finally:
        installed_version.cache_clear()
    assert "fakeversioned" not in sys.modules


def test_setting_cublas_after_cuda_init_is_reported_for_the_installed_torch(fake_gpu, monkeypatch) -> None:
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    STATE.reset()
    ipyrepro.status()  # ipyrepro sees CUDA uninitialised, with the variable unset
    fake_gpu.initialized = True  # the user's code runs something on the GPU
    status = ipyrepro.enable()  # sets the variable: too late
    severity, expected = late_cublas_message(":4096:8")
    assert expected in (status.warnings if severity == "warning" else status.notes)
    assert fake_gpu.lazy_init_calls == []


def test_cublas_set_before_cuda_init_is_not_reported(fake_gpu, monkeypatch) -> None:
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    STATE.reset()
    ipyrepro.enable()
    fake_gpu.initialized = True
    assert "after CUDA was already initialised" not in messages(ipyrepro.status())


def test_a_user_change_of_the_variable_after_cuda_init_is_reported(ip, fake_gpu, monkeypatch) -> None:
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    ip.run_cell("x = 1")  # a cell runs while CUDA is not initialised
    fake_gpu.initialized = True
    ip.run_cell("y = 2")  # the cell that used the GPU first
    ip.run_cell("import os; os.environ['CUBLAS_WORKSPACE_CONFIG'] = ':16:8'")
    assert "was set to ':16:8' after CUDA was already initialised" in messages(ipyrepro.status())


def test_on_torch_2_9_a_late_variable_is_a_warning_with_the_fix(fake_gpu, monkeypatch) -> None:
    monkeypatch.setattr(torch, "__version__", "2.9.1+cu126")
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    STATE.reset()
    ipyrepro.status()
    fake_gpu.initialized = True
    with pytest.warns(ipyrepro.ReproWarning, match="restart the kernel"):
        status = ipyrepro.enable()
    assert any("torch 2.9" in warning for warning in status.warnings)


def test_on_torch_2_9_deterministic_mode_without_the_variable_is_a_warning(fake_gpu, monkeypatch) -> None:
    monkeypatch.setattr(torch, "__version__", "2.9.0")
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    STATE.reset()
    ipyrepro.status()
    fake_gpu.initialized = True
    torch.use_deterministic_algorithms(True)
    assert any("needs :4096:8 or :16:8" in warning for warning in ipyrepro.status().warnings)


def test_a_cell_that_sets_the_variable_before_using_the_gpu_is_in_time(ip, fake_gpu, monkeypatch) -> None:
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    ip.run_cell("x = 1")
    ip.user_ns["gpu"] = fake_gpu
    ip.run_cell("import os\nos.environ['CUBLAS_WORKSPACE_CONFIG'] = ':4096:8'\ngpu.initialized = True  # model.cuda()")
    assert "after CUDA was already initialised" not in messages(ipyrepro.status())


def test_cuda_initialised_before_ipyrepro_loaded_is_noted_when_enabled(fake_gpu, monkeypatch) -> None:
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    fake_gpu.initialized = True
    STATE.reset()  # ipyrepro first looks after CUDA is up
    assert "initialised before ipyrepro could see it" in messages(ipyrepro.enable())


def test_status_magic_and_json_never_initialise_cuda(ip, fake_gpu, capsys) -> None:
    for line in ("", "status", "status --json", "on", "seed 3", "reseed fixed", "off"):
        ip.run_line_magic("repro", line)
    ip.run_cell("x = 1", cell_id="c1")
    str(ipyrepro.status()), ipyrepro.status()._repr_html_()
    assert fake_gpu.lazy_init_calls == []
    assert torch.cuda.is_initialized() is False


def test_status_reports_cuda_available_but_not_initialised(fake_gpu) -> None:
    status = ipyrepro.status()
    assert (status.cuda_available, status.cuda_initialized) == (True, False)
    assert "available, not initialised" in str(status)


def test_precision_flags_that_this_torch_has_are_shown() -> None:
    precision = ipyrepro.status().precision
    assert precision["float32_matmul_precision"] == torch.get_float32_matmul_precision()
    if hasattr(torch.backends.cuda.matmul, "allow_tf32"):
        assert "cuda.matmul.allow_tf32" in precision


def test_cuda_launch_blocking_is_shown_but_never_set(monkeypatch) -> None:
    monkeypatch.delenv("CUDA_LAUNCH_BLOCKING", raising=False)
    ipyrepro.enable()
    assert "CUDA_LAUNCH_BLOCKING" not in os.environ
