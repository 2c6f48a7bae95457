"""`ipyrepro check`: notebooks run in real kernels, compared cell by cell; clear errors; the file untouched."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import nbformat
import pytest
import torch
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from ipyrepro.cli import main
from ipyrepro.core.seeding import derive_cell_seed
from ipyrepro.notebooks.check import check
from ipyrepro.notebooks.notebookfile import NotebookError, load_notebook
from ipyrepro.notebooks.outputs import Comparison, output_items


def write(path: Path, *cells, nbformat_version: int = 4, **metadata) -> Path:
    notebook = new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3"}, **metadata})
    notebook.cells = list(cells)
    nbformat.write(notebook, path)
    return path


def code(source: str, cell_id: str, tags: tuple[str, ...] = ()) -> nbformat.NotebookNode:
    cell = new_code_cell(source, id=cell_id)
    if tags:
        cell.metadata["tags"] = list(tags)
    return cell


# -- reading the notebook --------------------------------------------------------------


def test_unreadable_notebooks_give_clear_errors(tmp_path: Path, capsys) -> None:
    (tmp_path / "broken.ipynb").write_text("{not json")
    (tmp_path / "old.ipynb").write_text(json.dumps({"nbformat": 3, "cells": [], "worksheets": []}))
    (tmp_path / "list.ipynb").write_text("[1, 2]")
    cases = {
        tmp_path / "missing.ipynb": "no such notebook",
        tmp_path / "broken.ipynb": "not valid JSON",
        tmp_path / "old.ipynb": "nbformat 3",
        tmp_path / "list.ipynb": "without a list of cells",
        tmp_path: "is a folder",
    }
    for path, message in cases.items():
        with pytest.raises(NotebookError, match=message):
            load_notebook(path)
        if path == tmp_path:  # the command line checks a folder's notebooks (test_check_many.py)
            continue
        assert main(["check", str(path), "--quiet"]) == 2
        assert message in capsys.readouterr().err
    assert main(["check", str(tmp_path), "--quiet"]) == 2  # each unreadable one is an ERROR row with its reason
    out = capsys.readouterr().out
    assert "not valid JSON" in out and "nbformat 3" in out and "ERROR: 3 notebooks (3 ERROR)." in out


def test_cells_without_ids_get_stable_stand_ins(tmp_path: Path) -> None:
    path = tmp_path / "old.ipynb"
    path.write_text(
        json.dumps(
            {
                "nbformat": 4,
                "nbformat_minor": 2,
                "metadata": {},
                "cells": [
                    {"cell_type": "markdown", "source": "x", "metadata": {}},
                    {"cell_type": "code", "source": ["a = 1\n", "a"], "metadata": {"tags": ["t"]}, "outputs": []},
                ],
            }
        )
    )
    cells, _ = load_notebook(path)
    assert [(c.index, c.cell_id, c.source, c.tags) for c in cells] == [(1, "cell-1", "a = 1\na", ("t",))]


@pytest.mark.parametrize(
    "arguments",
    [
        ["--runs", "0"],
        ["--rtol", "-1"],
        ["--atol", "nan"],
        ["--seed", "-3"],
        ["--timeout", "x"],
        ["--reseed", "sources"],
    ],
)
def test_bad_options_are_usage_errors(tmp_path: Path, arguments: list[str]) -> None:
    path = write(tmp_path / "n.ipynb", code("1", "a"))
    with pytest.raises(SystemExit) as exit_info:
        main(["check", str(path), *arguments])
    assert exit_info.value.code == 2


def test_a_bad_sanitize_pattern_stops_before_any_kernel_starts(tmp_path: Path, capsys) -> None:
    path = write(tmp_path / "n.ipynb", code("1", "a"))
    assert main(["check", str(path), "--sanitize", "(unclosed", "--quiet"]) == 2
    assert "not a valid regular expression" in capsys.readouterr().err


# -- comparing -------------------------------------------------------------------------


def test_sanitising_hides_addresses_timings_and_temp_paths() -> None:
    comparison = Comparison.build()
    a = "<Net at 0x7f3a2b1c9d50>\nCPU times: user 2 ms, sys: 1 ms, total: 3 ms\nWall time: 2.5 ms\n/tmp/abc123/x.pt"
    b = "<Net at 0x7f11aa220e10>\nCPU times: user 9 ms, sys: 0 ns, total: 9 ms\nWall time: 11 ms\n/tmp/zz9/x.pt"
    assert comparison.clean(a) == comparison.clean(b)
    assert "1.5 µs ± 2 ns per loop" not in Comparison.build().clean(
        "1.5 µs ± 2 ns per loop (mean ± std. dev. of 7 runs, 100,000 loops each)"
    )
    assert Comparison.build(["step \\d+"]).clean("step 12 done") == "<sanitized> done"


def test_tolerance_applies_to_numbers_inside_text_only() -> None:
    exact, loose = Comparison.build(), Comparison.build(rtol=1e-6, atol=1e-9)
    assert not exact.same_text("loss 1.0000001", "loss 1.0000002")
    assert loose.same_text("loss 1.0000001 at step 3", "loss 1.0000002 at step 3")
    assert not loose.same_text("loss 1.0000001 at step 3", "loss 1.0000001 at step 4")
    assert not loose.same_text("loss 1.0", "loss 1.1")
    assert not loose.same_text("loss 1.0", "gain 1.0")
    assert loose.same_text("tensor([nan, 2.5e-03])", "tensor([nan, 2.5e-03])")
    assert not loose.same_text("nan", "1.0")


def test_widget_model_ids_are_not_compared() -> None:
    def widget(model_id: str) -> list[dict]:
        data = {"application/vnd.jupyter.widget-view+json": {"model_id": model_id, "version_major": 2}}
        return [{"output_type": "display_data", "data": data, "metadata": {}}]

    comparison = Comparison.build()
    assert output_items(widget("abc"), comparison) == output_items(widget("def"), comparison)


# -- real kernels ----------------------------------------------------------------------

PLANTED = [
    new_markdown_cell("# A notebook with one planted nondeterminism"),
    code("import os, tempfile, numpy as np, torch\nprint(torch.rand(3).tolist())", "draw"),
    code("print(object())\n%time total = sum(range(10))\nprint(tempfile.mkdtemp())", "unstable-but-sanitised"),
    code("np.random.default_rng().random()  # planted: unseeded", "planted"),
    code(
        "from IPython.display import Image, display\n"
        "display(Image(data=b'\\x89PNG\\r\\n\\x1a\\n' + os.urandom(8), format='png'))",
        "image",
    ),
    code("1 / 0", "expected-error", tags=("raises-exception",)),
    code("import time; time.perf_counter_ns()", "ignored", tags=("ipyrepro-ignore-output",)),
    code("print(os.environ.get('PYTHONHASHSEED'), os.environ.get('CUBLAS_WORKSPACE_CONFIG'))", "env"),
]


@pytest.mark.kernel
def test_check_names_the_planted_cell_and_the_image_and_leaves_the_file_alone(tmp_path: Path, capsys) -> None:
    path = write(tmp_path / "planted.ipynb", *PLANTED)
    before, mtime = path.read_bytes(), path.stat().st_mtime_ns
    assert main(["check", str(path), "--seed", "4", "--cublas", ":16:8", "--quiet", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert [(d["cell"]["index"], d["cell"]["id"], d["mime"], d["image"]) for d in report["differences"]] == [
        (3, "planted", "text/plain", False),
        (4, "image", "image/png", True),
    ]
    assert report["differences"][0]["cell"]["label"] == "cell 4 of 8 (code cell 3 of 7, id 'planted')"
    assert path.read_bytes() == before and path.stat().st_mtime_ns == mtime


@pytest.mark.kernel
def test_default_runs_are_seeded_per_cell_id_with_the_kernel_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What `%repro on` exports to children, e.g. around `!ipyrepro check` in a notebook: fresh kernels ignore it.
    for name, value in (("IPYREPRO_SEED", "9"), ("IPYREPRO_RESEED", "fixed"), ("IPYREPRO_DETERMINISTIC", "warn")):
        monkeypatch.setenv(name, value)
    path = write(tmp_path / "planted.ipynb", *PLANTED)
    report = check(path, runs=1, seed=4, cublas=":16:8")
    assert report.exit_code == 0, str(report)
    generator = torch.Generator().manual_seed(derive_cell_seed(4, "draw"))
    assert json.loads(report.runs[0].outputs[1][0]["text"]) == torch.rand(3, generator=generator).tolist()
    assert report.runs[0].outputs[7][0]["text"] == "4 :16:8\n"
    assert report.runs[0].outputs[5][0]["ename"] == "ZeroDivisionError"


@pytest.mark.kernel
def test_reseed_source_seeds_every_cell_from_its_code(tmp_path: Path, capsys) -> None:
    draw = "import ipyrepro, torch\nassert ipyrepro.status().derivation == 'source'\nprint(torch.rand(2).tolist())"
    path = write(tmp_path / "n.ipynb", code(draw, "draw"), code(draw, "same-code"))
    assert main(["check", str(path), "--runs", "2", "--reseed", "source", "--quiet"]) == 0
    assert "under ipyrepro (seed 0, re-seed source)" in capsys.readouterr().out


@pytest.mark.kernel
def test_as_is_runs_untouched_and_catches_unseeded_torch(tmp_path: Path) -> None:
    path = write(tmp_path / "n.ipynb", PLANTED[1], PLANTED[7])
    report = check(path, runs=2, as_is=True)
    assert report.exit_code == 1
    assert [(d.cell.cell_id, d.what) for d in report.differences] == [("draw", "stdout")]
    assert report.runs[0].outputs[1][0]["text"].split()[0] == str(os.environ.get("PYTHONHASHSEED"))
    assert "cell 1 of 2 (code cell 1 of 2, id 'draw')" in str(report) and "torch.rand(3)" in str(report)


@pytest.mark.kernel
def test_a_cell_that_raises_is_compared_and_the_run_goes_on_unless_stop_on_error(tmp_path: Path, capsys) -> None:
    path = write(
        tmp_path / "n.ipynb",
        code("x = 1", "ok"),
        code("raise KeyError('boom')", "bad"),
        code("print('after', x)", "after"),
    )
    assert main(["check", str(path), "--runs", "2", "--as-is", "--quiet"]) == 2
    out = capsys.readouterr().out
    assert "Reproduced errors (the same exception in every run):" in out
    assert "cell 2 of 3 (code cell 2 of 3, id 'bad'): KeyError: 'boom' (not tagged 'raises-exception'" in out
    assert out.splitlines()[-1] == (
        "ERROR: all 3 code cells matched; 1 raised the same error in every run (1 not tagged 'raises-exception')."
    )
    report = check(path, runs=1, as_is=True)
    assert report.runs[0].outputs[2][0]["text"] == "after 1\n"

    assert main(["check", str(path), "--runs", "2", "--as-is", "--quiet", "--stop-on-error"]) == 2
    out = capsys.readouterr().out
    assert "cell 2 of 3 (code cell 2 of 3, id 'bad') raised KeyError: 'boom'; this run stopped there" in out
    assert out.splitlines()[-1] == "ERROR: nothing to compare (fewer than 2 complete runs)."
    report = check(path, runs=1, as_is=True, stop_on_error=True)
    assert 2 not in report.runs[0].outputs


@pytest.mark.kernel
def test_a_cell_that_hangs_times_out_and_its_kernel_is_shut_down(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    path = write(
        tmp_path / "n.ipynb",
        code(f"import os, time\nopen({str(pid_file)!r}, 'w').write(str(os.getpid()))", "pid"),
        code("time.sleep(60)", "hang"),
    )
    report = check(path, runs=1, as_is=True, timeout=2)
    assert report.exit_code == 2
    assert "cell 2 of 2 (code cell 2 of 2, id 'hang')" in report.errors[0] and "timeout (2 s)" in report.errors[0]
    with pytest.raises(ProcessLookupError):
        os.kill(int(pid_file.read_text()), 0)


@pytest.mark.kernel
def test_a_kernel_that_dies_is_reported(tmp_path: Path) -> None:
    path = write(tmp_path / "n.ipynb", code("import os; os._exit(3)", "exit"))
    report = check(path, runs=1, as_is=True)
    assert report.exit_code == 2 and "died" in report.errors[0]
    assert "cell 1 of 1 (code cell 1 of 1, id 'exit')" in report.errors[0]


def test_a_missing_kernel_is_reported_once(tmp_path: Path) -> None:
    path = write(tmp_path / "n.ipynb", code("1", "a"))
    report = check(path, runs=3, kernel="no-such-kernel")
    assert report.exit_code == 2 and len(report.runs) == 1
    assert "no kernel named 'no-such-kernel'" in report.errors[0]


@pytest.mark.kernel
def test_a_kernel_that_cannot_start_is_reported_with_its_output(tmp_path: Path) -> None:
    from jupyter_client.kernelspec import KernelSpecManager

    folder = tmp_path / "kernels" / "broken"
    folder.mkdir(parents=True)
    argv = [sys.executable, "-c", "import sys; sys.stderr.write('broken on purpose\\n'); sys.exit(3)"]
    (folder / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": "Broken", "language": "python"}))
    path = write(tmp_path / "n.ipynb", code("1", "a"))
    report = check(
        path,
        runs=2,
        kernel="broken",
        startup_timeout=20,
        kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(tmp_path / "kernels")]),
    )
    assert report.exit_code == 2 and len(report.runs) == 1
    assert "did not start" in report.errors[0] and "broken on purpose" in report.errors[0]
