"""A notebook that never imports torch is checked without torch: not in the check's client, not in its
kernels (the `%repro on` there waits for torch's import), not in a pytest session that collects it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

# Each kernel writes whether torch was imported when its cells ran, to a file named after its pid.
PROBE = (
    "import os, sys, pathlib\n"
    "pathlib.Path(os.environ['IPYREPRO_TEST_PROBE'], str(os.getpid())).write_text(str('torch' in sys.modules))"
)


def numpy_notebook(path: Path) -> Path:
    """nbformat 4.4 (no cell ids), markdown between code cells, outputs present, counts out of order."""
    notebook = new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3"}})
    notebook.nbformat_minor = 4
    cells = [
        new_markdown_cell("# NumPy only"),
        new_code_cell("import numpy as np\nx = np.random.rand(3)\nprint(x.round(6))", execution_count=3),
        new_markdown_cell("Is torch there?"),
        new_code_cell(PROBE, execution_count=1),
    ]
    cells[1].outputs = [nbformat.v4.new_output("stream", name="stdout", text="[0.1 0.2 0.3]\n")]
    for cell in cells:
        cell.pop("id", None)
    notebook.cells = cells
    nbformat.write(notebook, path)
    return path


def probes(folder: Path) -> list[str]:
    return sorted(path.read_text() for path in folder.iterdir())


CLIENT = """
import runpy, sys
sys.argv = ["ipyrepro", "check", {notebook!r}, "--quiet", "--jobs", {jobs!r}]
try:
    runpy.run_module("ipyrepro", run_name="__main__")
except SystemExit as done:
    code = done.code
print("CLIENT-TORCH", "torch" in sys.modules, "EXIT", code)
"""


@pytest.mark.kernel
@pytest.mark.parametrize("jobs", ["1", "2"])
def test_check_of_a_numpy_notebook_imports_torch_nowhere_and_still_reproduces(tmp_path: Path, jobs: str) -> None:
    notebook = numpy_notebook(tmp_path / "numpy.ipynb")
    probe = tmp_path / "probe"
    probe.mkdir()
    environment = {**os.environ, "IPYREPRO_TEST_PROBE": str(probe)}
    done = subprocess.run(
        [sys.executable, "-c", CLIENT.format(notebook=str(notebook), jobs=jobs)],
        capture_output=True,
        text=True,
        env=environment,
        timeout=600,
        check=False,
    )
    assert "CLIENT-TORCH False EXIT 0" in done.stdout, done.stdout[-2000:] + done.stderr[-3000:]
    assert probes(probe) == ["False", "False"]  # two kernels ran the notebook; neither imported torch


@pytest.mark.kernel
def test_pytest_plugin_checks_a_numpy_notebook_without_importing_torch(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    numpy_notebook(pytester.path / "numpy.ipynb")
    probe = pytester.path / "probe"
    probe.mkdir()
    pytester.makeconftest(
        """
        import sys

        def pytest_sessionfinish(session):
            with open("session-torch.txt", "w") as file:
                file.write(str("torch" in sys.modules))
        """
    )
    monkeypatch.setenv("IPYREPRO_TEST_PROBE", str(probe))
    result = pytester.runpytest_subprocess("--ipyrepro", "-p", "no:randomly", "-p", "no:nbval", "numpy.ipynb")
    result.assert_outcomes(passed=2)
    assert (pytester.path / "session-torch.txt").read_text() == "False"
    assert probes(probe) == ["False", "False"]


@pytest.mark.kernel
def test_a_differing_numpy_notebook_is_diagnosed_without_importing_torch(tmp_path: Path) -> None:
    notebook = new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3"}})
    notebook.cells = [
        new_code_cell("import numpy as np\nprint(np.random.default_rng().random())", id="unseeded"),
        new_markdown_cell("The probe runs after the traced cell"),
        new_code_cell(PROBE, id="probe"),
    ]
    path = tmp_path / "differs.ipynb"
    nbformat.write(notebook, path)
    probe = tmp_path / "probe"
    probe.mkdir()
    done = subprocess.run(
        [sys.executable, "-m", "ipyrepro", "check", str(path), "--quiet"],
        capture_output=True,
        text=True,
        env={**os.environ, "IPYREPRO_TEST_PROBE": str(probe)},
        timeout=600,
        check=False,
    )
    assert done.returncode == 1, done.stdout[-2000:] + done.stderr[-2000:]
    assert "np.random.default_rng()" in done.stdout  # the causes kernel named the line
    assert len(probes(probe)) == 3 and set(probes(probe)) == {"False"}  # two runs and the causes kernel
