"""scripts/gpu-check's plumbing, on a CPU: fresh processes, the time budget, the table, the log, the no-GPU exit.

The GPU claims themselves are only proven on a GPU; here the script must say
plainly that nothing was checked, and each piece it is built from must work.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from ipyrepro.core.torchinfo import cublas_facts, late_cublas_message

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "gpu-check"

_spec = importlib.util.spec_from_file_location("gpu_check", REPO / "scripts" / "gpu_check.py")
gpu_check = importlib.util.module_from_spec(_spec)
sys.modules["gpu_check"] = gpu_check  # dataclasses look their module up by name
_spec.loader.exec_module(gpu_check)

Row, ChildResult = gpu_check.Row, gpu_check.ChildResult
no_gpu_here = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU: the script runs the checks")


def run_script(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(SCRIPT), *args], cwd=cwd, capture_output=True, text=True, timeout=120)


@pytest.fixture
def runner(tmp_path: Path):
    log = gpu_check.Log(tmp_path / "gpu-check.log", echo=None)
    runner = gpu_check.Runner(log, budget_s=200)
    yield runner
    runner.close()
    log.close()


def planned_rows(name: str) -> list[tuple[str, str]]:
    return gpu_check.CHECKS[name].planned


# -- the whole script without a GPU ------------------------------------------------------


@no_gpu_here
def test_without_a_gpu_it_says_nothing_was_checked_and_exits_3(tmp_path: Path) -> None:
    done = run_script("--log", "logs/check.log", cwd=tmp_path)
    assert done.returncode == 3
    assert "NO GPU" in done.stdout and "Nothing was checked" in done.stdout
    last = done.stdout.strip().splitlines()
    assert last[-1].startswith("NO GPU: nothing was checked (exit 3)")
    table = [line for line in last if line.startswith("NOT RUN")]
    every_row = [row for name in gpu_check.CHECKS for row in planned_rows(name)]
    assert len(table) == len(every_row)
    for (check, expected), line in zip(every_row, table):
        assert check in line and expected in line and line.rstrip().endswith("no GPU")
    log = (tmp_path / "logs" / "check.log").read_text()
    assert f"torch {torch.__version__}" in log
    assert "NO GPU:" in log and "exit status 3" in log


@no_gpu_here
def test_only_limits_the_table_and_markdown_prints_a_markdown_table(tmp_path: Path) -> None:
    done = run_script("--only", "late-cublas", "--markdown", cwd=tmp_path)
    assert done.returncode == 3
    rows = [line for line in done.stdout.splitlines() if line.startswith("| NOT RUN")]
    assert len(rows) == 2
    assert f"late-cuBLAS {cublas_facts().severity}" in rows[0]
    assert (tmp_path / "gpu-check.log").exists()  # the default log path is in the current directory


@pytest.mark.parametrize(
    "args, message",
    [
        (("--only", "cuda-tests,nope"), "unknown check nope"),
        (("--processes", "0"), "--processes must be at least 1"),
        (("--budget", "0"), "--budget must be a positive number of seconds"),
    ],
)
def test_bad_options_exit_2_with_a_clear_message(tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    done = run_script(*args, cwd=tmp_path)
    assert done.returncode == 2
    assert message in done.stderr
    assert not (tmp_path / "gpu-check.log").exists()


# -- the table and the exit status ----------------------------------------------------


def test_the_table_aligns_columns_under_a_header() -> None:
    rows = [Row("short", "x", "y", "PASS"), Row("a much longer check", "expected thing", "seen", "INCONCLUSIVE")]
    lines = gpu_check.render_table(rows).splitlines()
    assert lines[0].split() == ["status", "check", "expected", "seen"]
    assert set(lines[1].replace(" ", "")) == {"-"}
    starts = {line.index(word) for line, word in zip(lines[2:], ("short", "a much longer check"))}
    assert starts == {lines[0].index("check")}


def test_the_markdown_table_escapes_pipes() -> None:
    table = gpu_check.render_table([Row("a|b", "e", "s", "FAIL")], markdown=True).splitlines()
    assert table[0] == "| status | check | expected | seen |"
    assert table[2] == "| FAIL | a\\|b | e | s |"


@pytest.mark.parametrize(
    "statuses, gpu, code",
    [
        (["NOT RUN", "NOT RUN"], False, 3),
        (["PASS", "INCONCLUSIVE", "N/A"], True, 0),
        (["PASS", "FAIL"], True, 1),
        (["PASS", "ERROR"], True, 1),
        (["PASS", "NOT RUN"], True, 1),  # a claim left unchecked for lack of time is not a pass
    ],
)
def test_exit_status(statuses: list[str], gpu: bool, code: int) -> None:
    assert gpu_check.exit_status([Row("c", "e", "s", status) for status in statuses], gpu=gpu) == code


# -- fresh processes -----------------------------------------------------------------


def test_cells_run_in_a_real_shell_and_return_result_and_magic_values(runner, monkeypatch) -> None:
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":16:8")
    result = runner.run_cells(
        "cells",
        [
            "import os, torch",
            "%load_ext ipyrepro",
            "%repro status",
            'RESULT = {"status type": type(CELL_RESULTS[-1]).__name__,'
            ' "cublas": os.environ.get("CUBLAS_WORKSPACE_CONFIG"),'
            ' "shell": type(get_ipython()).__name__, "cuda": torch.cuda.is_initialized()}',
        ],
    )
    assert result.ok, result.error
    assert result.value["status type"] == "Status"
    assert result.value["cublas"] is None  # the child starts without the caller's variable
    assert result.value["shell"].endswith("InteractiveShell")
    log = runner.log.path.read_text()
    assert "%repro status" in log and "ipyrepro is OFF" in log  # every cell and its output is logged


def test_a_failing_cell_is_named_and_later_cells_do_not_run(runner) -> None:
    result = runner.run_cells("failing", ["x = 1", "1 / 0", "RESULT = 'not reached'"])
    assert not result.ok
    assert result.error == "cell 1 raised ZeroDivisionError: division by zero"
    assert result.value is None


def test_a_child_past_its_timeout_is_killed_and_reported(runner) -> None:
    start = time.monotonic()
    result = runner.run_cells("slow", ["import time", "time.sleep(60)"], timeout=6)
    assert time.monotonic() - start < 30
    assert not result.ok and "timed out after 6s" in result.error


def test_a_child_that_dies_without_a_result_says_so() -> None:
    result = gpu_check.parse_child_output(139, "Segmentation fault\n", 1.0)
    assert result.error == "process exited with status 139 before giving a result (see the log)"


def test_nothing_starts_once_the_budget_is_spent(tmp_path: Path) -> None:
    log = gpu_check.Log(tmp_path / "log", echo=None)
    runner = gpu_check.Runner(log, budget_s=0)
    try:
        assert not runner.run_cells("late", ["RESULT = 1"]).ok
        rows = gpu_check.run_checks(["late-cublas", "cell-magic"], runner)
    finally:
        runner.close()
        log.close()
    assert [(row.check, row.expected) for row in rows] == planned_rows("late-cublas") + planned_rows("cell-magic")
    assert {row.status for row in rows} == {"NOT RUN"} and {row.seen for row in rows} == {"not run: out of time"}


def test_a_check_that_raises_becomes_error_rows_and_the_rest_still_run(runner, monkeypatch) -> None:
    def broken(_runner):
        raise KeyError("boom")

    monkeypatch.setitem(gpu_check.CHECKS, "broken", gpu_check.Check("broken", broken, [("one", "x"), ("two", "y")]))
    monkeypatch.setitem(gpu_check.CHECKS, "fine", gpu_check.Check("fine", lambda _: [Row("ok", "z", "z", "PASS")]))
    rows = gpu_check.run_checks(["broken", "fine"], runner)
    assert [(row.check, row.status) for row in rows] == [("one", "ERROR"), ("two", "ERROR"), ("ok", "PASS")]
    assert "boom" in rows[0].detail


# -- each check's assessment ---------------------------------------------------------


def failed(error: str = "cell 2 raised RuntimeError: CUDA error") -> ChildResult:
    return ChildResult(error=error)


def test_every_check_gives_the_rows_it_plans_even_when_its_processes_fail() -> None:
    produced = {
        "cuda-tests": [gpu_check.assess_cuda_tests(2, None, "ImportError: no module named pytest")],
        "nondeterminism": gpu_check.assess_nondeterminism([failed()], [failed()]),
        "late-cublas": gpu_check.assess_late_cublas(failed(), failed(), cublas_facts().severity),
        "cuda-untouched": [gpu_check.assess_untouched(face, failed()) for face in gpu_check.FACES],
        "cell-magic": gpu_check.assess_cell_magic(failed()),
        "sync": [gpu_check.assess_sync(f"check_in_sync over {name}", failed(), 2) for name in gpu_check.SYNC_MODES],
    }
    assert list(produced) == list(gpu_check.CHECKS)
    for name, rows in produced.items():
        assert [(row.check, row.expected) for row in rows] == planned_rows(name)
        assert {row.status for row in rows} == {"ERROR"}


def digests(*per_process: list[str]) -> list[ChildResult]:
    return [ChildResult(dict.fromkeys(gpu_check.NONDETERMINISTIC_OPS, values)) for values in per_process]


def test_nondeterminism_passes_when_plain_runs_differ_and_repro_runs_match() -> None:
    rows = gpu_check.assess_nondeterminism(digests(["a", "b", "a"], ["c", "a", "a"]), digests(["d"] * 3, ["d"] * 3))
    assert [row.status for row in rows] == ["PASS"] * 2 * len(gpu_check.NONDETERMINISTIC_OPS)
    assert rows[0].seen == "3 distinct results in 6 runs" and rows[1].seen == "1 distinct result in 6 runs"


def test_nondeterminism_fails_when_repro_runs_differ_and_is_inconclusive_when_plain_runs_match() -> None:
    rows = gpu_check.assess_nondeterminism(digests(["a"] * 3, ["a"] * 3), digests(["d", "d", "e"]))
    assert [row.status for row in rows] == ["INCONCLUSIVE", "FAIL"] * len(gpu_check.NONDETERMINISTIC_OPS)


def late_result(where: str | None, matmul: str = "ran") -> ChildResult:
    text = late_cublas_message(":4096:8")[1]
    return ChildResult(
        {
            "warnings": [text] if where == "warnings" else [],
            "notes": [text] if where == "notes" else [],
            "cublas": ":4096:8",
            "matmul_after_on": matmul,
        }
    )


@pytest.mark.parametrize("severity", ["warning", "note"])
def test_late_cublas_wants_exactly_the_severity_of_the_installed_torch(severity: str) -> None:
    right, wrong = ("warnings", "notes") if severity == "warning" else ("notes", "warnings")
    rows = gpu_check.assess_late_cublas(late_result(right), late_result(None), severity)
    assert [row.status for row in rows] == ["PASS", "PASS"]
    assert rows[0].seen == f"late-cuBLAS {severity}" and rows[1].seen == "none"
    rows = gpu_check.assess_late_cublas(late_result(wrong), late_result(right), severity)
    assert [row.status for row in rows] == ["FAIL", "FAIL"]


def test_untouched_passes_only_where_a_gpu_could_have_been_initialised() -> None:
    assess = gpu_check.assess_untouched
    assert assess("%repro", ChildResult({"available": True, "initialized": False})).status == "PASS"
    assert assess("%repro", ChildResult({"available": True, "initialized": True})).status == "FAIL"
    assert assess("%repro", ChildResult({"available": False, "initialized": False})).status == "N/A"


def test_cuda_tests_row_counts_from_a_real_junit_report(tmp_path: Path) -> None:
    (tmp_path / "test_sample.py").write_text(
        textwrap.dedent("""
        import pytest
        def test_passes(): pass
        def test_fails(): assert False
        @pytest.mark.skip(reason="no")
        def test_skipped(): pass
    """)
    )
    report = tmp_path / "report.xml"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={report}", "test_sample.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    counts = gpu_check.junit_counts(report)
    assert counts == {"passed": 1, "failed": 1, "skipped": 1, "failing": ["test_sample::test_fails"]}
    row = gpu_check.assess_cuda_tests(done.returncode, counts, done.stdout)
    assert row.status == "FAIL" and row.seen == "1 passed, 1 skipped, 1 failed"
    assert "test_sample::test_fails" in row.detail


# -- the real checks, run on this CPU machine --------------------------------------------


@no_gpu_here
def test_the_cuda_tests_check_finds_the_suites_cuda_tests_skipped_here(runner) -> None:
    [row] = gpu_check.check_cuda_tests(runner)
    passed, skipped = int(row.seen.split()[0]), int(row.seen.split()[2])
    assert passed == 0 and skipped >= 10  # tests/core/test_cuda.py alone has more
    assert row.status == "FAIL" and "nothing marked cuda should skip" in row.detail


@no_gpu_here
def test_every_face_of_the_untouched_check_runs_here_as_a_smoke_test(runner) -> None:
    rows = gpu_check.check_cuda_untouched(runner)
    assert [(row.check, row.status) for row in rows] == [(check, "N/A") for check, _ in planned_rows("cuda-untouched")]
    assert {row.seen for row in rows} == {"ran; no GPU to initialise"}


CPU_RACING_CELL = """%%repro --runs 3
import time
totals = torch.zeros(100)
totals.put_(slots[:1000], values[:1000], accumulate=False)  # no deterministic implementation on any device
stamp = time.perf_counter_ns()  # differs every run, standing in for a GPU race
"""


def test_the_cell_magic_check_reads_a_real_report_naming_the_op_and_the_differing_name(runner) -> None:
    result = runner.run_cells("%%repro on CPU", gpu_check.cell_magic_cells(CPU_RACING_CELL, device="cpu"), timeout=120)
    assert result.ok, result.error
    assert result.value["nondeterministic"]["ops"] == ["put_"]
    rows = gpu_check.assess_cell_magic(result, op="put_", name="stamp")
    assert [(row.status, row.seen) for row in rows] == [("PASS", "differs in stamp; put_ named"), ("PASS", "ok")]


def report(ok: bool, differences: list[str], ops: list[str]) -> dict:
    return {"ok": ok, "differences": differences, "ops": ops, "text": "report text"}


@pytest.mark.parametrize(
    "racing, status",
    [
        (report(False, ["totals"], ["put_"]), "PASS"),
        (report(False, ["totals"], []), "FAIL"),  # the op is not named
        (report(False, ["other"], ["put_"]), "FAIL"),  # the racing name is not reported
        (report(True, [], []), "INCONCLUSIVE"),  # the op did not race: nothing to name
    ],
)
def test_the_cell_magic_row_wants_the_differing_name_and_the_op(racing: dict, status: str) -> None:
    result = ChildResult({"nondeterministic": racing, "deterministic": report(True, [], [])})
    assert [row.status for row in gpu_check.assess_cell_magic(result)] == [status, "PASS"]


def test_the_sync_check_program_runs_on_gloo_here_and_names_the_planted_change(runner) -> None:
    script = runner.tmp_path("sync_check.py")
    script.write_text(gpu_check.sync_program())
    code, output, seconds = runner.run(
        "sync on the CPU", [sys.executable, str(script), "gloo", "cpu", "2", "1000"], timeout=150
    )
    result = gpu_check.parse_child_output(code, output, seconds)
    row = gpu_check.assess_sync("check_in_sync over gloo", result, 2)
    assert row.status == "PASS", (row, output[-2000:])
    assert [rank["planted"]["['model']['1.weight']"]["ranks"] for rank in result.value] == [[1], [1]]


def test_the_sync_row_fails_when_a_rank_is_out_of_sync_or_the_host_copied_the_tensor_whole() -> None:
    def ranks(**change: object) -> list[dict]:
        base = {
            "ok": True,
            "entries": 5,
            "planted_ok": False,
            "device": "cuda:0",
            "host_peak_growth": 70 << 20,
            "big_bytes": 200 << 20,
            "planted": {"['model']['1.weight']": {"ranks": [1]}},
        }
        return [{**base, "rank": 0}, {**base, "rank": 1, **change}]

    assess = gpu_check.assess_sync
    assert assess("s", ChildResult(ranks()), 2).status == "PASS"
    assert assess("s", ChildResult(ranks(ok=False)), 2).status == "FAIL"
    assert assess("s", ChildResult(ranks(host_peak_growth=210 << 20)), 2).status == "FAIL"
    assert assess("s", ChildResult(ranks(planted={})), 2).status == "FAIL"
    assert assess("s", ChildResult(error="boom"), 2).status == "ERROR"
    assert assess("s", ChildResult(ranks()[:1]), 1).status == "PASS"
