"""`ipyrepro check --jobs N`: fresh kernels in parallel, and a report that does not depend on N."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from ipyrepro.cli import main
from ipyrepro.notebooks.check import check, default_jobs


def notebook(tmp_path: Path) -> Path:
    nb = new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3"}})
    nb.cells = [
        new_code_cell("import os, random\nrandom.seed(1)\nprint(random.random())", id="seeded"),
        new_code_cell("print(os.urandom(8).hex())", id="unseeded"),
        new_code_cell("print(os.getpid() > 0)", id="same"),
    ]
    path = tmp_path / "mixed.ipynb"
    nbformat.write(nb, path)
    return path


def summary(report) -> tuple:
    return (
        report.exit_code,
        len(report.runs),
        [(d.cell.index, d.what, d.runs) for d in report.differences],
        [run.outputs for run in report.runs][0][0],  # the seeded cell's output, the same in every run
    )


def test_the_report_is_the_same_sequential_and_parallel(tmp_path: Path) -> None:
    path = notebook(tmp_path)
    sequential = check(path, runs=2, as_is=True, jobs=1, causes=False)
    parallel = check(path, runs=2, as_is=True, jobs=2, causes=False)
    assert summary(sequential) == summary(parallel)
    assert sequential.exit_code == 1 and [d.cell.cell_id for d in parallel.differences] == ["unseeded"]
    assert [run.number for run in parallel.runs] == [1, 2]


def test_a_kernel_that_cannot_start_ends_the_report_at_run_one_with_any_jobs(tmp_path: Path) -> None:
    path = notebook(tmp_path)
    for jobs in (1, 3):
        lines: list[str] = []
        report = check(path, runs=3, kernel="no-such-kernel-ipyrepro", jobs=jobs, progress=lines.append)
        assert report.exit_code == 2 and len(report.runs) == 1, jobs
        # header, JSON, progress and verdict count the same runs: one started, of three asked for
        assert "1 of 3 runs in fresh 'no-such-kernel-ipyrepro' kernels (the kernel could not start)" in report.header()
        data = report.to_dict()
        assert (data["runs"], data["runs_requested"]) == (1, 3)
        started = [line for line in lines if "starting kernel" in line]
        assert started == ["run 1 of 3: starting kernel 'no-such-kernel-ipyrepro'"], jobs
        assert not any(line.startswith(("run 2", "run 3")) for line in lines), jobs
        assert str(report).splitlines()[-1] == "ERROR: nothing to compare (the kernel could not start in 1 run)."


def test_jobs_defaults_to_runs_capped_by_cpus() -> None:
    assert default_jobs(1) == 1
    assert 1 <= default_jobs(64) <= 64
    assert default_jobs(2) == min(2, default_jobs(64))


@pytest.mark.parametrize("value", ["0", "-1", "two"])
def test_a_bad_job_count_is_a_usage_error(tmp_path: Path, value: str, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["check", str(notebook(tmp_path)), "--jobs", value])
    assert exit_info.value.code == 2
    assert "invalid job count" in capsys.readouterr().err
