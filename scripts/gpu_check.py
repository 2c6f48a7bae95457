#!/usr/bin/env python
"""Prove on a real GPU what the CPU test suite can only simulate.

Every check runs in fresh processes (a real IPython shell where the claim is
about the magics), so what one check does to CUDA never leaks into another.
The table printed last says, per claim, what was expected and what was seen;
the log file holds every command, cell and output behind it.

Exit status: 0 every check passed (or was inconclusive), 1 a check failed,
errored or did not fit in the time budget, 2 the script itself could not run
(bad option, torch missing), 3 no usable GPU: nothing was checked.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # this checkout's ipyrepro, installed or not (children get it on PYTHONPATH)
MARKER = "@@gpu-check-result@@"
EXIT_OK, EXIT_FAILED, EXIT_UNUSABLE, EXIT_NO_GPU = 0, 1, 2, 3
DEFAULT_BUDGET_S = 270.0  # the whole run stays under 5 minutes on one GPU
CELL_TIMEOUT_S = 90.0
PYTEST_TIMEOUT_S = 150.0
LATE_CUBLAS_TEXT = "after CUDA was already initialised"

# Statuses a row can have; on a GPU, FAIL, ERROR and NOT RUN (out of time) make the exit status 1.
PASS, FAIL, ERROR, INCONCLUSIVE, NOT_APPLICABLE, NOT_RUN = "PASS", "FAIL", "ERROR", "INCONCLUSIVE", "N/A", "NOT RUN"
FAILING = (FAIL, ERROR, NOT_RUN)


@dataclass
class Row:
    """One line of the final table: a claim, what proves it, and what was seen."""

    check: str
    expected: str
    seen: str
    status: str
    detail: str = ""


@dataclass
class ChildResult:
    """What one fresh process gave back: the value of RESULT, or why there is none."""

    value: Any = None
    error: str | None = None
    output: str = ""
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None


# -- the log ---------------------------------------------------------------------------


class Log:
    """The full record: every command, cell and output, with times since the start."""

    def __init__(self, path: Path, echo: TextIO | None = sys.stdout) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = path.open("w", encoding="utf-8")
        self._echo = echo
        self._start = time.monotonic()
        self._lock = threading.Lock()

    def write(self, text: str) -> None:
        with self._lock:  # checks may run processes side by side
            self._file.write(text if text.endswith("\n") else text + "\n")
            self._file.flush()

    def say(self, text: str) -> None:
        """A progress line: on the terminal and in the log."""
        if self._echo is not None:
            print(text, file=self._echo, flush=True)
        self.write(f"[{time.monotonic() - self._start:7.1f}s] {text}")

    def section(self, title: str) -> None:
        self.write(f"\n===== {title} =====")

    def close(self) -> None:
        self._file.close()


# -- running things in fresh processes ---------------------------------------------------

SHELL_CHILD = r"""
import json, sys
MARKER = "@@gpu-check-result@@"


def main():
    cells = json.loads(sys.stdin.read())
    from IPython.testing.globalipapp import start_ipython

    ip = start_ipython()
    results = []
    ip.user_ns["CELL_RESULTS"] = results  # each cell's value, so a later cell can inspect a magic's result
    for index, cell in enumerate(cells):
        print(f"----- cell {index} -----\n{cell}\n----- output -----", flush=True)
        outcome = ip.run_cell(cell, store_history=True, cell_id=f"gpu-check-cell-{index}")
        results.append(outcome.result)
        error = outcome.error_before_exec or outcome.error_in_exec
        if error is not None:
            first = (str(error).strip().splitlines() or [""])[0][:300]
            print(MARKER + json.dumps({"error": f"cell {index} raised {type(error).__name__}: {first}"}), flush=True)
            return 1
    print(MARKER + json.dumps({"value": ip.user_ns.get("RESULT")}, default=repr), flush=True)
    return 0


sys.exit(main())
"""


def child_env(ipython_dir: Path) -> dict[str, str]:
    """The environment of every fresh process: this checkout importable, no cuBLAS variable, a private IPython dir.

    CUBLAS_WORKSPACE_CONFIG is removed so that "set too late" and "set first"
    are decided by the cells, not by whoever started the script.
    """
    env = dict(os.environ)
    env.pop("CUBLAS_WORKSPACE_CONFIG", None)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, (str(REPO), env.get("PYTHONPATH"))))
    env["IPYTHONDIR"] = str(ipython_dir)
    env["PYTHONUNBUFFERED"] = "1"
    return env


class Runner:
    """Runs commands and IPython cells in fresh processes, within one time budget, logging everything."""

    def __init__(
        self, log: Log, budget_s: float = DEFAULT_BUDGET_S, *, processes: int = 3, python: str = sys.executable
    ) -> None:
        self.log = log
        self.processes = processes  # fresh processes per mode where a check repeats a run
        self.python = python
        self.deadline = time.monotonic() + budget_s
        self._tmp = Path(tempfile.mkdtemp(prefix="gpu-check-"))
        self.env = child_env(self._tmp / "ipython")

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def tmp_path(self, name: str) -> Path:
        return self._tmp / name

    def close(self) -> None:
        shutil.rmtree(self._tmp, ignore_errors=True)

    def run(self, label: str, argv: Sequence[str], *, stdin: str = "", timeout: float) -> tuple[int | None, str, float]:
        """(exit status or None on timeout, stdout and stderr together, seconds); never longer than the budget."""
        timeout = min(timeout, self.remaining())
        shown = " ".join("<program>" if "\n" in arg else arg for arg in argv)
        heading = f"\n===== {label}: {shown} (timeout {timeout:.0f}s) ====="
        if timeout <= 1:
            self.log.write(f"{heading}\nnot started: the time budget is spent")
            return None, "not started: the time budget is spent", 0.0
        start = time.monotonic()
        process = subprocess.Popen(
            list(argv),
            cwd=REPO,
            env=self.env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # so a timeout can stop its children too
        )
        try:
            output, _ = process.communicate(stdin, timeout=timeout)
            code: int | None = process.returncode
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            output, _ = process.communicate()
            code = None
            output += f"\n[gpu-check] timed out after {timeout:.0f}s; process group {process.pid} killed\n"
        seconds = time.monotonic() - start
        # one write, so that processes run side by side do not interleave in the log
        self.log.write(f"{heading}\n{output}\n[{label}: exit status {code}, {seconds:.1f}s]")
        return code, output, seconds

    def run_cells(self, label: str, cells: Sequence[str], *, timeout: float = CELL_TIMEOUT_S) -> ChildResult:
        """Run `cells` one by one in a real IPython shell in a fresh process; the value is what they left in RESULT."""
        code, output, seconds = self.run(
            label, [self.python, "-c", SHELL_CHILD], stdin=json.dumps(list(cells)), timeout=timeout
        )
        return parse_child_output(code, output, seconds)

    def run_cells_together(
        self, jobs: dict[str, Sequence[str]], *, timeout: float = CELL_TIMEOUT_S
    ) -> dict[str, ChildResult]:
        """`run_cells` for several independent jobs at once, each in its own fresh process (for checks that
        use no GPU time, so that running side by side changes nothing they measure)."""
        workers = max(1, min(len(jobs), os.cpu_count() or 1, 8))
        with ThreadPoolExecutor(max_workers=workers) as pool:
            futures = {
                label: pool.submit(self.run_cells, label, cells, timeout=timeout) for label, cells in jobs.items()
            }
            return {label: future.result() for label, future in futures.items()}


def parse_child_output(code: int | None, output: str, seconds: float) -> ChildResult:
    """The child's last marker line decides; without one, say how the process ended."""
    for line in reversed(output.splitlines()):
        if line.startswith(MARKER):
            payload = json.loads(line[len(MARKER) :])
            return ChildResult(payload.get("value"), payload.get("error"), output, seconds)
    if code is None:
        tail = output.strip().splitlines()[-1] if output.strip() else "no output"
        return ChildResult(error=f"no result: {tail.removeprefix('[gpu-check] ')}", output=output, seconds=seconds)
    return ChildResult(
        error=f"process exited with status {code} before giving a result (see the log)", output=output, seconds=seconds
    )


# -- check 1: the test suite's CUDA-marked tests -------------------------------------------


def junit_counts(path: Path) -> dict[str, Any]:
    """passed/failed/skipped counts and the names of failing tests, from a pytest JUnit XML file."""
    root = ElementTree.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
    total = failed = skipped = 0
    failing: list[str] = []
    for suite in suites:
        total += int(suite.get("tests", 0))
        failed += int(suite.get("failures", 0)) + int(suite.get("errors", 0))
        skipped += int(suite.get("skipped", 0))
        for case in suite.iter("testcase"):
            if case.find("failure") is not None or case.find("error") is not None:
                failing.append(f"{case.get('classname')}::{case.get('name')}")
    return {"passed": total - failed - skipped, "failed": failed, "skipped": skipped, "failing": failing}


def assess_cuda_tests(code: int | None, counts: dict[str, Any] | None, output: str) -> Row:
    check, expected = "pytest -m cuda", "all pass, none skipped"
    if counts is None:
        tail = " | ".join(output.strip().splitlines()[-2:]) or "no output"
        return Row(check, expected, f"no results (exit {code})", ERROR, tail)
    seen = f"{counts['passed']} passed, {counts['skipped']} skipped, {counts['failed']} failed"
    if code == 5 or counts["passed"] + counts["failed"] + counts["skipped"] == 0:
        return Row(check, expected, "no cuda-marked tests collected", FAIL)
    ok = code == 0 and counts["failed"] == 0 and counts["skipped"] == 0 and counts["passed"] > 0
    detail = "failing: " + ", ".join(counts["failing"]) if counts["failing"] else ""
    if counts["skipped"]:
        detail = (detail + "; " if detail else "") + "on a GPU nothing marked cuda should skip"
    return Row(check, expected, seen, PASS if ok else FAIL, detail)


def check_cuda_tests(runner: Runner) -> list[Row]:
    """1. The suite's `cuda`-marked tests, which skip on a CPU machine, run and pass here."""
    report = runner.tmp_path("cuda-tests.xml")
    argv = [
        runner.python,
        "-m",
        "pytest",
        "-m",
        "cuda",
        "-q",
        "-rA",
        "-p",
        "no:cacheprovider",
        f"--junitxml={report}",
        str(REPO / "tests"),
    ]
    code, output, _ = runner.run("pytest -m cuda", argv, timeout=PYTEST_TIMEOUT_S)
    counts = junit_counts(report) if report.exists() else None
    return [assess_cuda_tests(code, counts, output)]


# -- check 2: nondeterministic CUDA ops, without and with `%repro on` ------------------------

NONDETERMINISM_SETUP = """
import hashlib
import torch

torch.backends.cudnn.benchmark = True  # a common speed setting: cuDNN times algorithms, may pick racing ones


def digest(*tensors):
    h = hashlib.sha256()
    for t in tensors:
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]
"""

NONDETERMINISM_WORK = """
gen = torch.Generator().manual_seed(1234)  # the same inputs in every process and every mode
source = torch.randn(200_000, 64, generator=gen).cuda()
index = torch.randint(0, 32, (200_000,), generator=gen).cuda()  # many colliding indices: float atomics race
scatter_index = index.unsqueeze(1).expand(-1, 64).contiguous()  # the same collisions for scatter_add_
images = torch.randn(64, 16, 64, 64, generator=gen).cuda().requires_grad_()
weight = (0.1 * torch.randn(32, 16, 3, 3, generator=gen)).cuda().requires_grad_()
upstream = torch.randn(64, 32, 64, 64, generator=gen).cuda()
RESULT = {"index_add_": [], "scatter_add_": [], "conv2d backward": []}
for _ in range(3):
    total = torch.zeros(32, 64, device="cuda").index_add_(0, index, source)
    RESULT["index_add_"].append(digest(total))
    scattered = torch.zeros(32, 64, device="cuda").scatter_add_(0, scatter_index, source)
    RESULT["scatter_add_"].append(digest(scattered))
    images.grad = weight.grad = None
    torch.nn.functional.conv2d(images, weight, padding=1).backward(upstream)
    RESULT["conv2d backward"].append(digest(weight.grad, images.grad))
torch.cuda.synchronize()
"""

NONDETERMINISTIC_OPS = {
    "index_add_": "index_add_ float32, colliding indices",
    "scatter_add_": "scatter_add_ float32, colliding indices",
    "conv2d backward": "conv2d backward, cudnn.benchmark on",
}


def nondeterminism_cells(repro: bool) -> list[str]:
    """The same cells in both modes; `repro` adds only `%load_ext ipyrepro` and `%repro on` before the work."""
    middle = ["%load_ext ipyrepro", "%repro on"] if repro else []
    return [NONDETERMINISM_SETUP, *middle, NONDETERMINISM_WORK]


def _distinct(digests: list[str]) -> str:
    distinct = len(set(digests))
    return f"{distinct} distinct result{'' if distinct == 1 else 's'} in {len(digests)} runs"


def _digests(results: list[ChildResult], op: str) -> tuple[list[str], str | None]:
    digests: list[str] = []
    for result in results:
        if not result.ok:
            return digests, result.error
        digests.extend(result.value[op])
    return digests, None


def assess_nondeterminism(baseline: list[ChildResult], repro: list[ChildResult]) -> list[Row]:
    """Without ipyrepro the ops should differ between runs (else nothing was shown); with it, never."""
    rows = []
    for op, label in NONDETERMINISTIC_OPS.items():
        digests, error = _digests(baseline, op)
        check, expected = f"{label}, no ipyrepro", "differs between runs"
        if error:
            rows.append(Row(check, expected, "error", ERROR, error))
        else:
            seen = _distinct(digests)
            if len(set(digests)) > 1:
                rows.append(Row(check, expected, seen, PASS))
            else:
                rows.append(
                    Row(
                        check,
                        expected,
                        seen,
                        INCONCLUSIVE,
                        "this GPU and library picked a deterministic kernel: nondeterminism not shown",
                    )
                )
        digests, error = _digests(repro, op)
        check, expected = f"{label}, after %repro on", "bitwise identical"
        if error:
            rows.append(Row(check, expected, "error", ERROR, error))
        else:
            rows.append(Row(check, expected, _distinct(digests), PASS if len(set(digests)) == 1 else FAIL))
    return rows


def check_nondeterminism(runner: Runner) -> list[Row]:
    """2. index_add_, scatter_add_ and a cuDNN conv backward differ between runs without ipyrepro, not after `on`."""
    baseline, repro = [], []
    for number in range(runner.processes):
        baseline.append(runner.run_cells(f"no ipyrepro, process {number + 1}", nondeterminism_cells(False)))
        repro.append(runner.run_cells(f"%repro on, process {number + 1}", nondeterminism_cells(True)))
    return assess_nondeterminism(baseline, repro)


# -- check 3: the "too late for cuBLAS" message ----------------------------------------------

CUBLAS_USE = """
a = torch.randn(256, 256, device="cuda")
b = a @ a  # the first cuBLAS use
torch.cuda.synchronize()
"""

CUBLAS_STATUS = """
import ipyrepro

status = ipyrepro.status()
try:
    (a @ a).sum().item()  # a cuBLAS call with deterministic algorithms in error mode
    after = "ran"
except RuntimeError as error:
    after = f"raised {type(error).__name__}: {str(error).splitlines()[0][:200]}"
RESULT = {"warnings": status.warnings, "notes": status.notes, "cublas": status.cublas_workspace_config,
          "matmul_after_on": after}
"""


def late_cublas_cells(late: bool) -> list[str]:
    """cuBLAS used before `%repro on` sets the variable (late), or after it (first)."""
    work = [CUBLAS_USE, "%repro on"] if late else ["%repro on", CUBLAS_USE]
    return ["import torch", "%load_ext ipyrepro", *work, CUBLAS_STATUS]


def _late_messages(value: dict[str, Any]) -> list[str]:
    return [kind for kind in ("warnings", "notes") if any(LATE_CUBLAS_TEXT in text for text in value[kind])]


def assess_late_cublas(late: ChildResult, first: ChildResult, severity: str) -> list[Row]:
    """Late: exactly a `severity` (warning or note, per torchinfo's table). First: no such message at all."""
    kind = {"warning": "warnings", "note": "notes"}[severity]
    rows = []
    check, expected = "cuBLAS used, then %repro on", f"late-cuBLAS {severity}"
    if not late.ok:
        rows.append(Row(check, expected, "error", ERROR, late.error or ""))
    else:
        found = _late_messages(late.value)
        seen = " and ".join(name.rstrip("s") for name in found) or "no message"
        detail = f"cuBLAS matmul after `on` in error mode: {late.value['matmul_after_on']}"
        rows.append(Row(check, expected, f"late-cuBLAS {seen}", PASS if found == [kind] else FAIL, detail))
    check, expected = "%repro on, then cuBLAS used", "no late-cuBLAS message"
    if not first.ok:
        rows.append(Row(check, expected, "error", ERROR, first.error or ""))
    else:
        found = _late_messages(first.value)
        seen = "late-cuBLAS " + " and ".join(name.rstrip("s") for name in found) if found else "none"
        rows.append(
            Row(
                check,
                expected,
                seen,
                FAIL if found else PASS,
                f"cuBLAS matmul in error mode: {first.value['matmul_after_on']}",
            )
        )
    return rows


def check_late_cublas(runner: Runner) -> list[Row]:
    """3. Setting CUBLAS_WORKSPACE_CONFIG after cuBLAS ran is reported (per the torch version); before, it is not."""
    from ipyrepro.core.torchinfo import cublas_facts

    late = runner.run_cells("cuBLAS used before %repro on", late_cublas_cells(True))
    first = runner.run_cells("%repro on before cuBLAS", late_cublas_cells(False))
    return assess_late_cublas(late, first, cublas_facts().severity)


# -- check 4: looking never initialises CUDA -------------------------------------------------

FACES: dict[str, list[str]] = {
    "%repro": ["%repro", "_html = _._repr_html_()  # the notebook rendering too"],
    "%repro status --json": ["%repro status --json"],
    "%repro on": ["%repro on"],
    "%repro env": ["%repro env"],
    "%repro panel": ["%repro panel"],
    "%%repro on a CPU cell": ["x = torch.ones(3)", "%%repro --runs 2\ny = x * 2"],
}
CUDA_PROBE = 'RESULT = {"initialized": torch.cuda.is_initialized(), "available": torch.cuda.is_available()}'


def untouched_cells(face: str) -> list[str]:
    return ["import torch", "%load_ext ipyrepro", *FACES[face], CUDA_PROBE]


def assess_untouched(face: str, result: ChildResult) -> Row:
    """PASS only where a GPU was there to initialise; without one the face still ran, which proves nothing."""
    check, expected = f"{face} leaves CUDA alone", "not initialised"
    if not result.ok:
        return Row(check, expected, "error", ERROR, result.error or "")
    if not result.value["available"]:
        return Row(check, expected, "ran; no GPU to initialise", NOT_APPLICABLE)
    if result.value["initialized"]:
        return Row(check, expected, "initialised", FAIL)
    return Row(check, expected, "not initialised", PASS)


def check_cuda_untouched(runner: Runner) -> list[Row]:
    """4. Each face, in a fresh process where CUDA is available but unused, leaves it uninitialised."""
    results = runner.run_cells_together({face: untouched_cells(face) for face in FACES})
    return [assess_untouched(face, results[face]) for face in FACES]


# -- check 5: `%%repro` names a nondeterministic CUDA op ------------------------------------

CELL_MAGIC_INPUTS = """
gen = torch.Generator().manual_seed(7)
values = torch.randn(1_000_000, generator=gen).to("{device}")
slots = torch.randint(0, 100, (1_000_000,), generator=gen).to("{device}")
"""
# put_(accumulate=True) on CUDA races float atomics and has no deterministic implementation, so the
# report's warn-only rerun should name it. index_add_ has one, so after `%repro on` it must reproduce.
CELL_MAGIC_NONDETERMINISTIC = """%%repro --runs 3
totals = torch.zeros(100, device="cuda")
totals.put_(slots, values, accumulate=True)
"""
CELL_MAGIC_DETERMINISTIC = """%%repro --runs 3
sums = torch.zeros(100, device="{device}").index_add_(0, slots, values)
"""
DESCRIBE_REPORT = """
def describe(report):
    html = report._repr_html_() if hasattr(report, "_repr_html_") else ""
    diagnosis = getattr(report, "diagnosis", None)
    return {"type": type(report).__name__, "ok": bool(report.ok),
            "differences": sorted(str(name) for name in report.differences),
            "ops": list(getattr(diagnosis, "ops", None) or []), "text": str(report) + "\\n" + html}
"""


def cell_magic_cells(racing_cell: str = CELL_MAGIC_NONDETERMINISTIC, device: str = "cuda") -> list[str]:
    """`%%repro` on `racing_cell`, then `%repro on` and `%%repro` on an index_add_ cell; inputs on `device`."""
    return [
        "import torch",
        "%load_ext ipyrepro",
        DESCRIBE_REPORT,
        CELL_MAGIC_INPUTS.format(device=device),
        racing_cell,
        "nondeterministic = describe(CELL_RESULTS[-1])",
        "%repro on",
        CELL_MAGIC_DETERMINISTIC.format(device=device),
        "deterministic = describe(CELL_RESULTS[-1])",
        'RESULT = {"nondeterministic": nondeterministic, "deterministic": deterministic}',
    ]


def assess_cell_magic(result: ChildResult, *, op: str = "put_", name: str = "totals", clean: str = "sums") -> list[Row]:
    """The report on the racing cell says it differs in `name` and names `op`; after `on` the clean cell is ok."""
    check, expected = f"%%repro on a {op} cell", f"differs in {name}; names {op}"
    check2, expected2 = "%%repro after %repro on", "ok (identical runs)"
    if not result.ok:
        return [
            Row(check, expected, "error", ERROR, result.error or ""),
            Row(check2, expected2, "error", ERROR, result.error or ""),
        ]
    report = result.value["nondeterministic"]
    named = op in report["ops"] or op in report["text"]
    if report["ok"]:
        row = Row(check, expected, "ok: runs were identical", INCONCLUSIVE, "the op did not race this time")
    else:
        seen = f"differs in {', '.join(report['differences']) or 'nothing'}; {op} {'named' if named else 'not named'}"
        row = Row(
            check,
            expected,
            seen,
            PASS if named and name in report["differences"] else FAIL,
            f"ops the report names: {', '.join(report['ops']) or 'none'}",
        )
    clean_report = result.value["deterministic"]
    seen2 = "ok" if clean_report["ok"] else f"differs in {', '.join(clean_report['differences'])}"
    return [row, Row(check2, expected2, seen2, PASS if clean_report["ok"] else FAIL, f"compared {clean}")]


def check_cell_magic(runner: Runner) -> list[Row]:
    """5. `%%repro` on a cell with a racing CUDA op reports the difference and names the op."""
    return assess_cell_magic(runner.run_cells("%%repro", cell_magic_cells(), timeout=120))


# -- check 6: check_in_sync across ranks on the GPU -----------------------------------------

SYNC_PROGRAM = """
import json, os, resource, socket, sys
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

MARKER = {marker!r}


def rank_main(rank, world_size, port, backend, device, big_numel, queue):
    torch.set_num_threads(1)
    if device == "cuda":
        torch.cuda.set_device(rank % torch.cuda.device_count())  # NCCL: one GPU per rank; all_gather_object uses it
    dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{{port}}", rank=rank, world_size=world_size)
    try:
        import ipyrepro
        from ipyrepro.distributed import check_in_sync

        ipyrepro.enable(warn_only=True)
        model = torch.nn.Sequential(torch.nn.Linear(4096, 4096), torch.nn.Linear(4096, 8)).to(device)
        big = torch.randn(big_numel, device=device)  # on a GPU: hashed on the host in 64 MiB chunks, never whole
        if device == "cuda":
            torch.cuda.synchronize()
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        report = check_in_sync({{"model": model, "big": big}})
        host_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
        if world_size > 1 and rank == world_size - 1:
            with torch.no_grad():
                model[1].weight.add_(torch.randn(model[1].weight.shape, device=device))
        planted = check_in_sync({{"model": model, "big": big}})
        queue.put({{"rank": rank, "ok": report.ok, "entries": len(report.entries), "planted_ok": planted.ok,
                   "planted": planted.differences, "device": str(big.device), "host_peak_growth": host_peak,
                   "big_bytes": big.numel() * big.element_size()}})
        dist.barrier()
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    backend, device, world_size, big_numel = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    context = mp.get_context("spawn")
    queue = context.SimpleQueue()
    mp.start_processes(rank_main, args=(world_size, port, backend, device, big_numel, queue), nprocs=world_size,
                       start_method="spawn")
    ranks = sorted((queue.get() for _ in range(world_size)), key=lambda item: item["rank"])
    print(MARKER + json.dumps({{"value": ranks}}))
"""


def sync_program() -> str:
    return SYNC_PROGRAM.format(marker=MARKER)


def sync_world_size(backend: str) -> int:
    """NCCL wants one GPU per rank: as many ranks as GPUs (at most 2); gloo runs 2 ranks on any device."""
    if backend != "nccl":
        return 2
    import torch

    return max(1, min(2, torch.cuda.device_count()))


SYNC_EXPECTED = "in sync; planted change named; no bulk host copy"
SYNC_BIG_NUMEL = 50_000_000  # 200 MB of float32: a bulk host copy would show in the peak RSS


def assess_sync(label: str, result: ChildResult, world_size: int) -> Row:
    """Every rank: in sync, host memory grew by less than the big tensor (chunks, not one copy), and
    (with 2 ranks) the last rank's planted change named on every rank."""
    expected = SYNC_EXPECTED
    if not result.ok:
        return Row(label, expected, "error", ERROR, result.error or "")
    ranks = result.value
    if len(ranks) != world_size or not all(rank["ok"] and rank["entries"] == 5 for rank in ranks):
        return Row(label, expected, f"not in sync: {ranks}", FAIL)
    growth = max(rank["host_peak_growth"] for rank in ranks)
    if growth >= ranks[0]["big_bytes"] and ranks[0]["big_bytes"] > (128 << 20):
        return Row(
            label,
            expected,
            f"host peak grew {growth >> 20} MiB while digesting",
            FAIL,
            f"the {ranks[0]['big_bytes'] >> 20} MiB tensor was copied to the host whole",
        )
    if world_size == 1:
        return Row(label, expected, f"in sync on {ranks[0]['device']} (1 GPU: 1 rank, nothing to plant)", PASS)
    named = all(
        not rank["planted_ok"]
        and list(rank["planted"]) == ["['model']['1.weight']"]
        and rank["planted"]["['model']['1.weight']"]["ranks"] == [world_size - 1]
        for rank in ranks
    )
    seen = "in sync; planted change named" if named else f"planted change not named: {ranks[0]['planted']}"
    return Row(label, expected, seen, PASS if named else FAIL)


SYNC_MODES = {"nccl": ("nccl", "cuda"), "gloo, CUDA tensors": ("gloo", "cuda")}


def check_sync(runner: Runner) -> list[Row]:
    """6. check_in_sync over NCCL and over gloo with CUDA tensors: in sync, and a planted change named."""
    script = runner.tmp_path("sync_check.py")
    script.write_text(sync_program())
    rows = []
    for name, (backend, device) in SYNC_MODES.items():
        world_size = sync_world_size(backend)
        code, output, seconds = runner.run(
            f"check_in_sync, {name}",
            [runner.python, str(script), backend, device, str(world_size), str(SYNC_BIG_NUMEL)],
            timeout=150,
        )
        rows.append(assess_sync(f"check_in_sync over {name}", parse_child_output(code, output, seconds), world_size))
    return rows


# -- the table, the exit status, the command line ------------------------------------------


@dataclass
class Check:
    title: str
    run: Callable[[Runner], list[Row]]
    planned: list[tuple[str, str]] = field(default_factory=list)  # (check, expected) of each row it gives


def _late_cublas_plan() -> list[tuple[str, str]]:
    try:
        from ipyrepro.core.torchinfo import cublas_facts

        severity = cublas_facts().severity
    except Exception:  # planning a table must work even where ipyrepro cannot be imported
        severity = "warning or note"
    return [
        ("cuBLAS used, then %repro on", f"late-cuBLAS {severity}"),
        ("%repro on, then cuBLAS used", "no late-cuBLAS message"),
    ]


CHECKS: dict[str, Check] = {
    "cuda-tests": Check(
        "the suite's cuda-marked tests", check_cuda_tests, [("pytest -m cuda", "all pass, none skipped")]
    ),
    "nondeterminism": Check(
        "nondeterministic ops without and with %repro on",
        check_nondeterminism,
        [
            pair
            for label in NONDETERMINISTIC_OPS.values()
            for pair in (
                (f"{label}, no ipyrepro", "differs between runs"),
                (f"{label}, after %repro on", "bitwise identical"),
            )
        ],
    ),
    "late-cublas": Check("the too-late-for-cuBLAS message", check_late_cublas, _late_cublas_plan()),
    "cuda-untouched": Check(
        "looking leaves CUDA uninitialised",
        check_cuda_untouched,
        [(f"{face} leaves CUDA alone", "not initialised") for face in FACES],
    ),
    "cell-magic": Check(
        "%%repro names a racing CUDA op",
        check_cell_magic,
        [
            ("%%repro on a put_ cell", "differs in totals; names put_"),
            ("%%repro after %repro on", "ok (identical runs)"),
        ],
    ),
    "sync": Check(
        "check_in_sync across ranks on the GPU",
        check_sync,
        [(f"check_in_sync over {name}", SYNC_EXPECTED) for name in SYNC_MODES],
    ),
}


def render_table(rows: Sequence[Row], *, markdown: bool = False) -> str:
    """The summary, one row per claim: status, check, expected, seen."""
    header = ("status", "check", "expected", "seen")
    cells = [header] + [(row.status, row.check, row.expected, row.seen) for row in rows]
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(value.replace("|", "\\|") for value in line) + " |" for line in cells[1:]]
        return "\n".join(lines)
    widths = [max(len(line[column]) for line in cells) for column in range(len(header))]
    lines = ["  ".join(value.ljust(width) for value, width in zip(line, widths)).rstrip() for line in cells]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def exit_status(rows: Sequence[Row], *, gpu: bool = True) -> int:
    """3 without a GPU; else 1 when a claim failed, errored or was not checked in time, 0 when none did."""
    if not gpu:
        return EXIT_NO_GPU
    return EXIT_FAILED if any(row.status in FAILING for row in rows) else EXIT_OK


def no_gpu_reason() -> str | None:
    """Why this machine cannot run the checks, or None when it can. Asks the driver; creates no CUDA context."""
    import torch

    if torch.version.cuda is None:
        return f"torch {torch.__version__} is a CPU-only build; install a CUDA build of torch to run the GPU check"
    if not torch.cuda.is_available():
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        hint = f" (CUDA_VISIBLE_DEVICES={visible!r})" if visible is not None else ""
        return f"torch {torch.__version__} (CUDA {torch.version.cuda}) sees no GPU{hint}"
    return None


def describe_machine() -> list[str]:
    """Versions for the log and the table's heading; reads the GPU name only when a GPU is there."""
    import IPython
    import torch

    lines = [
        f"python {platform.python_version()}, torch {torch.__version__} (CUDA {torch.version.cuda}), "
        f"IPython {IPython.__version__}"
    ]
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    lines.append(f"ipyrepro checkout {commit or 'unknown'} at {REPO}")
    if torch.cuda.is_available():  # this process may initialise CUDA: every check runs in its own
        names = [torch.cuda.get_device_name(index) for index in range(torch.cuda.device_count())]
        lines.append(f"GPU: {', '.join(names)}; cuDNN {torch.backends.cudnn.version()}{_driver()}")
    return lines


def _driver() -> str:
    try:
        found = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    versions = sorted(set(found.stdout.split()))
    return f"; driver {', '.join(versions)}" if found.returncode == 0 and versions else ""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scripts/gpu-check",
        description="Prove on a real GPU what ipyrepro's CPU tests simulate. Exit 0 passed, 1 a check failed, "
        "2 the script could not run, 3 no GPU (nothing checked).",
    )
    parser.add_argument(
        "--log",
        type=Path,
        default=Path("gpu-check.log"),
        help="where the full log goes (default: gpu-check.log in the current directory)",
    )
    parser.add_argument("--only", default="", help=f"comma-separated checks to run (default: all): {', '.join(CHECKS)}")
    parser.add_argument(
        "--processes",
        type=int,
        default=3,
        help="fresh processes per mode in the nondeterminism check, 3 runs each (default 3)",
    )
    parser.add_argument(
        "--budget",
        type=float,
        default=DEFAULT_BUDGET_S,
        help=f"seconds for all checks together; what is left over is not run (default "
        f"{DEFAULT_BUDGET_S:.0f}, to finish under 5 minutes)",
    )
    parser.add_argument("--markdown", action="store_true", help="print the final table as Markdown (for the docs)")
    return parser


def select_checks(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()] or list(CHECKS)
    unknown = [name for name in names if name not in CHECKS]
    if unknown:
        raise ValueError(f"unknown check {', '.join(unknown)}; choose from {', '.join(CHECKS)}")
    return names


def run_checks(names: Sequence[str], runner: Runner) -> list[Row]:
    rows: list[Row] = []
    for number, name in enumerate(names, 1):
        check = CHECKS[name]
        if runner.remaining() <= 5:
            runner.log.say(f"[{number}/{len(names)}] {name}: not run, the time budget is spent")
            rows += [Row(title, expected, "not run: out of time", NOT_RUN) for title, expected in check.planned]
            continue
        runner.log.say(f"[{number}/{len(names)}] {name}: {check.title} ...")
        start = time.monotonic()
        try:
            found = check.run(runner)
        except Exception as error:  # a broken check must not hide the others' results
            runner.log.write(f"{name} raised {type(error).__name__}: {error}")
            found = [
                Row(title, expected, f"check raised {type(error).__name__}", ERROR, str(error))
                for title, expected in check.planned
            ]
        for row in found:
            runner.log.write(
                f"{row.status}: {row.check} | expected {row.expected} | seen {row.seen}"
                + (f" | {row.detail}" if row.detail else "")
            )
        statuses = ", ".join(sorted({row.status for row in found}))
        runner.log.say(f"[{number}/{len(names)}] {name}: {statuses} ({time.monotonic() - start:.0f}s)")
        rows += found
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        names = select_checks(args.only)
    except ValueError as error:
        parser.error(str(error))  # exits with status 2
    if args.processes < 1:
        parser.error("--processes must be at least 1")
    if args.budget <= 0:
        parser.error("--budget must be a positive number of seconds")
    for module in ("torch", "IPython"):
        try:
            __import__(module)
        except ImportError as error:
            print(
                f"gpu-check: cannot import {module} ({error}); install this checkout's dependencies "
                '(pip install -e ".[test]" after a CUDA build of torch). Nothing checked.',
                file=sys.stderr,
            )
            return EXIT_UNUSABLE
    log = Log(args.log)
    try:
        log.section("gpu-check")
        log.write(f"started {time.strftime('%Y-%m-%d %H:%M:%S %Z')}; checks: {', '.join(names)}")
        reason = no_gpu_reason()
        machine = describe_machine()
        for line in machine:
            log.say(line)  # and again above the table, for whoever copies the results
        if reason:
            rows = [
                Row(title, expected, "no GPU", NOT_RUN) for name in names for title, expected in CHECKS[name].planned
            ]
            log.say(f"NO GPU: {reason}. Nothing was checked; run this on a machine with a CUDA GPU.")
        else:
            runner = Runner(log, args.budget, processes=args.processes)
            try:
                rows = run_checks(names, runner)
            finally:
                runner.close()
        table = render_table(rows, markdown=args.markdown)
        log.section("summary")
        log.write(table)
        for row in rows:
            if row.detail:
                log.write(f"{row.check}: {row.detail}")
        status = exit_status(rows, gpu=reason is None)
        log.write(f"exit status {status}")
    finally:
        log.close()
    print()
    print("\n".join(machine))
    print(table)
    verdict = {
        EXIT_OK: "all checks passed",
        EXIT_FAILED: "SOME CHECKS FAILED",
        EXIT_NO_GPU: "NO GPU: nothing was checked",
    }[status]
    print(f"\n{verdict} (exit {status}); full log: {args.log}")
    return status


if __name__ == "__main__":
    sys.exit(main())
