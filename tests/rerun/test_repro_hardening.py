"""`%%repro` against hostile files, paths, fingerprint numbers and argument strings: errors that change nothing."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from IPython.core.error import UsageError

from ipyrepro.comparison import digests
from ipyrepro.comparison import fingerprint as fp
from ipyrepro.core import userfiles

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture
def shell(ip: Any) -> Any:
    ip.run_cell("import torch\ndef tick(_count=[0]):\n    _count[0] += 1\n    return _count[0]\nmarker = 0")
    yield ip
    for name in ("marker", "tick", "x"):
        ip.user_ns.pop(name, None)


def repro(shell: Any, line: str, cell: str = "marker = tick()") -> Any:
    return shell.run_cell_magic("repro", line, cell)


def _hostile_paths(tmp_path: Path) -> dict[str, str]:
    regular = tmp_path / "file.json"
    regular.write_text("{}")
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    loop = tmp_path / "loop.json"
    loop.symlink_to(loop)
    return {
        str(fifo): "is a FIFO",
        "/dev/zero": "is a device",
        "/dev/urandom": "is a device",
        str(regular / "x.json"): "is a file, not a folder",
        str(tmp_path / ("f" * 300)): "too long",
        str(loop): "symlink loop",
        "~nosuchuser-ipyrepro/x.json": "no user 'nosuchuser-ipyrepro'",
    }


@pytest.mark.timeout(60)
def test_check_reads_only_regular_files_and_names_path_errors(shell: Any, tmp_path: Path) -> None:
    for path, problem in _hostile_paths(tmp_path).items():
        with pytest.raises(UsageError, match=problem) as raised:
            repro(shell, f"--check '{path}'")
        assert path.replace("~", "") in str(raised.value) or "nosuchuser" in str(raised.value)
        assert shell.user_ns["marker"] == 0 and shell.user_ns["tick"]() == 1
        shell.user_ns["tick"].__defaults__[0][0] = 0


@pytest.mark.timeout(60)
def test_save_targets_are_validated_before_any_run(shell: Any, tmp_path: Path) -> None:
    cases = dict(_hostile_paths(tmp_path))
    cases.pop("/dev/urandom")
    cases[str(tmp_path / ("f" * 245))] = "too long"  # fits, but its temporary file's name does not
    cases[str(tmp_path)] = "it is a folder"
    for path, problem in cases.items():
        with pytest.raises(UsageError, match=problem):
            repro(shell, f"--save '{path}'")
        assert shell.user_ns["marker"] == 0 and shell.user_ns["tick"]() == 1, path  # nothing ran
        shell.user_ns["tick"].__defaults__[0][0] = 0
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_the_longest_name_whose_temporary_file_fits_is_saved(shell: Any, tmp_path: Path) -> None:
    path = tmp_path / ("f" * 241)  # 241 + len(".") + len(".") + 8 random + len(".tmp") = 255
    report = repro(shell, f"--save {path}")
    assert report.saved == str(path) and path.is_file()


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda values: values["x"]["stats"].update(max=10**400), "stats.max must be a finite number"),
        (lambda values: values["x"]["stats"].update(mean=-(10**309)), "stats.mean must be a finite number"),
        (lambda values: values["f"].update(value="0x1p99999"), "too large for a float"),
        (lambda values: values["x"].update(digest=values["x"]["digest"] + "\n"), "no valid digest"),
    ],
)
def test_numbers_that_overflow_a_float_and_digests_with_a_newline_are_rejected(
    tmp_path: Path, edit: Any, message: str
) -> None:
    path = tmp_path / "f.json"
    fp.save(path, digests.fingerprint({"x": torch.ones(3), "f": 1.5}), seed=0, runs=2, reproducible=True)
    document = json.loads(path.read_text())
    edit(document["values"])
    path.write_text(json.dumps(document))
    with pytest.raises(fp.FingerprintFileError, match=message):
        fp.load(path)


_LEAF = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40)
_MUTATION = st.recursive(
    _LEAF | st.sampled_from([10**400, -(10**309), "0x1p99999", "xxh3_128:" + "0" * 32 + "\n", "nan", [], {}]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)


@FUZZ
@given(data=st.data())
def test_fuzzed_fingerprint_files_load_and_check_or_fail_clearly(tmp_path: Path, data: st.DataObject) -> None:
    """Replace any one field of a valid file with anything: load() and check() give a result or a clear error."""
    path = tmp_path / "f.json"
    records = digests.fingerprint({"x": torch.arange(4.0), "f": 1.5, "i": 3, "s": "text", "c": 1j})
    fp.save(path, records, seed=1, runs=2, reproducible=True)
    document = json.loads(path.read_text())
    target = document
    keys = []
    while isinstance(target, dict) and target and data.draw(st.booleans(), label="deeper"):
        key = data.draw(st.sampled_from(sorted(target)), label="key")
        keys.append(key)
        if not isinstance(target[key], dict):
            break
        target = target[key]
    if keys:
        parent = document
        for key in keys[:-1]:
            parent = parent[key]
        parent[keys[-1]] = data.draw(_MUTATION, label="value")
    path.write_text(json.dumps(document))
    try:
        saved = fp.load(path)
    except fp.FingerprintFileError:
        return
    for tol in (fp.Tolerance(), fp.Tolerance(rtol=1e-3, atol=1e-6)):
        result = fp.check(saved, records, tol, fp.environment(1))
        str(result.to_dict())


@FUZZ
@given(name=st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\0"), min_size=1, max_size=300))
def test_fuzzed_paths_are_read_or_refused_with_a_path_problem(tmp_path: Path, name: str) -> None:
    for path in (name, str(tmp_path / name), str(tmp_path / "f.json" / name), "~" + name):
        with contextlib.suppress(userfiles.PathProblem):  # anything else fails the test
            userfiles.read_regular_file(path, 1 << 20, "file")
        if path.startswith("~"):
            continue  # validating a target creates (and removes) a file in its folder: stay in tmp_path
        try:
            target = userfiles.validate_target(path, "file")
        except userfiles.PathProblem:
            continue
        assert not target.is_dir()


# -- argument strings ------------------------------------------------------------------


@pytest.mark.parametrize("names", ["None", "True", "class", "x,lambda", "if"])
def test_vars_that_are_keywords_are_usage_errors(shell: Any, names: str) -> None:
    with pytest.raises(UsageError, match="invalid --vars"):
        repro(shell, f"--vars {names}")
    assert shell.user_ns["marker"] == 0


@pytest.mark.parametrize(
    ("cell", "line"),
    [("marker = 1\nreturn marker", "line 2: return marker"), ("yield 5", "line 1: yield 5"), ("yield from []", "")],
)
def test_top_level_return_or_yield_is_a_syntax_error_in_the_users_code(shell: Any, cell: str, line: str) -> None:
    with pytest.raises(UsageError, match="SyntaxError: '(return|yield)' outside function") as raised:
        repro(shell, "", cell)
    assert line in str(raised.value) and "_ipyrepro" not in str(raised.value)
    assert shell.user_ns["marker"] == 0


def test_top_level_await_still_runs(shell: Any) -> None:
    report = repro(shell, "", "import asyncio\nawait asyncio.sleep(0)\nx = 3")
    assert report.ok and [entry.name for entry in report.entries] == ["x"]


_WORDS = st.sampled_from(
    ["--runs", "--seed", "--rtol", "--atol", "--vars", "--no-restore", "--save", "--check", "-h", "None", "0", "-1"]
)
_TOKEN = _WORDS | st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\0"), max_size=12)


@FUZZ
@given(tokens=st.lists(_TOKEN, max_size=6))
def test_fuzzed_cell_magic_arguments_run_or_change_nothing(
    shell: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tokens: list[str]
) -> None:
    monkeypatch.chdir(tmp_path)  # a --save that happens to be valid writes here
    shell.user_ns["marker"] = 0
    shell.user_ns["tick"].__defaults__[0][0] = 0
    try:
        report = repro(shell, " ".join(tokens))
    except UsageError:
        assert shell.user_ns["marker"] == 0 and shell.user_ns["tick"].__defaults__[0][0] == 0
        return
    if report is not None:  # None: -h printed help
        assert shell.user_ns["marker"] >= 1


_LINE_WORDS = st.sampled_from(
    ["on", "off", "seed", "reseed", "status", "--seed", "--json", "--warn-only", "--cublas", ":4096:8", ":16:8"]
    + ["--reseed", "cell", "fixed", "-1", "0", "7", "4294967296", "None", "1e3", "-h", "--", "''"]
)


@FUZZ
@given(tokens=st.lists(_LINE_WORDS | _TOKEN, max_size=5))
def test_fuzzed_repro_lines_apply_or_change_nothing(ip: Any, tokens: list[str]) -> None:
    from ipyrepro.core.flags import Flags
    from ipyrepro.core.state import STATE

    line = " ".join(tokens)
    if tokens and tokens[0] in ("env", "panel"):
        return  # slow reports that change nothing; covered by their own tests
    before = (
        STATE.enabled,
        STATE.seed,
        STATE.reseed,
        STATE.saved,
        Flags.read(),
        os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
    )
    try:
        ip.run_line_magic("repro", line)
    except UsageError:
        after = (
            STATE.enabled,
            STATE.seed,
            STATE.reseed,
            STATE.saved,
            Flags.read(),
            os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
        )
        assert after == before, line
