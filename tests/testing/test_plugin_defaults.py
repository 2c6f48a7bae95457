"""The pytest plugin follows the same rule: `@pytest.mark.repro` without a seed takes the kernel's
(IPYREPRO_SEED), and `pytest --ipyrepro` checks a notebook with the seed of the kernelspec it runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from ipyrepro.cli import main

MARKER_TESTS = """
import ipyrepro, pytest

@pytest.mark.repro
def test_takes_the_kernels_settings():
    s = ipyrepro.status()
    assert (s.seed, s.reseed, s.deterministic_algorithms) == ({seed}, {reseed!r}, {deterministic!r})

@pytest.mark.repro(seed=3, warn_only=False)
def test_explicit_wins():
    s = ipyrepro.status()
    assert (s.seed, s.deterministic_algorithms) == (3, "error")
"""


def test_marker_without_a_seed_takes_the_kernels(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IPYREPRO_SEED", "42")
    monkeypatch.setenv("IPYREPRO_RESEED", "source")
    monkeypatch.setenv("IPYREPRO_DETERMINISTIC", "warn")
    pytester.makepyfile(MARKER_TESTS.format(seed=42, reseed="source", deterministic="warn"))
    pytester.runpytest_subprocess("-p", "no:randomly").assert_outcomes(passed=2)


def test_marker_without_a_seed_or_kernel_variables_uses_the_built_in(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("IPYREPRO_SEED", "IPYREPRO_RESEED", "IPYREPRO_DETERMINISTIC"):
        monkeypatch.delenv(name, raising=False)
    pytester.makepyfile(MARKER_TESTS.format(seed=0, reseed="cell", deterministic="error"))
    pytester.runpytest_subprocess("-p", "no:randomly").assert_outcomes(passed=2)


@pytest.mark.kernel
def test_ipyrepro_option_checks_with_the_kernelspecs_seed(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(tmp_path / "jupyter-data"))
    assert main(["kernel", "install", "--name", "repro42", "--seed", "42", "--reseed", "source"]) == 0
    notebook = new_notebook(metadata={"kernelspec": {"name": "repro42", "display_name": "repro42"}})
    notebook.cells = [
        new_code_cell("%repro on", id="on"),
        new_markdown_cell("The kernel's seed, whatever the plugin's defaults.", id="note"),
        new_code_cell("import ipyrepro\nassert (ipyrepro.status().seed, ipyrepro.status().reseed) == (42, 'source')"),
    ]
    (pytester.path / "kernel_seed.ipynb").write_text(json.dumps(notebook))
    result = pytester.runpytest_subprocess("-p", "no:randomly", "--ipyrepro", "--ipyrepro-runs", "2")
    result.assert_outcomes(passed=2)
