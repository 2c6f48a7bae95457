"""Atomic replacement: a reader sees the old file or the new one, never half of one, and nothing is left behind."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from ipyrepro.core import userfiles
from ipyrepro.core.userfiles import replacing


def test_the_new_content_replaces_the_old_only_when_the_block_ends(tmp_path: Path) -> None:
    target = tmp_path / "report.json"
    target.write_text("old")
    with replacing(target) as stream:
        stream.write("new")
        assert target.read_text() == "old"  # not yet: a reader now still sees the whole old file
    assert target.read_text() == "new"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["report.json"]


def test_an_error_in_the_block_keeps_the_old_file_and_removes_the_temporary_one(tmp_path: Path) -> None:
    target = tmp_path / "checkpoint.pt"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="disk full"), replacing(target, binary=True, suffix=".partial") as stream:
        stream.write(b"half")
        raise RuntimeError("disk full")
    assert target.read_bytes() == b"old"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["checkpoint.pt"]


def test_shared_files_get_the_usual_permissions_and_others_stay_private(tmp_path: Path) -> None:
    umask = os.umask(0o022)
    try:
        with replacing(tmp_path / "shared.json", shared=True) as stream:
            stream.write("{}")
        with replacing(tmp_path / "private.json", durable=True) as stream:
            stream.write("{}")
    finally:
        os.umask(umask)
    assert stat.S_IMODE((tmp_path / "shared.json").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "private.json").stat().st_mode) == 0o600


def test_a_bare_file_name_is_written_in_the_current_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with replacing(Path("here.txt")) as stream:
        stream.write("text")
    assert (tmp_path / "here.txt").read_text() == "text"


def test_validate_source_refuses_what_is_not_a_regular_file_and_leaves_a_missing_one_to_the_reader(
    tmp_path: Path,
) -> None:
    fifo = tmp_path / "pipe.json"
    os.mkfifo(fifo)
    with pytest.raises(userfiles.PathProblem, match="is a FIFO"):
        userfiles.validate_source(fifo, "fingerprint file")
    with pytest.raises(userfiles.PathProblem, match="is a device"):
        userfiles.validate_source("/dev/zero", "fingerprint file")
    assert userfiles.validate_source(tmp_path / "missing.json") == tmp_path / "missing.json"


def test_validate_outputs_refuses_an_input_under_another_name(tmp_path: Path) -> None:
    notebook = tmp_path / "nb.ipynb"
    notebook.write_text("{}")
    (tmp_path / "alias.ipynb").symlink_to(notebook)
    with pytest.raises(userfiles.PathProblem, match="is the notebook"):
        userfiles.validate_outputs({"--save": tmp_path / "alias.ipynb"}, {"the notebook": notebook})
    with pytest.raises(userfiles.PathProblem, match="--html: the path is empty"):
        userfiles.validate_outputs({"--html": ""}, {"the notebook": notebook})
    assert userfiles.validate_outputs({"--save": tmp_path / "fp.json", "--html": None}, {"the notebook": notebook}) == {
        "--save": tmp_path / "fp.json"
    }
    assert notebook.read_text() == "{}"
