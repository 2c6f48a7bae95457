"""Kernelspec names and prefixes: checked the way Jupyter will use them, and never a path outside the kernels folder."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ipyrepro.cli import main
from ipyrepro.notebooks import kernelspec


@pytest.fixture(autouse=True)
def _user_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    data = tmp_path / "jupyter-data"
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(data))
    return data


def kernels(prefix: Path) -> Path:
    return prefix / "share" / "jupyter" / "kernels"


def test_names_differing_only_in_case_are_the_same_kernel(tmp_path: Path, capsys) -> None:
    assert main(["kernel", "install", "--prefix", str(tmp_path), "--name", "MyKernel", "--seed", "1"]) == 0
    assert main(["kernel", "install", "--prefix", str(tmp_path), "--name", "MYKERNEL", "--seed", "2"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert '"PYTHONHASHSEED": "1"' in (kernels(tmp_path) / "mykernel" / "kernel.json").read_text()
    assert main(["kernel", "uninstall", "MYKERNEL", "--prefix", str(tmp_path)]) == 0
    assert not (kernels(tmp_path) / "mykernel").exists()


@pytest.mark.parametrize("prefix, message", [("", "the path is empty"), ("FILE", "is not a folder")])
def test_an_empty_prefix_or_a_file_is_a_usage_error(tmp_path: Path, capsys, prefix: str, message: str) -> None:
    (tmp_path / "file").write_text("x")
    prefix = str(tmp_path / "file") if prefix == "FILE" else prefix
    for command in (["install", "--prefix", prefix], ["uninstall", "ipyrepro", "--prefix", prefix]):
        assert main(["kernel", *command]) == 2
        error = capsys.readouterr().err
        assert message in error and "Traceback" not in error


def test_a_prefix_through_a_file_is_a_usage_error(tmp_path: Path, capsys) -> None:
    (tmp_path / "file").write_text("x")
    assert main(["kernel", "install", "--prefix", str(tmp_path / "file" / "env")]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["../../victim", "..", ".", "a/b", "victim\n", ""])
def test_uninstall_validates_names_like_install(tmp_path: Path, capsys, name: str) -> None:
    victim = tmp_path / "share" / "victim"
    victim.mkdir(parents=True)
    (victim / "kernel.json").write_text('{"metadata": {"ipyrepro": {}}}')
    (kernels(tmp_path) / "x").mkdir(parents=True)
    assert main(["kernel", "uninstall", name, "--prefix", str(tmp_path / "share" / "jupyter" / "kernels" / "x")]) == 2
    assert main(["kernel", "uninstall", name, "--prefix", str(tmp_path)]) == 2
    assert "invalid kernel name" in capsys.readouterr().err
    assert victim.is_dir()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.text(max_size=12) | st.sampled_from(["..", "../x", "A.b-c_1", "x\n", "PYTHON3", "ipyrepro"]))
def test_fuzzed_names_install_into_the_kernels_folder_or_are_refused(tmp_path: Path, name: str) -> None:
    prefix = tmp_path / "fuzz"
    outside = {path for path in tmp_path.rglob("*") if kernels(prefix) not in path.parents}
    try:
        folder = kernelspec.install(name, prefix=prefix, force=True)
    except ValueError:
        pass
    else:
        assert folder.parent == kernels(prefix) and folder.name == name.lower()
        assert kernelspec.uninstall(name, prefix=prefix) == folder
    with contextlib.suppress(ValueError, LookupError):  # anything else fails the test
        kernelspec.uninstall(name, prefix=prefix)
    after = {path for path in tmp_path.rglob("*") if kernels(prefix) not in path.parents}
    assert after - {prefix, prefix / "share", prefix / "share" / "jupyter", kernels(prefix)} <= outside


@pytest.mark.timeout(30)
def test_uninstall_never_reads_a_kernel_json_that_is_not_a_regular_file(tmp_path: Path, capsys) -> None:
    import os

    folder = kernels(tmp_path) / "fifo-kernel"
    folder.mkdir(parents=True)
    os.mkfifo(folder / "kernel.json")
    assert main(["kernel", "uninstall", "fifo-kernel", "--prefix", str(tmp_path)]) == 2
    assert "not installed by ipyrepro" in capsys.readouterr().err and folder.is_dir()
