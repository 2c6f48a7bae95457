"""The pytest plugin, driven by real pytest runs (pytester), real kernels, pytest-xdist and pytest-randomly."""

from __future__ import annotations

import random
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from ipyrepro.core import seeding
from ipyrepro.core.state import STATE
from ipyrepro.testing.pytest_plugin import randomly_seeder


def write(path: Path, *cells: nbformat.NotebookNode) -> Path:
    notebook = new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3"}})
    notebook.cells = list(cells)
    nbformat.write(notebook, path)
    return path


def code(source: str, cell_id: str, *tags: str) -> nbformat.NotebookNode:
    cell = new_code_cell(source, id=cell_id)
    if tags:
        cell.metadata["tags"] = list(tags)
    return cell


def notebook_folder(root: Path) -> Path:
    """Tiny notebooks: reproducible as written, a planted unseeded RNG, a tolerance case, tags, a cell that raises.

    All four give their verdicts with `--ipyrepro-as-is` too, whose kernels start in a fraction of the
    time (no torch import); the default mode is tested on its own notebook below."""
    folder = root / "notebooks"
    folder.mkdir()
    write(
        folder / "reproducible.ipynb",
        new_markdown_cell("Seeded, and string hashing only where it cannot change the output", id="m"),
        code("import random\nrandom.seed(1)\nprint(random.random())", "r1"),
        code("sorted({'b', 'a', 'c'})", "r2"),
    )
    write(
        folder / "planted.ipynb",
        code("import numpy as np\nwith open('kernel-runs.log', 'a') as log:\n    log.write('planted\\n')", "p1"),
        code("np.random.default_rng().random()  # planted: a fresh OS seed every run", "p2"),
        code("print('after the planted cell')", "p3"),
    )
    write(  # differs by less than 5e-7 relative between runs: passes with rtol 1e-6 only
        folder / "tolerance.ipynb",
        code("import os\nprint(1 + int.from_bytes(os.urandom(4), 'big') * 1e-16)", "t1"),
    )
    write(
        folder / "tags.ipynb",
        code("import os\nprint(os.urandom(8).hex())", "g1", "nbval-ignore-output"),
        code("print(os.urandom(8).hex())", "g2", "ipyrepro-ignore-output"),
        code("raise ValueError('expected, and the same every run')", "g3", "raises-exception"),
        code("", "g4"),  # empty: no item
    )
    write(
        folder / "raises.ipynb",
        code("print('before')", "e1"),
        code("raise RuntimeError('not planned')", "e2"),
        code("print('after')", "e3"),
    )
    return folder


EXPECTED = {  # junit (classname, name) -> outcome; every code cell with code is one item
    ("notebooks.reproducible.ipynb", "Cell 0"): "passed",
    ("notebooks.reproducible.ipynb", "Cell 1"): "passed",
    ("notebooks.planted.ipynb", "Cell 0"): "passed",
    ("notebooks.planted.ipynb", "Cell 1"): "failed",
    ("notebooks.planted.ipynb", "Cell 2"): "passed",
    ("notebooks.tolerance.ipynb", "Cell 0"): "passed",
    ("notebooks.tags.ipynb", "Cell 0"): "passed",
    ("notebooks.tags.ipynb", "Cell 1"): "passed",
    ("notebooks.tags.ipynb", "Cell 2"): "passed",
    ("notebooks.raises.ipynb", "Cell 0"): "skipped",  # no two complete runs to compare it in
    ("notebooks.raises.ipynb", "Cell 1"): "failed",
    ("notebooks.raises.ipynb", "Cell 2"): "skipped",
}


def junit_outcomes(path: Path) -> dict[tuple[str, str], tuple[str, str]]:
    """(classname, name) -> (outcome, failure text) from a junit XML file."""
    found = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        failure = case.find("failure")
        error = case.find("error")
        skipped = case.find("skipped")
        outcome = "failed" if failure is not None else "error" if error is not None else "passed"
        outcome = "skipped" if skipped is not None else outcome
        text = (failure.get("message", "") + "\n" + (failure.text or "")) if failure is not None else ""
        found[case.get("classname"), case.get("name")] = (outcome, text)
    return found


@pytest.mark.kernel
def test_notebooks_checked_per_cell_with_the_same_verdicts_with_and_without_xdist(pytester: pytest.Pytester) -> None:
    pytest.importorskip("xdist")
    notebook_folder(pytester.path)
    pytester.makeini("[pytest]\nipyrepro_rtol = 1e-6\nipyrepro_runs = 2\nipyrepro_as_is = true\n")

    serial = pytester.runpytest("--ipyrepro", "notebooks", "-p", "no:randomly", "--junitxml=serial.xml")
    assert serial.ret == pytest.ExitCode.TESTS_FAILED
    serial.assert_outcomes(passed=8, failed=2, skipped=2)
    outcomes = junit_outcomes(pytester.path / "serial.xml")
    assert {key: outcome for key, (outcome, _) in outcomes.items()} == EXPECTED
    failure = outcomes["notebooks.planted.ipynb", "Cell 1"][1]
    # the same cell-by-cell report as `ipyrepro check`, with both sides of the diff
    assert "cell 1 (code cell 1, id 'p2'): text/plain differs between run 1 and run 2" in failure
    assert "ipyrepro check" in failure and "as written (--as-is)" in failure
    assert re.search(r"^\s+-0\.\d+$", failure, re.MULTILINE) and re.search(r"^\s+\+0\.\d+$", failure, re.MULTILINE)
    assert "default_rng" in failure
    raised = outcomes["notebooks.raises.ipynb", "Cell 1"][1]
    assert "cell 1 (code cell 1, id 'e2') raised RuntimeError: not planned" in raised
    # one check: its 2 runs and the kernel that looks for causes (the notebook differed)
    assert (pytester.path / "notebooks" / "kernel-runs.log").read_text() == "planted\n" * 3

    parallel = pytester.runpytest_subprocess(
        "--ipyrepro", "notebooks", "-p", "no:randomly", "-n", "2", "-v", "--junitxml=parallel.xml"
    )
    assert parallel.ret == pytest.ExitCode.TESTS_FAILED
    parallel.assert_outcomes(passed=8, failed=2, skipped=2)
    assert {key: outcome for key, (outcome, _) in junit_outcomes(pytester.path / "parallel.xml").items()} == EXPECTED
    workers: dict[str, set[str]] = {}
    for line in parallel.outlines:
        match = re.match(r"\[(gw\d+)\] .*(PASSED|FAILED) (notebooks/\w+\.ipynb)::Cell \d+", line)
        if match:
            workers.setdefault(match.group(3), set()).add(match.group(1))
    assert (pytester.path / "notebooks" / "kernel-runs.log").read_text() == "planted\n" * 6
    assert len(workers) == 5 and all(len(names) == 1 for names in workers.values()), workers


@pytest.mark.kernel
def test_default_mode_runs_under_ipyrepro_and_the_command_line_overrides_the_ini_file(
    pytester: pytest.Pytester,
) -> None:
    notebook_folder(pytester.path)
    write(pytester.path / "unseeded.ipynb", code("import random\nrandom.random()", "u1"))
    under_ipyrepro = pytester.runpytest("--ipyrepro", "-p", "no:randomly", "unseeded.ipynb")
    under_ipyrepro.assert_outcomes(passed=1)  # ipyrepro re-seeds the cell from its id in every run
    under_ipyrepro.stdout.fnmatch_lines(["ipyrepro: notebooks checked as `ipyrepro check` does (*)"])

    pytester.makeini("[pytest]\nipyrepro_rtol = 1e-6\nipyrepro_as_is = true\n")
    as_written = pytester.runpytest("--ipyrepro", "-p", "no:randomly", "unseeded.ipynb")
    as_written.assert_outcomes(failed=1)
    as_written.stdout.fnmatch_lines(["*as written (--as-is)*", "*cell 0 (code cell 0, id 'u1'): text/plain differs*"])
    exact = pytester.runpytest("--ipyrepro", "--ipyrepro-rtol", "0", "-p", "no:randomly", "notebooks/tolerance.ipynb")
    exact.assert_outcomes(failed=1)
    exact.stdout.fnmatch_lines(["*cell 0 (code cell 0, id 't1'): stdout differs between run 1 and run 2*"])


def test_notebook_level_failures_fail_clearly(pytester: pytest.Pytester) -> None:
    notebook_folder(pytester.path)
    (pytester.path / "notebooks" / "broken.ipynb").write_text("{not json")
    broken = pytester.runpytest("--ipyrepro", "-p", "no:randomly", "notebooks/broken.ipynb")
    assert broken.ret == pytest.ExitCode.INTERRUPTED
    broken.stdout.fnmatch_lines(["*ipyrepro: *broken.ipynb is not a notebook: it is not valid JSON*"])
    no_kernel = pytester.runpytest(
        "--ipyrepro", "--ipyrepro-kernel", "no-such-kernel", "-p", "no:randomly", "notebooks/planted.ipynb"
    )
    no_kernel.assert_outcomes(failed=3)
    no_kernel.stdout.fnmatch_lines(["*the kernel could not start*no-such-kernel*"])


@pytest.mark.parametrize(
    ("arguments", "ini", "message"),
    [
        (["--ipyrepro-runs", "0"], "", "*invalid run count '0'*"),
        (["--ipyrepro-runs", "1"], "", "*--ipyrepro-runs 1 compares nothing*"),
        (["--ipyrepro-seed", "-1"], "", "*invalid seed '-1'*"),
        (["--ipyrepro-reseed", "sometimes"], "", "*re-seed mode must be one of*cell*"),
        (["--ipyrepro-sanitize", "("], "", "*--ipyrepro-sanitize '(' is not a valid regular expression*"),
        ([], "ipyrepro_atol = -1", "*ini option ipyrepro_atol = '-1': invalid tolerance*"),
        ([], "ipyrepro_timeout = soon", "*ini option ipyrepro_timeout = 'soon'*"),
    ],
)
def test_bad_options_are_usage_errors_before_any_kernel_starts(
    pytester: pytest.Pytester, arguments: list[str], ini: str, message: str
) -> None:
    pytester.makeini(f"[pytest]\n{ini}\n")
    result = pytester.runpytest("--ipyrepro", *arguments, "-p", "no:randomly")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])


def test_options_come_from_pyproject_toml_and_are_validated_there(pytester: pytest.Pytester) -> None:
    pytester.makepyprojecttoml(
        """
        [tool.pytest.ini_options]
        ipyrepro_runs = 3
        ipyrepro_seed = "7"
        ipyrepro_sanitize = ["took \\\\d+ ms"]
        ipyrepro_as_is = true
        """
    )
    header = pytester.runpytest("--ipyrepro", "--ipyrepro-sanitize", "x", "-p", "no:randomly", "--co")
    patterns = ["took \\d+ ms", "x"]
    shown = f"(runs=3, seed=7, sanitize={patterns!r}, as_is=True)"
    assert shown in header.stdout.str()
    pytester.makepyprojecttoml('[tool.pytest.ini_options]\nipyrepro_sanitize = ["("]\n')
    bad = pytester.runpytest("--ipyrepro", "-p", "no:randomly")
    assert bad.ret == pytest.ExitCode.USAGE_ERROR
    bad.stderr.fnmatch_lines(["*--ipyrepro-sanitize '(' is not a valid regular expression*"])


def test_the_plugin_is_registered_and_costs_no_torch_import_when_unused(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import sys

        def test_nothing_heavy_was_imported(pytestconfig):
            assert pytestconfig.pluginmanager.hasplugin("ipyrepro")
            heavy = [name for name in ("torch", "ipyrepro.core.state", "ipyrepro.notebooks.check", "jupyter_client")
                     if name in sys.modules]
            assert heavy == []
        """
    )
    # pytest-randomly (which imports NumPy itself) calls the seeder around the test: no torch either
    pytester.runpytest_subprocess("-p", "randomly", "-p", "no:nbval").assert_outcomes(passed=1)


RANDOMLY_TESTS = """
import pytest
import torch

def test_draw():
    print("DRAW", torch.rand(3).tolist())

@pytest.mark.repro(seed=3)
def test_a_marked_test_starts_from_its_own_seed():
    assert torch.equal(torch.rand(3), torch.rand(3, generator=torch.Generator().manual_seed(3)))
"""


def test_pytest_randomly_seeds_torch_per_test(pytester: pytest.Pytester) -> None:
    pytest.importorskip("pytest_randomly")
    pytester.makepyfile(RANDOMLY_TESTS)

    def draws(seed: int, *only: str) -> str:
        # The first run, with the marked test, in a fresh process: `on` imports torch._inductor, which cannot be
        # imported twice into one process (an in-process run forgets the modules it imported). The others in this one.
        run = pytester.runpytest if only else pytester.runpytest_subprocess
        result = run("-p", "randomly", f"--randomly-seed={seed}", "-s", *only)
        result.assert_outcomes(passed=1 if only else 2)
        return next(line for line in result.outlines if "DRAW" in line)

    first = draws(5)  # with the marked test: its seed wins over pytest-randomly's
    assert draws(5, "-k", "draw") == first
    assert draws(6, "-k", "draw") != first


def test_marker_applies_the_recipe_and_restores_it_even_when_the_test_fails(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import os
        import pytest
        import torch
        import ipyrepro
        from ipyrepro.core.flags import Flags

        BEFORE = (Flags.read(), os.environ.get("CUBLAS_WORKSPACE_CONFIG"), torch.get_rng_state())
        EXPORTED = {name: value for name, value in os.environ.items() if name.startswith("IPYREPRO_")}

        @pytest.mark.repro(seed=7, warn_only=True)
        def test_fails_under_the_recipe():
            status = ipyrepro.status()
            assert status.enabled and status.seed == 7
            assert status.deterministic_algorithms == "warn" and torch.backends.cudnn.deterministic
            assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
            torch.backends.cudnn.benchmark = True  # a change inside the test is undone too
            assert False, "planted failure"

        def test_fixture_gives_the_state(repro):
            assert repro.state is ipyrepro.STATE and not repro.enabled
            repro.enable(2)
            report = repro.compare(lambda: torch.rand(2), runs=2)
            assert report.ok

        @pytest.mark.repro(seed="zero")
        def test_bad_marker():
            pass

        def test_everything_was_restored():
            flags, cublas, rng = BEFORE
            assert Flags.read() == flags and not flags.cudnn_benchmark
            assert os.environ.get("CUBLAS_WORKSPACE_CONFIG") == cublas
            state = ipyrepro.STATE
            assert not state.enabled and state.saved is None and state.reseed == "off" and state.seed is None
            assert torch.equal(torch.get_rng_state(), rng)
            assert {name: value for name, value in os.environ.items() if name.startswith("IPYREPRO_")} == EXPORTED
            assert not ipyrepro.STATE.enabled and ipyrepro.enable().seed == 0  # no seed 7 inherited
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:randomly")
    result.assert_outcomes(passed=2, failed=1, errors=1)
    result.stdout.fnmatch_lines(["*seed must be an integer*", "*planted failure*"])


def test_loading_the_plugin_module_imports_no_torch() -> None:
    code = (
        "import sys, ipyrepro.testing.pytest_plugin; print(sorted(m for m in ('torch', 'numpy') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_seeder_reseeds_torch_and_plugins_but_leaves_random_and_numpy_to_pytest_randomly(
    monkeypatch: pytest.MonkeyPatch, fake_gpu
) -> None:
    seen: list[int] = []
    monkeypatch.setattr(seeding, "load_seeders", lambda: [seen.append])
    STATE.reset()  # its reseeder loads the seeders above
    fake_gpu.initialized = True
    cuda: list[int] = []

    class Generator:
        def manual_seed(self, value: int) -> None:
            cuda.append(value)

    monkeypatch.setattr(torch.cuda, "default_generators", (Generator(), Generator()))
    python, numpy = random.getstate(), np.random.get_state()[1].copy()
    seed = 2**32 + 17  # pytest-randomly's seed plus a per-test offset can pass 2**32
    randomly_seeder(seed)
    drawn = torch.rand(3)
    torch.manual_seed(17)
    assert torch.equal(drawn, torch.rand(3))
    assert cuda == [17, 17] and seen == [17]
    assert random.getstate() == python and (np.random.get_state()[1] == numpy).all()
    assert fake_gpu.lazy_init_calls == []


@pytest.mark.cuda
def test_the_seeder_gives_the_cuda_draws_of_torch_manual_seed() -> None:
    torch.cuda.init()
    randomly_seeder(23)
    drawn = torch.rand(3, device="cuda")
    torch.manual_seed(23)
    assert torch.equal(drawn, torch.rand(3, device="cuda"))
