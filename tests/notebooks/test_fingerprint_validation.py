"""Fingerprints are validated whole: anything malformed is one line and exit 2, never a traceback, never a verdict.

`explain` and `check --against` read the same files; `--against` refuses a bad one before any kernel starts.
A hypothesis test mutates every field of a real fingerprint (its cells' outputs and state included).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import nbformat
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nbformat.v4 import new_code_cell, new_notebook

from ipyrepro.cli import main
from ipyrepro.env.numerics import numerics_environment
from ipyrepro.notebooks.fingerprint import FORMAT, digest_text

BIG_FLOAT, BIG_INT = "__big_float__", "__big_int__"


def base() -> dict[str, Any]:
    """A fingerprint as `--save --trace-ops` writes it: two cells, outputs, state digests, an op trace."""
    digest = digest_text("tensor([1.])")
    return {
        "format": FORMAT,
        "schema": 1,
        "created": "2026-01-01T00:00:00+00:00",
        "notebook": "nb.ipynb",
        "options": {"seed": 0, "reseed": "cell", "as_is": False, "sanitize": [], "portable": False, "trace_ops": True},
        "environment": numerics_environment(),
        "cells": [
            {
                "index": 0,
                "code_index": 0,
                "cell_id": "a",
                "source": digest_text("import torch\nw = torch.randn(3)"),
                "outputs": [],
                "state": {"w": "xxh3_128:0123456789abcdef0123456789abcdef"},
            },
            {
                "index": 2,
                "code_index": 1,
                "cell_id": "b",
                "source": digest_text("print(w)"),
                "outputs": [{"output": "stdout", "digest": digest, "preview": "tensor([1.])"}],
                "state": None,
            },
        ],
        "trace": [
            {
                "cell": "a",
                "cap": 20000,
                "truncated": 0,
                "ops": [
                    {
                        "op": "aten::randn",
                        "device": "cpu",
                        "inputs": [],
                        "outputs": ["xxh3:1"],
                        "file": "<cell>",
                        "line": 2,
                        "code": "w = torch.randn(3)",
                    }
                ],
            }
        ],
    }


def write(path: Path, document: Any) -> Path:
    text = json.dumps(document, indent=1, allow_nan=True)
    path.write_text(text.replace(f'"{BIG_FLOAT}"', "1e999").replace(f'"{BIG_INT}"', "7" * 4000))
    return path


def one_line_exit_2(capsys: pytest.CaptureFixture[str], command: str) -> str:
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"ipyrepro {command}: "), captured.err
    assert "Traceback" not in captured.err
    return lines[0]


def test_a_real_fingerprint_is_valid_and_explained(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(tmp_path / "a.json", base())
    assert main(["explain", str(tmp_path / "a.json"), str(tmp_path / "a.json")]) == 0
    assert "Outputs: all 2 code cells match bitwise" in capsys.readouterr().out


def _set(document: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    changed = copy.deepcopy(document)
    target = changed
    for key in path[:-1]:
        target = target[key]
    if value is _DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return changed


_DELETE = object()

MALFORMED = [
    (("environment", "gpu"), "x", '"environment.gpu" must be an object, not "x"'),
    (("trace", 0, "truncated"), BIG_FLOAT, "out of range"),
    (("environment",), {}, '"environment.schema" must be 1'),
    (("environment", "threads"), "two", '"environment.threads" must be an object, not "two"'),
    (("environment", "threads", "intra_op"), "two", '"environment.threads.intra_op" must be an integer'),
    (("environment", "threads", "intra_op"), float("nan"), "NaN is not a JSON number"),
    (("environment", "threads", "inter_op"), float("inf"), "Infinity is not a JSON number"),
    (("environment", "ipyrepro", "seed"), BIG_INT, "an integer of 4000 digits is out of range"),
    (("environment", "threads", "intra_op"), 0, "an integer from 1 to 65536, not 0"),
    (("cells",), [], '"cells" must be a non-empty list of cell records'),
    (("cells", 1, "outputs", 0, "digest"), 5, '"cells[1].outputs[0].digest" must be a digest'),
    (("cells", 0, "state"), ["w"], '"cells[0].state" must be an object of name: digest'),
    (("environment", "cpu"), _DELETE, '"environment.cpu" must be there'),
    (("cells", 1, "state"), {"a\r\nb": None}, '"cells[1].state.a\\r\\nb" must be a string, not null'),
]


@pytest.mark.parametrize(("path", "value", "message"), MALFORMED)
def test_malformed_fingerprints_are_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], path: tuple[Any, ...], value: Any, message: str
) -> None:
    good, bad = write(tmp_path / "good.json", base()), write(tmp_path / "bad.json", _set(base(), path, value))
    assert main(["explain", str(good), str(bad)]) == 2
    line = one_line_exit_2(capsys, "explain")
    assert message in line and "bad.json" in line
    assert "7777777777" not in line  # a long number is never echoed back


@pytest.mark.parametrize(("path", "value", "message"), MALFORMED[:4] + MALFORMED[9:10])
def test_check_against_a_malformed_fingerprint_fails_before_any_kernel(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], path: tuple[Any, ...], value: Any, message: str
) -> None:
    nbformat.write(new_notebook(cells=[new_code_cell("print(1)")]), tmp_path / "nb.ipynb")
    bad = write(tmp_path / "bad.json", _set(base(), path, value))
    assert main(["check", str(tmp_path / "nb.ipynb"), "--quiet", "--against", str(bad)]) == 2
    assert message in one_line_exit_2(capsys, "check")


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for number, item in enumerate(value):
            found += _paths(item, (*prefix, number))
    return found


BASE = base()
PATHS = _paths(BASE)
ALWAYS_INVALID = [float("nan"), float("inf"), float("-inf"), BIG_FLOAT, BIG_INT, [[["x"]]]]
ANY_VALUE = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)


def _explain(tmp_path: Path, document: Any, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    good, bad = write(tmp_path / "good.json", BASE), write(tmp_path / "bad.json", document)
    code = main(["explain", str(good), str(bad), "--json"])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.sampled_from(PATHS), value=st.sampled_from(ALWAYS_INVALID))
def test_fuzz_an_invalid_value_anywhere_is_refused(tmp_path: Path, capsys, path, value) -> None:
    code, out, err = _explain(tmp_path, _set(BASE, path, value), capsys)
    assert code == 2, (path, value, out)
    assert out == "" and len(err.splitlines()) == 1 and err.startswith("ipyrepro explain: ")


def _strict(text: str) -> Any:
    def refuse(name: str) -> Any:
        raise AssertionError(f"{name} in the JSON output")

    return json.loads(text, parse_constant=refuse)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.sampled_from(PATHS), value=ANY_VALUE | st.just(_DELETE))
def test_fuzz_any_mutation_is_a_verdict_on_valid_data_or_one_line(tmp_path: Path, capsys, path, value) -> None:
    code, out, err = _explain(tmp_path, _set(BASE, path, value), capsys)
    if code == 2:
        assert out == "" and len(err.splitlines()) == 1 and err.startswith("ipyrepro explain: "), err
    else:
        assert code in (0, 1) and err == ""
        result = _strict(out)  # strict JSON: no NaN or Infinity echoed back
        assert result["exit_code"] == code


def test_an_old_fingerprint_without_state_still_loads_and_compares(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = base()
    for cell in old["cells"]:
        cell.pop("state")
    write(tmp_path / "old.json", old)
    write(tmp_path / "new.json", base())
    assert main(["explain", str(tmp_path / "old.json"), str(tmp_path / "new.json"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["cells_compared"] == 2 and result["states_compared"] == 0
    assert result["first_state_divergence"] is None


def test_explain_names_the_first_cell_whose_state_differs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(tmp_path / "a.json", base())
    write(tmp_path / "b.json", _set(base(), ("cells", 0, "state", "w"), "xxh3_128:" + "f" * 32))
    assert main(["explain", str(tmp_path / "a.json"), str(tmp_path / "b.json")]) == 1
    out = capsys.readouterr().out
    assert "First state divergence: cell 0 (1 of 2 code cells, id 'a'): w differs (a.json vs b.json)" in out
