"""The seeder-plugin cache gives the answer a full scan gives, and notices every install and removal."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ipyrepro.core import seederplugins, seeding

HOUR_AGO_NS = time.time_ns() - 3600 * 10**9


def add_package(folder: Path, project: str, *, seeder: bool, egg: bool = False) -> Path:
    """A package as pip (or setuptools, for an egg) leaves it: metadata, and entry points if it has a seeder."""
    info = folder / f"{project}-1.0.{'egg-info' if egg else 'dist-info'}"
    info.mkdir(parents=True)
    (info / ("PKG-INFO" if egg else "METADATA")).write_text(f"Metadata-Version: 2.1\nName: {project}\nVersion: 1.0\n")
    if seeder:
        (info / "entry_points.txt").write_text(f"[ipyrepro.seeders]\n{project} = {project}_module:seed\n")
        (folder / f"{project}_module.py").write_text("SEEN = []\ndef seed(value):\n    SEEN.append(value)\n")
    return info


def settle(*paths: Path) -> None:
    """Date the paths an hour back, as a package installed earlier is (see seederplugins._settled)."""
    for path in paths:
        os.utime(path, ns=(HOUR_AGO_NS, HOUR_AGO_NS))


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder first on sys.path with two packages, one of them registering a seeder; a fresh cache."""
    folder = tmp_path / "site"
    folder.mkdir()
    add_package(folder, "plain_package", seeder=False)
    add_package(folder, "seeding_package", seeder=True)
    settle(folder)
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.setenv(seederplugins.CACHE_VAR, str(tmp_path / "cache"))
    return folder


@pytest.fixture
def scans(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The folders scanned (not answered from the cache), in order."""
    seen: list[str] = []
    real = seederplugins.scan_folder

    def counting(folder: str, mtime: int) -> seederplugins.Scan:
        seen.append(os.path.abspath(folder))
        return real(folder, mtime)

    monkeypatch.setattr(seederplugins, "scan_folder", counting)
    return seen


def names(found: list[str]) -> list[str]:
    return [os.path.basename(path) for path in found]


def test_the_second_answer_comes_from_the_cache_and_equals_the_scan(site: Path, scans: list[str]) -> None:
    first = seederplugins.registering_distributions()
    assert names(first) == ["seeding_package-1.0.dist-info"]
    assert str(site) in scans
    scans.clear()
    assert seederplugins.registering_distributions() == first
    assert str(site) not in scans
    cache = json.loads(Path(seederplugins.cache_path()).read_text())
    assert cache["folders"][str(site)]["projects"] == ["plain_package", "seeding_package"]
    seeders = seeding.load_seeders()
    assert [seeder.name for seeder in seeders] == ["seeding_package"]
    seeders[0](7)
    assert sys.modules["seeding_package_module"].SEEN == [7]


def test_a_package_installed_after_the_cache_was_written_is_found(site: Path) -> None:
    seederplugins.registering_distributions()
    add_package(site, "later_package", seeder=True)  # the folder's time moves: its answer is scanned again
    assert names(seederplugins.registering_distributions()) == [
        "later_package-1.0.dist-info",
        "seeding_package-1.0.dist-info",
    ]


def test_a_removed_package_is_no_longer_found(site: Path) -> None:
    seederplugins.registering_distributions()
    info = site / "seeding_package-1.0.dist-info"
    for file in info.iterdir():
        file.unlink()
    info.rmdir()
    assert seederplugins.registering_distributions() == []


def test_a_folder_changed_seconds_ago_is_scanned_every_time_until_it_settles(site: Path, scans: list[str]) -> None:
    add_package(site, "fresh_package", seeder=False)  # its time is now: a change within its tick would not show
    seederplugins.registering_distributions()
    seederplugins.registering_distributions()
    assert scans.count(str(site)) == 2
    settle(site)
    seederplugins.registering_distributions()
    seederplugins.registering_distributions()
    assert scans.count(str(site)) == 3


def test_an_egg_info_rewritten_in_place_is_read_again(site: Path) -> None:
    egg = add_package(site, "egg_package", seeder=False, egg=True)
    (egg / "entry_points.txt").write_text("[console_scripts]\negg = egg_package_module:main\n")
    settle(egg / "entry_points.txt", egg, site)
    assert names(seederplugins.registering_distributions()) == ["seeding_package-1.0.dist-info"]
    # setuptools rewrites the file in place: neither the egg's folder nor the site folder changes time
    (egg / "entry_points.txt").write_text("[ipyrepro.seeders]\negg = egg_package_module:seed\n")
    settle(egg, site)
    assert names(seederplugins.registering_distributions()) == [
        "egg_package-1.0.egg-info",
        "seeding_package-1.0.dist-info",
    ]


def test_the_first_copy_of_a_project_on_sys_path_wins_from_the_cache_too(
    site: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    later = tmp_path / "later"
    add_package(later, "Seeding.Package", seeder=False)  # the same project, normalised; registers nothing
    settle(later)
    monkeypatch.syspath_prepend(str(later))  # now first: its copy hides the seeding one
    for _ in range(2):
        assert seederplugins.registering_distributions() == []


def test_a_folder_without_packages_that_changes_is_not_written_back(
    site: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    settle(notebooks)
    monkeypatch.syspath_prepend(str(notebooks))
    seederplugins.registering_distributions()
    cache = Path(seederplugins.cache_path())
    written = cache.stat().st_mtime_ns
    (notebooks / "analysis.ipynb").write_text("{}")  # a save: the folder's time moves
    settle(notebooks)
    assert names(seederplugins.registering_distributions()) == ["seeding_package-1.0.dist-info"]
    assert cache.stat().st_mtime_ns == written


def test_kernels_started_from_new_notebook_folders_never_rewrite_the_cache(
    site: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seederplugins.registering_distributions()
    cache = Path(seederplugins.cache_path())
    written = cache.read_bytes(), cache.stat().st_mtime_ns
    for name in ("project-a", "project-b", "project-a"):  # notebooks in two folders, opened in turn
        notebooks = tmp_path / name
        notebooks.mkdir(exist_ok=True)
        settle(notebooks)
        with monkeypatch.context() as kernel:
            kernel.syspath_prepend(str(notebooks))
            assert names(seederplugins.registering_distributions()) == ["seeding_package-1.0.dist-info"]
    assert (cache.read_bytes(), cache.stat().st_mtime_ns) == written


@pytest.mark.parametrize(
    "content",
    [
        "not json",
        "[]",
        '{"version": 1, "folders": {"/x": {"mtime": "a"}}}',
        '{"version": 1, "folders": {"SITE": {"mtime": MTIME, "projects": [[1]], "seeders": {}, "eggs": {}}}}',
        '{"version": 1, "folders": {"SITE": {"mtime": MTIME, "projects": ["seeding_package"], '
        '"seeders": {"seeding_package": 1}, "eggs": {}}}}',
    ],
)
def test_a_corrupt_cache_is_ignored_and_replaced(site: Path, content: str) -> None:
    path = Path(seederplugins.cache_path())
    path.parent.mkdir(parents=True)
    path.write_text(content.replace("SITE", str(site)).replace("MTIME", str(site.stat().st_mtime_ns)))
    assert names(seederplugins.registering_distributions()) == ["seeding_package-1.0.dist-info"]
    assert json.loads(path.read_text())["version"] == seederplugins.CACHE_VERSION


def test_a_cache_that_cannot_be_written_changes_nothing(
    site: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv(seederplugins.CACHE_VAR, str(blocker / "cache"))  # a folder inside a file: never creatable
    for _ in range(2):
        assert names(seederplugins.registering_distributions()) == ["seeding_package-1.0.dist-info"]


def test_an_empty_cache_variable_turns_the_cache_off(
    site: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(seederplugins.CACHE_VAR, "")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert seederplugins.cache_path() is None
    assert names(seederplugins.registering_distributions()) == ["seeding_package-1.0.dist-info"]
    assert not (tmp_path / "xdg").exists()


def test_without_the_variable_the_cache_lives_in_xdg_cache_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(seederplugins.CACHE_VAR, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    path = seederplugins.cache_path()
    assert path is not None and Path(path).parent == tmp_path / "xdg" / "ipyrepro"


def test_a_fresh_process_finds_the_seeder_through_a_cache_another_process_wrote(site: Path) -> None:
    code = (
        "import sys; sys.path.insert(0, sys.argv[1])\n"
        "from ipyrepro.core import seeding\n"
        "print([seeder.name for seeder in seeding.load_seeders()])"
    )
    env = {**os.environ, "PYTHONPATH": ""}
    runs = [
        subprocess.run([sys.executable, "-c", code, str(site)], capture_output=True, text=True, check=True, env=env)
        for _ in range(2)
    ]
    assert [run.stdout.strip() for run in runs] == ["['seeding_package']"] * 2
    assert str(site) in json.loads(Path(seederplugins.cache_path()).read_text())["folders"]
