"""`ipyrepro check --save/--html/--against`: nothing the user owns is overwritten, an empty path fails loudly.

Every refusal comes before any kernel starts and before torch (or numpy, or jupyter_client) is imported;
the files the check writes get the umask's mode, as any file the user writes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HEAVY = ("torch", "numpy", "jupyter_client")


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    notebook = new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3"}})
    notebook.cells = [new_markdown_cell("# Saved"), new_code_cell("x = 1 + 1\nprint(x)", execution_count=3)]
    notebook.cells[1].outputs = [nbformat.v4.new_output("stream", name="stdout", text="2\n")]
    nbformat.write(notebook, tmp_path / "nb.ipynb")
    (tmp_path / "base.json").write_text('{"format": "ipyrepro.notebook-fingerprint"}')
    os.symlink("nb.ipynb", tmp_path / "link.ipynb")
    os.link(tmp_path / "nb.ipynb", tmp_path / "hard.ipynb")
    return tmp_path


def ipyrepro(folder: Path, *args: str, umask: int | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "ipyrepro", *args],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=(lambda: os.umask(umask)) if umask is not None else None,
    )


def imported(stderr: str) -> set[str]:
    return {line.rsplit("|", 1)[1].strip() for line in stderr.splitlines() if line.startswith("import time:")}


def messages(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if not line.startswith("import time:")]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--save", "nb.ipynb"], "--save 'nb.ipynb' is the notebook (after resolving links)"),
        (["--html", "nb.ipynb"], "--html 'nb.ipynb' is the notebook (after resolving links)"),
        (["--html", "link.ipynb"], "--html 'link.ipynb' is the notebook"),
        (["--save", "hard.ipynb"], "--save 'hard.ipynb' is the notebook"),
        (["--save", "./sub/../nb.ipynb"], "is the notebook"),
        (["--html", "base.json", "--against", "base.json"], "--html 'base.json' is the --against file 'base.json'"),
        (["--save", "out.json", "--html", "out.json"], "--html 'out.json' is the --save file 'out.json'"),
        (["--save", ""], "--save: the path is empty (an unset variable?)"),
        (["--html", ""], "--html: the path is empty (an unset variable?)"),
        (["--against", ""], "--against: the path is empty (an unset variable?)"),
    ],
)
def test_outputs_over_inputs_and_empty_paths_are_usage_errors(folder: Path, options: list[str], message: str) -> None:
    (folder / "sub").mkdir()
    before = (folder / "nb.ipynb").read_bytes()
    done = ipyrepro(folder, "check", "nb.ipynb", "--quiet", *options)
    assert done.returncode == 2, done.stdout + done.stderr
    said = messages(done.stderr)
    assert len(said) == 1 and said[0].startswith("ipyrepro check: "), said
    assert message in said[0], said
    assert done.stdout == ""
    assert (folder / "nb.ipynb").read_bytes() == before
    assert (folder / "base.json").read_text() == '{"format": "ipyrepro.notebook-fingerprint"}'
    assert not imported(done.stderr) & set(HEAVY)
    assert not (folder / "out.json").exists()


def test_the_python_api_refuses_saving_over_the_notebook(folder: Path) -> None:
    from ipyrepro.notebook_check import check

    before = (folder / "nb.ipynb").read_bytes()
    with pytest.raises(ValueError, match="is the notebook"):
        check(folder / "link.ipynb", save=str(folder / "nb.ipynb"))
    assert (folder / "nb.ipynb").read_bytes() == before


@pytest.mark.kernel
def test_report_and_fingerprint_get_the_umask_mode(folder: Path) -> None:
    done = ipyrepro(folder, "check", "nb.ipynb", "--quiet", "--save", "fp.json", "--html", "r.html", umask=0o027)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (folder / "fp.json").stat().st_mode & 0o777 == 0o640
    assert (folder / "r.html").stat().st_mode & 0o777 == 0o640
    assert json.loads((folder / "fp.json").read_text())["format"] == "ipyrepro.notebook-fingerprint"
    leftovers = [path.name for path in folder.iterdir() if path.name.endswith(".tmp")]
    assert not leftovers


def test_an_empty_html_folder_for_the_pytest_plugin_is_a_usage_error(pytester: pytest.Pytester) -> None:
    (pytester.path / "notebooks").mkdir()
    nbformat.write(new_notebook(cells=[new_code_cell("1")]), pytester.path / "notebooks" / "one.ipynb")
    result = pytester.runpytest_subprocess("--ipyrepro", "notebooks", "--ipyrepro-html", "")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "--ipyrepro-html: the path is empty" in "\n".join(result.errlines)
