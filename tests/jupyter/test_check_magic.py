"""`%repro check` inside a notebook, run by nbclient as Jupyter Server runs it (JPY_SESSION_NAME set):
it checks its own saved file in fresh kernels without recursing, shows progress and the verdict; another
notebook by path; a clear message when the notebook cannot be known. Real kernels."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from ..kernels import kernel

pytestmark = pytest.mark.kernel


def write(path: Path, *sources: str) -> Path:
    notebook = new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3"}})
    notebook.cells = [new_markdown_cell("# Checked from inside")] + [new_code_cell(source) for source in sources]
    nbformat.write(notebook, path)
    return path


def texts(cell: nbformat.NotebookNode, mime: str = "text/plain") -> str:
    found = []
    for output in cell.outputs:
        if output.output_type == "stream":
            found.append(output.text)
        elif mime in output.get("data", {}):
            found.append(output.data[mime])
    return "\n".join(found)


def test_a_notebook_checks_itself_without_recursion_and_another_by_path(tmp_path: Path) -> None:
    other = write(tmp_path / "other.ipynb", "import os", "print(os.urandom(4).hex())")
    path = write(
        tmp_path / "self.ipynb",
        "%load_ext ipyrepro",
        "print(6 * 7)",
        "%repro check --no-causes --no-state",
        f"%repro check {other.name} --as-is --no-causes --no-state",
    )
    notebook = nbformat.read(path, 4)
    client = NotebookClient(notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": tmp_path}})
    client.execute(env={**os.environ, "JPY_SESSION_NAME": str(path)})
    own, others = notebook.cells[3], notebook.cells[4]

    text = texts(own)
    assert f"ipyrepro check {path}: 2 run(s)" in text
    assert "OK: all 4 code cells matched." in text  # the check's kernels skipped their own `%repro check`
    assert "run 1: done, 4 code cells" in text and "run 2: done, 4 code cells" in text  # the live progress, at its end
    assert "was last saved at" in text  # cells ran here after the file was written
    [html] = [output.data["text/html"] for output in own.outputs if "text/html" in output.get("data", {})]
    assert html.startswith("<iframe sandbox") and "OK" in html and "<script" not in html

    text = texts(others)
    assert f"ipyrepro check {other.name}: 2 run(s)" in text and "as written (--as-is)" in text
    assert "DIFFERS: 1 of 2 code cells differ" in text
    assert "was last saved" not in text  # only the kernel's own notebook is compared with what ran here


def test_in_a_check_kernel_it_does_nothing_and_says_so(tmp_path: Path) -> None:
    with kernel(env={"IPYREPRO_CHECK_KERNEL": "1", "JPY_SESSION_NAME": str(tmp_path / "x.ipynb")}) as k:
        reply = k.ok("%load_ext ipyrepro\n%repro check")
        assert "skipped: this kernel is one of an `ipyrepro check`'s" in reply.stdout
        assert reply.data == []


def test_an_unknown_notebook_is_a_clear_message_and_a_bad_path_a_usage_error(tmp_path: Path) -> None:
    with kernel(unset=("JPY_SESSION_NAME", "IPYREPRO_CHECK_KERNEL")) as k:
        reply = k.ok("%load_ext ipyrepro\n%repro check")
        assert "which notebook this kernel belongs to is not known" in reply.stdout
        assert "%repro check path/to/notebook.ipynb" in reply.stdout
        reply = k.run(f"%repro check {tmp_path / 'missing.ipynb'}")
        assert reply.status == "error" and "UsageError" in reply.stderr + reply.error
        assert "no such notebook" in reply.stderr + reply.error
