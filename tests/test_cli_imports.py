"""The CLI imports torch only in the commands that need it; the `check` client never does (its kernels do)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook


def imported_modules(*arguments: str, cwd: Path | None = None) -> tuple[int, set[str], str]:
    """Run `python -X importtime -m ipyrepro ARGS` in a fresh process: (exit code, modules imported, stdout)."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "ipyrepro", *arguments],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ},
        timeout=300,
        check=False,
    )
    modules = {line.rsplit("|", 1)[1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
    return done.returncode, modules, done.stdout


@pytest.mark.parametrize(
    "arguments",
    [["--help"], ["check", "--help"], ["kernel", "--help"], ["kernel", "install", "--help"]],
    ids=" ".join,
)
def test_help_never_imports_torch(arguments: list[str]) -> None:
    code, modules, stdout = imported_modules(*arguments)
    assert code == 0 and "usage: ipyrepro" in stdout
    assert "torch" not in modules and "numpy" not in modules


def test_kernel_install_imports_neither_torch_nor_ipython(tmp_path: Path) -> None:
    code, modules, stdout = imported_modules("kernel", "install", "--prefix", str(tmp_path))
    assert code == 0, stdout
    assert (tmp_path / "share" / "jupyter" / "kernels" / "ipyrepro" / "kernel.json").is_file()
    assert not {"torch", "numpy", "IPython", "jupyter_client"} & modules


def test_status_does_import_torch_so_the_check_above_can_fail() -> None:
    code, modules, _ = imported_modules("status", "--json")
    assert code == 0 and "torch" in modules


def test_check_client_process_never_imports_torch(tmp_path: Path) -> None:
    notebook = new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3"}})
    notebook.cells = [new_code_cell("import sys\nprint('torch' in sys.modules)", id="probe")]
    path = tmp_path / "probe.ipynb"
    nbformat.write(notebook, path)
    code, modules, stdout = imported_modules("check", str(path), "--quiet", "--json", cwd=tmp_path)
    assert code == 0, stdout
    assert "torch" not in modules
    assert json.loads(stdout)["exit_code"] == 0


def test_import_ipyrepro_imports_no_torch_and_status_stays_a_function() -> None:
    code = (
        "import sys, ipyrepro\n"
        "assert 'torch' not in sys.modules\n"
        "from ipyrepro.core.status import Status\n"
        "assert 'ipyrepro.status' not in sys.modules  # no submodule is named like the function\n"
        "assert ipyrepro.status().enabled is False and ipyrepro.Status is Status\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert done.stdout.strip() == "ok", done.stderr


def test_kernel_install_writes_where_jupyter_client_looks(tmp_path: Path) -> None:
    from jupyter_client.kernelspec import KernelSpecManager

    from ipyrepro.notebooks.kernelspec import install

    folder = install("My-Repro", prefix=tmp_path, seed=3)
    assert folder == tmp_path / "share" / "jupyter" / "kernels" / "my-repro"  # lower-cased, as jupyter_client does
    manager = KernelSpecManager(kernel_dirs=[str(folder.parent)])
    spec = manager.get_kernel_spec("my-repro")
    assert spec.env["PYTHONHASHSEED"] == "3" and any("logo" in path.name for path in folder.iterdir())
    with pytest.raises(FileExistsError):
        install("MY-REPRO", prefix=tmp_path)
