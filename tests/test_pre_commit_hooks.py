"""The pre-commit hooks this repository publishes (.pre-commit-hooks.yaml), run the way pre-commit runs them:
its own manifest reader, files chosen by `identify`'s types, `entry + args + filenames` in the repository."""

from __future__ import annotations

import shlex
import shutil
import subprocess
from pathlib import Path

import nbformat
import pytest
from identify.identify import tags_from_path
from nbformat.v4 import new_code_cell, new_notebook, new_output
from pre_commit.clientlib import load_manifest

ROOT = Path(__file__).resolve().parent.parent


def hooks() -> dict[str, dict]:
    return {hook["id"]: hook for hook in load_manifest(str(ROOT / ".pre-commit-hooks.yaml"))}


def sample_repository(root: Path) -> Path:
    """A project with notebooks as people commit them, and files the hooks must leave alone."""
    root.mkdir()
    for name, cells in {
        "analysis.ipynb": [("n = 6\nprint(n)", 1, "6\n"), ("print(n * 7)", 2, "42\n")],
        "stale.ipynb": [("print(6 * 7)", 1, "41\n")],
        "out_of_order.ipynb": [("print(rate)", 2, "0.5\n"), ("rate = 0.5", 1, None)],
    }.items():
        notebook = new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3"}})
        for source, count, text in cells:
            cell = new_code_cell(source, execution_count=count)
            if text:
                cell.outputs = [new_output("stream", name="stdout", text=text)]
            notebook.cells.append(cell)
        nbformat.write(notebook, root / name)
    (root / "train.py").write_text("print('a script')\n")
    (root / "README.md").write_text("# Sample\n")
    return root


def run_hook(hook: dict, repository: Path, files: list[str]) -> subprocess.CompletedProcess[str]:
    """What pre-commit does for one hook: keep the files whose tags include the hook's types, then run
    `entry + args + filenames` in the repository."""
    chosen = [name for name in files if set(hook["types"]) <= tags_from_path(str(repository / name))]
    command = shlex.split(hook["entry"]) + hook["args"] + chosen
    assert shutil.which(command[0]), f"{command[0]} is not on PATH (install the package)"
    return subprocess.run(command, cwd=repository, capture_output=True, text=True, timeout=600)


def test_the_manifest_has_a_fast_lint_hook_and_a_check_hook_against_the_saved_outputs() -> None:
    found = hooks()
    assert set(found) == {"ipyrepro-lint", "ipyrepro-check"}
    for hook in found.values():
        assert hook["types"] == ["jupyter"] and hook["language"] == "python"
    assert found["ipyrepro-lint"]["entry"] == "ipyrepro lint"
    assert "--against-saved" in found["ipyrepro-check"]["args"]
    assert found["ipyrepro-check"]["require_serial"]  # one command: one --jobs budget for all notebooks


def test_the_lint_hook_fails_on_a_notebook_saved_out_of_order_and_reads_only_notebooks(tmp_path: Path) -> None:
    repository = sample_repository(tmp_path / "project")
    done = run_hook(
        hooks()["ipyrepro-lint"], repository, ["README.md", "analysis.ipynb", "out_of_order.ipynb", "train.py"]
    )
    assert done.returncode == 1, done.stderr
    assert "analysis.ipynb: clean (2 code cells)" in done.stdout
    assert "out_of_order.ipynb: cell 1 of 2 (In [2]): reads `rate` at line 1" in done.stdout
    assert "train.py" not in done.stdout and "README" not in done.stdout
    clean = run_hook(hooks()["ipyrepro-lint"], repository, ["analysis.ipynb"])
    assert clean.returncode == 0, clean.stdout


@pytest.mark.kernel
def test_the_check_hook_compares_with_the_saved_outputs(tmp_path: Path) -> None:
    repository = sample_repository(tmp_path / "project")
    done = run_hook(hooks()["ipyrepro-check"], repository, ["analysis.ipynb", "train.py"])
    assert done.returncode == 0, done.stdout + done.stderr
    assert "compared with the saved outputs" in done.stdout and "OK: all 2 code cells matched." in done.stdout
    stale = run_hook(hooks()["ipyrepro-check"], repository, ["analysis.ipynb", "stale.ipynb"])
    assert stale.returncode == 1, stale.stdout + stale.stderr
    assert "stdout differs between the saved outputs and run 1" in stale.stdout
    assert stale.stdout.strip().splitlines()[-1] == "DIFFERS: 2 notebooks (1 OK, 1 DIFFERS)."
