"""The portable profile from every face: `%repro on --portable`, enable(portable=True), the panel, the kernelspec."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from jupyter_client.kernelspec import KernelSpecManager

import ipyrepro
from ipyrepro.cli import main
from ipyrepro.core.portable import start_variables
from ipyrepro.core.state import STATE
from ipyrepro.notebooks.kernelrun import running_kernel


@pytest.fixture(autouse=True)
def torch_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The profile changes threads and precision; put them back. Its start variables stay out of this process."""
    for name in start_variables():
        monkeypatch.delenv(name, raising=False)
    threads, precision = torch.get_num_threads(), torch.get_float32_matmul_precision()
    tf32 = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    fp32 = torch.backends.fp32_precision
    yield
    torch.set_num_threads(threads)
    torch.backends.fp32_precision = fp32
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32
    torch.set_float32_matmul_precision(precision)


def test_repro_on_portable_applies_what_it_can_and_names_the_restart(ip, capsys) -> None:
    ip.run_line_magic("repro", "on --portable")
    out = capsys.readouterr().out
    assert "Portable profile: 4 intra-op threads" in out
    assert "TF32 off and fp32 precision IEEE on every backend" in out
    assert "Not in force until the kernel restarts: ATEN_CPU_CAPABILITY=avx2 (now unset)" in out
    assert "run `ipyrepro kernel install --portable`" in out
    assert torch.get_num_threads() == 4 and not torch.backends.cudnn.allow_tf32
    assert torch.backends.fp32_precision == "ieee"
    status = str(ip.run_line_magic("repro", "status"))
    assert "portable profile          partly" in status
    assert "The portable profile is only partly in force; missing: ATEN_CPU_CAPABILITY=avx2" in status


def test_enable_portable_and_the_environment_report() -> None:
    assert ipyrepro.status().portable == "off"
    status = ipyrepro.enable(portable=True)
    assert status.portable == "partly"
    assert "MKL_CBWR=AVX2 (now unset)" in status.portable_missing
    assert ipyrepro.env_report().sections["determinism"]["portable_profile"] == "partly"
    with pytest.raises(ValueError, match="portable must be True or False"):
        ipyrepro.enable(portable="yes")  # type: ignore[arg-type]


def test_panel_button_applies_the_profile_and_shows_what_is_missing() -> None:
    panel = ipyrepro.panel()
    try:
        assert panel.portable_state.value == "off"
        panel.portable.click()
        assert STATE.portable
        assert panel.portable_state.value.startswith("partly: missing ATEN_CPU_CAPABILITY=avx2 (now unset)")
        assert "portable profile" in panel.status_view.value
        assert torch.get_num_threads() == 4
    finally:
        panel.close()


def test_kernel_install_portable_starts_a_kernel_with_the_profile_in_force(tmp_path: Path, capsys) -> None:
    assert main(["kernel", "install", "--prefix", str(tmp_path), "--name", "portable", "--portable"]) == 0
    assert "ATEN_CPU_CAPABILITY=avx2" in capsys.readouterr().out
    spec = json.loads((tmp_path / "share" / "jupyter" / "kernels" / "portable" / "kernel.json").read_text())
    assert spec["env"]["ATEN_CPU_CAPABILITY"] == "avx2" and spec["env"]["OMP_NUM_THREADS"] == "4"
    assert spec["metadata"]["ipyrepro"]["portable"] is True
    assert any(line.endswith("%repro on --seed 0 --portable") for line in spec["argv"])
    manager = KernelSpecManager(kernel_dirs=[str(tmp_path / "share" / "jupyter" / "kernels")])
    with running_kernel("portable", kernel_spec_manager=manager) as kernel:
        done = kernel.execute(
            "import json, torch, ipyrepro\n"
            "print(json.dumps([ipyrepro.status().portable, str(torch.backends.cpu.get_cpu_capability())]))",
            "status",
        )
    assert done.status == "ok", done.error_text
    state, capability = json.loads(done.stdout)
    assert state == "in force"
    assert capability in ("AVX2", "DEFAULT")
