"""What `%repro check` knows inside a kernel: its notebook, whether the file is saved, whether it is a check's."""

from __future__ import annotations

import os
import time
from pathlib import Path

from ipyrepro.notebooks.selfcheck import in_check_kernel, kernel_notebook, stale_warning


def test_vscode_names_the_notebook_before_jupyter_server(tmp_path: Path) -> None:
    environ = {"JPY_SESSION_NAME": str(tmp_path / "server.ipynb")}
    assert kernel_notebook({"__vsc_ipynb_file__": str(tmp_path / "code.ipynb")}, environ) == tmp_path / "code.ipynb"
    assert kernel_notebook({}, environ) == tmp_path / "server.ipynb"
    assert kernel_notebook({}, {}) is None


def test_a_session_path_from_the_server_root_is_found_beside_the_kernel(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "fit.ipynb").write_text("{}")
    monkeypatch.chdir(tmp_path)  # a kernel starts in its notebook's folder
    assert kernel_notebook({}, {"JPY_SESSION_NAME": "projects/fit.ipynb"}) == Path("fit.ipynb")


def test_a_file_older_than_the_last_cell_run_is_named_with_both_times(tmp_path: Path) -> None:
    path = tmp_path / "n.ipynb"
    path.write_text("{}")
    saved = time.time() - 60
    os.utime(path, (saved, saved))
    warning = stale_warning(path, time.time())
    assert warning is not None and "was last saved at" in warning and "save the notebook first" in warning
    assert stale_warning(path, saved - 10) is None  # saved after the last cell ran
    assert stale_warning(path, None) is None  # nothing ran here yet
    assert stale_warning(tmp_path / "missing.ipynb", time.time()) is None


def test_a_checks_kernel_is_known_by_its_variable() -> None:
    assert in_check_kernel({"IPYREPRO_CHECK_KERNEL": "1"})
    assert not in_check_kernel({})
