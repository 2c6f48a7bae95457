"""`ipyrepro check` against hostile notebooks and paths, and a report that shows both runs and where a cell raised."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from pathlib import Path

import nbformat
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from ipyrepro.cli import main
from ipyrepro.notebooks.check import check
from ipyrepro.notebooks.notebookfile import NotebookError, load_notebook
from ipyrepro.notebooks.outputs import short_diff


def write(path: Path, *cells, **metadata) -> Path:
    notebook = new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3"}, **metadata})
    notebook.cells = list(cells)
    nbformat.write(notebook, path)
    return path


def raw(path: Path, document: object) -> Path:
    path.write_text(json.dumps(document))
    return path


def notebook(cells: list, metadata: object = None) -> dict:
    return {"nbformat": 4, "nbformat_minor": 5, "metadata": {} if metadata is None else metadata, "cells": cells}


def code(source: object = "1", **fields) -> dict:
    return {"cell_type": "code", "id": "c", "source": source, "metadata": {}, "outputs": [], **fields}


# -- malformed notebooks: exit 2 naming the cell and the field ---------------------------


@pytest.mark.parametrize(
    "document, message",
    [
        (notebook([code(source=7)]), 'cell 0\'s "source" must be text or a list of text, not a number'),
        (notebook([code(source=["a", 1])]), 'cell 0\'s "source"'),
        (notebook([{"cell_type": "markdown", "source": "#"}, code(metadata=[])]), 'cell 1\'s "metadata"'),
        (notebook([code(metadata={"tags": "raises-exception"})]), "cell 0's metadata.tags must be a list of text"),
        (notebook([code(metadata={"tags": [1]})]), "cell 0's metadata.tags"),
        (notebook([code(id=5)]), 'cell 0\'s "id" must be text'),
        (notebook(["x = 1"]), "cell 0's entry must be an object, not text"),
        (notebook([{"source": "x"}]), 'cell 0\'s "cell_type" must be text'),
        (notebook([code()], metadata=[]), 'the notebook\'s "metadata" must be an object, not a list'),
        (notebook([code()], metadata={"kernelspec": "python3"}), "metadata.kernelspec must be an object, not text"),
        (notebook([code()], metadata={"kernelspec": {"name": 3}}), "metadata.kernelspec.name must be a kernel name"),
        (notebook([code(source=["ok", "\ud800"])]), 'cell 0\'s "source" holds invalid Unicode'),
    ],
)
def test_malformed_notebooks_are_usage_errors_naming_cell_and_field(
    tmp_path: Path, capsys, document: dict, message: str
) -> None:
    path = raw(tmp_path / "bad.ipynb", document)
    with pytest.raises(NotebookError, match="malformed"):
        load_notebook(path)
    assert main(["check", str(path), "--quiet"]) == 2
    assert message in capsys.readouterr().err


def test_deeply_nested_json_is_a_usage_error(tmp_path: Path, capsys) -> None:
    path = tmp_path / "deep.ipynb"
    path.write_text('{"nbformat": 4, "cells": [], "metadata": ' + "[" * 100_000 + "]" * 100_000 + "}")
    assert main(["check", str(path), "--quiet"]) == 2
    assert "nested too deeply" in capsys.readouterr().err


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5) | st.just("\udc80"),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=12,
)
_CELL_FIELDS = st.fixed_dictionaries(
    {},
    optional={
        "cell_type": st.sampled_from(["code", "markdown", "raw"]) | _JSON,
        "id": st.text(max_size=5) | _JSON,
        "source": st.text(max_size=10) | st.lists(st.text(max_size=5) | st.just("a\ud800"), max_size=3) | _JSON,
        "metadata": st.fixed_dictionaries({}, optional={"tags": st.lists(st.text(max_size=5)) | _JSON}) | _JSON,
    },
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    cells=st.lists(_CELL_FIELDS | _JSON, max_size=4),
    metadata=st.fixed_dictionaries({}, optional={"kernelspec": _JSON | st.fixed_dictionaries({"name": _JSON})}) | _JSON,
    top=st.fixed_dictionaries({}, optional={"nbformat": st.sampled_from([4, 3, "4"]), "extra": _JSON}),
)
def test_fuzzed_notebook_json_loads_or_is_a_notebook_error(tmp_path: Path, cells, metadata, top) -> None:
    """Any JSON either loads into cells with text fields or raises NotebookError: never another exception."""
    path = tmp_path / "fuzz.ipynb"
    path.write_text(json.dumps({"nbformat": 4, "cells": cells, "metadata": metadata, **top}))
    try:
        loaded, meta = load_notebook(path)
    except NotebookError as error:
        assert str(path) in str(error)
        return
    assert isinstance(meta, dict)
    for cell in loaded:
        assert isinstance(cell.source, str) and isinstance(cell.cell_id, str)
        cell.source.encode("utf-8"), cell.cell_id.encode("utf-8")  # sendable to a kernel
        assert all(isinstance(tag, str) for tag in cell.tags)


# -- hostile paths: regular files only, bounded reads, path errors named -----------------


def _path_cases(tmp_path: Path) -> dict[str, str]:
    regular = write(tmp_path / "n.ipynb", new_code_cell("1"))
    fifo = tmp_path / "fifo.ipynb"
    os.mkfifo(fifo)
    loop = tmp_path / "loop.ipynb"
    loop.symlink_to(loop)
    return {
        str(fifo): "is a FIFO",
        "/dev/zero": "is a device",
        "/dev/urandom": "is a device",
        str(regular / "x.ipynb"): "is a file, not a folder",
        str(tmp_path / ("n" * 300 + ".ipynb")): "too long",
        str(loop): "symlink loop",
        "~nosuchuser-ipyrepro/x.ipynb": "no user 'nosuchuser-ipyrepro'",
        str(tmp_path / "nul\0.ipynb"): "NUL",
    }


@pytest.mark.timeout(60)
def test_special_files_and_bad_paths_are_usage_errors(tmp_path: Path, capsys) -> None:
    for path, problem in _path_cases(tmp_path).items():
        assert main(["check", path, "--quiet"]) == 2, path
        error = capsys.readouterr().err
        assert problem in error and "Traceback" not in error, (path, error)


def test_a_symlink_to_a_regular_notebook_is_read(tmp_path: Path) -> None:
    target = write(tmp_path / "n.ipynb", new_code_cell("1", id="a"))
    link = tmp_path / "link.ipynb"
    link.symlink_to(target)
    assert [cell.cell_id for cell in load_notebook(link)[0]] == ["a"]


def test_notebook_reads_are_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import ipyrepro.notebooks.notebookfile as notebookfile

    path = write(tmp_path / "n.ipynb", new_code_cell("x" * 5000))
    monkeypatch.setattr(notebookfile, "MAX_NOTEBOOK_BYTES", 1000)
    with pytest.raises(NotebookError, match="more than the 1,000 allowed"):
        load_notebook(path)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.text(alphabet=st.characters(codec="utf-8", exclude_characters="/"), min_size=1, max_size=300))
def test_fuzzed_notebook_paths_load_or_are_notebook_errors(tmp_path: Path, name: str) -> None:
    for path in (name, str(tmp_path / name), str(tmp_path / "n.ipynb" / name), "~" + name):
        with contextlib.suppress(NotebookError):  # anything else fails the test
            load_notebook(path)


# -- the report ------------------------------------------------------------------------


def test_a_long_difference_shows_lines_of_both_runs() -> None:
    a = "\n".join(f"loss {i} 0.{i}1" for i in range(40))
    b = "\n".join(f"loss {i} 0.{i}2" for i in range(40))
    shown = short_diff(a, b, 1, 2)
    minus = [line.strip() for line in shown.splitlines() if line.strip().startswith("-") and "---" not in line]
    plus = [line.strip() for line in shown.splitlines() if line.strip().startswith("+") and "+++" not in line]
    assert minus and plus, shown
    assert minus[0] == "-loss 0 0.01" and plus[0] == "+loss 0 0.02"
    assert "--- run 1" in shown and "+++ run 2" in shown and "more differing lines" in shown


@settings(max_examples=200, deadline=None)
@given(a=st.lists(st.text(max_size=8), max_size=30), b=st.lists(st.text(max_size=8), max_size=30))
def test_a_difference_always_shows_both_sides_when_both_have_lines(a: list[str], b: list[str]) -> None:
    text_a, text_b = "\n".join(a), "\n".join(b)
    if text_a != text_b:
        assert short_diff(text_a, text_b, 1, 2).strip()  # never an empty detail for texts that differ
        assert short_diff(text_a, text_a + "\n", 1, 2).strip()
    shown = short_diff(text_a, text_b, 1, 2).splitlines()[2:]
    body = [line.strip() for line in shown if not line.strip().startswith("...")]
    lines_a, lines_b = text_a.splitlines(), text_b.splitlines()
    import difflib

    diff = [
        line for line in list(difflib.unified_diff(lines_a, lines_b, lineterm="", n=0))[2:] if not line.startswith("@@")
    ]
    if any(line.startswith("-") for line in diff):
        assert any(line.startswith("-") for line in body)
    if any(line.startswith("+") for line in diff):
        assert any(line.startswith("+") for line in body)


def test_runs_1_is_a_usage_error(tmp_path: Path, capsys) -> None:
    path = write(tmp_path / "n.ipynb", new_code_cell("1"))
    with pytest.raises(SystemExit) as exit_info:
        main(["check", str(path), "--runs", "1"])
    assert exit_info.value.code == 2
    assert "2 or more" in capsys.readouterr().err


@pytest.mark.kernel
def test_report_numbers_cells_shows_tracebacks_and_the_full_diff(tmp_path: Path, capsys) -> None:
    path = write(
        tmp_path / "n.ipynb",
        new_markdown_cell("# title"),
        new_code_cell("import random\nprint('\\n'.join(str(random.random()) for _ in range(30)))", id="draw"),
        new_markdown_cell("text"),
        new_code_cell("def f():\n    return 1 / 0\n", id="define"),
        new_code_cell("x = 1\n\ny = f()", id="bad"),
    )
    assert main(["check", str(path), "--as-is", "--quiet", "--json"]) == 2
    report = json.loads(capsys.readouterr().out)
    error = report["errors"][0]
    assert "cell 4 (code cell 2, id 'bad') raised ZeroDivisionError" in error
    assert "line 3" in error and "y = f()" in error  # the cell's own frame, by line
    assert "line 2" in error and "return 1 / 0" in error  # and the function's frame
    assert "\x1b[" not in error


@pytest.mark.kernel
def test_json_carries_the_full_diff_of_both_runs(tmp_path: Path, capsys) -> None:
    path = write(
        tmp_path / "n.ipynb",
        new_markdown_cell("# title"),
        new_code_cell("import random\nprint('\\n'.join(str(random.random()) for _ in range(30)))", id="draw"),
    )
    assert main(["check", str(path), "--as-is", "--quiet", "--json"]) == 1
    (difference,) = json.loads(capsys.readouterr().out)["differences"]
    assert (difference["index"], difference["code_index"], difference["cell_id"]) == (1, 0, "draw")
    diff = difference["diff"].splitlines()
    assert sum(line.startswith("-") for line in diff[2:]) == 30 and sum(line.startswith("+") for line in diff[2:]) == 30
    shown = [line.strip() for line in difference["detail"].splitlines()]
    assert any(line.startswith("-0.") for line in shown) and any(line.startswith("+0.") for line in shown)


@pytest.mark.kernel
def test_as_is_runs_a_plain_kernel_instead_of_an_ipyrepro_kernel(tmp_path: Path) -> None:
    from jupyter_client.kernelspec import KernelSpecManager

    from ipyrepro.notebooks.kernelspec import install

    install("repro-kernel", seed=5, prefix=tmp_path)
    path = write(
        tmp_path / "n.ipynb",
        new_code_cell(
            "import os, sys\nprint(os.environ.get('PYTHONHASHSEED'), 'ipyrepro' in sys.modules, sys.executable)",
            id="env",
        ),
        new_code_cell("import random\nprint(random.SystemRandom().random())", id="draw"),
        kernelspec={"name": "repro-kernel", "display_name": "repro"},
    )
    manager = KernelSpecManager(kernel_dirs=[str(tmp_path / "share" / "jupyter" / "kernels")])
    report = check(path, runs=2, as_is=True, kernel_spec_manager=manager)
    assert report.exit_code == 1 and [d.cell.cell_id for d in report.differences] == ["draw"], str(report)
    # the kernel that looks for causes is the same plain kernel
    assert report.causes is not None and report.causes.status == "done", report.causes
    assert [cause.kind for cause in report.cell_causes(1)] == ["entropy"]
    printed = report.runs[0].outputs[0][0]["text"].split()
    assert printed[0] != "5" and printed[1] == "False" and printed[2] == sys.executable
    assert "'repro-kernel' is an ipyrepro kernel" in str(report).splitlines()[0]
    assert "plain kernel" in report.to_dict()["kernel_note"]


@pytest.mark.kernel
def test_default_mode_on_an_ipyrepro_kernel_runs_with_the_checks_own_hash_seed_and_the_kernels_mode(
    tmp_path: Path,
) -> None:
    """An ipyrepro kernel's kernelspec env (PYTHONHASHSEED 5) would win over the check's: the runs would not
    hash with the check's seed, and the causes kernel could not change it to prove hash order."""
    from jupyter_client.kernelspec import KernelSpecManager

    from ipyrepro.notebooks.kernelspec import install

    install("repro-kernel", seed=5, reseed="source", prefix=tmp_path)
    path = write(
        tmp_path / "n.ipynb",
        new_code_cell("import os, random, ipyrepro\nwords = ['pear', 'apple', 'fig', 'kiwi', 'plum']", id="setup"),
        new_code_cell(
            "print(os.environ['PYTHONHASHSEED'], ipyrepro.status().reseed, random.SystemRandom().random())",
            id="draw",
        ),
        new_code_cell("print([w for w in set(words)])", id="hash-order"),
        kernelspec={"name": "repro-kernel", "display_name": "repro"},
    )
    manager = KernelSpecManager(kernel_dirs=[str(tmp_path / "share" / "jupyter" / "kernels")])
    report = check(path, runs=2, seed=7, kernel_spec_manager=manager)
    assert [d.cell.cell_id for d in report.differences] == ["draw"], str(report)
    # the check's seed, the kernel's re-seed mode
    assert report.runs[0].outputs[1][0]["text"].startswith("7 source ")
    assert report.causes is not None and report.causes.hash_seeds == ("7", "8")
    assert report.causes.hash_order_cells == [2], report.causes
