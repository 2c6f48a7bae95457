"""`ipyrepro status` from the command line, in a fresh process."""

from __future__ import annotations

import json
import subprocess
import sys


def ipyrepro(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ipyrepro", *args], capture_output=True, text=True, env=env)


def test_status_json_reports_the_process_settings() -> None:
    result = ipyrepro("status", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["enabled"] is False and data["cuda_initialized"] is False
    assert data["deterministic_algorithms"] == "off"


def test_status_text_names_the_settings() -> None:
    result = ipyrepro("status")
    assert result.returncode == 0 and "ipyrepro is OFF" in result.stdout and "cudnn.benchmark" in result.stdout


def test_unknown_command_exits_2_with_usage() -> None:
    result = ipyrepro("frobnicate")
    assert result.returncode == 2 and "usage: ipyrepro" in result.stderr
