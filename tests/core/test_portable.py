"""The portable profile: what it pins at start, what it sets at run time, and what it says is missing."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from ipyrepro.core.portable import ARM_START_VARIABLES, start_variables

PROBE = (
    "import json, torch\n"
    "from ipyrepro.core import portable\n"
    "report = portable.apply_runtime()\n"
    "print(json.dumps({'text': report.text(), 'in_force': portable.in_force(), "
    "'capability': str(torch.backends.cpu.get_cpu_capability()), 'threads': torch.get_num_threads(), "
    "'tf32': torch.backends.cudnn.allow_tf32, 'precision': torch.backends.fp32_precision}))"
)


def probe(env: dict[str, str]) -> dict[str, object]:
    base = {key: value for key, value in os.environ.items() if key not in start_variables()}
    done = subprocess.run(
        [sys.executable, "-c", PROBE], env={**base, **env}, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_start_variables_by_architecture() -> None:
    assert start_variables("x86_64") == {
        "ATEN_CPU_CAPABILITY": "avx2",
        "ONEDNN_MAX_CPU_ISA": "AVX2",
        "MKL_ENABLE_INSTRUCTIONS": "AVX2",
        "MKL_CBWR": "AVX2",
        "OMP_NUM_THREADS": "4",
        "MKL_NUM_THREADS": "4",
    }
    assert start_variables("aarch64")["ATEN_CPU_CAPABILITY"] == ARM_START_VARIABLES["ATEN_CPU_CAPABILITY"]
    assert "ONEDNN_MAX_CPU_ISA" not in start_variables("arm64")


def test_in_a_running_process_it_names_what_needs_a_restart() -> None:
    found = probe({})
    assert found["in_force"] is False
    assert found["threads"] == 4 and found["tf32"] is False and found["precision"] == "ieee"
    assert "Not in force until the kernel restarts: ATEN_CPU_CAPABILITY=avx2 (now unset)" in found["text"]
    assert "ipyrepro kernel install --portable" in found["text"]


def test_started_with_the_variables_it_is_in_force() -> None:
    found = probe(start_variables())
    assert found["in_force"] is True
    assert "Not in force" not in found["text"]
    assert found["capability"] in ("AVX2", "DEFAULT")
