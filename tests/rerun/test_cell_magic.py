"""`%%repro` in a real IPython shell: rerun semantics, mutation, errors, options, files and diagnosis."""

from __future__ import annotations

import ast
import json
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
from IPython.core.error import UsageError

from ipyrepro.comparison.snapshot import cell_names
from ipyrepro.core.state import STATE, ReproWarning
from ipyrepro.core.torchinfo import deterministic_algorithms_mode
from ipyrepro.rerun import cell as rerun_cell_module

SETUP = """
import os, random, time
import numpy as np
import torch
def tick(_count=[0]):
    '''A counter the snapshot cannot reset: it lives in a function default.'''
    _count[0] += 1
    return _count[0]
"""


@pytest.fixture
def shell(ip: Any) -> Any:
    ip.run_cell(SETUP)
    yield ip
    for name in ("n", "x", "y", "xs", "w", "model", "opt", "a", "b", "out", "loss", "total", "marker", "tick"):
        ip.user_ns.pop(name, None)


def repro(shell: Any, line: str, cell: str) -> Any:
    return shell.run_cell_magic("repro", line, cell)


def test_a_deterministic_cell_is_reproducible(shell: Any) -> None:
    report = repro(shell, "--runs 3", "x = torch.randn(4)\ny = np.random.rand(2)\nr = random.random()\nx.sum()")
    assert report.ok, report
    assert [entry.name for entry in report.entries] == ["x", "y", "r", "(last expression)"]
    assert str(report).startswith("%%repro: REPRODUCIBLE: 4 of 4 compared match (3 runs from seed 0, bitwise)")
    torch.manual_seed(0)
    assert torch.equal(shell.user_ns["x"], torch.randn(4))  # the namespace holds one run from the seed
    assert torch.equal(report.value, shell.user_ns["x"].sum())


def test_unseeded_randomness_is_caught_and_named(shell: Any) -> None:
    cell = (
        "t = time.perf_counter_ns()\ng = np.random.default_rng().random(3)\nu = os.urandom(8)\nseeded = torch.rand(2)\n"
    )
    report = repro(shell, "", cell)
    assert not report.ok
    assert set(report.differences) == {"t", "g", "u"}
    text = str(report)
    assert "NOT REPRODUCIBLE: 3 of 4 compared differ" in text
    assert "t       differs in run 2 vs run 1" in text
    assert "seeded  identical" in text
    assert "Diagnosis:" in text and "randomness the seeding does not reach" not in text  # causes replace the hint
    assert [(cause.kind, cause.line) for cause in report.causes] == [
        ("unseeded-generator", 2),
        ("entropy", 3),
        ("clock", 1),
    ]


def test_the_namespace_is_as_after_exactly_one_run(shell: Any) -> None:
    shell.run_cell("n = 0")
    report = repro(shell, "--runs 3", "n += 1")
    assert report.ok and shell.user_ns["n"] == 1


def test_in_place_mutation_starts_from_the_same_state_and_keeps_the_users_objects(shell: Any) -> None:
    shell.run_cell("xs = [1]\nw = torch.zeros(2)")
    xs, w = shell.user_ns["xs"], shell.user_ns["w"]
    report = repro(shell, "--runs 4", "xs.append(len(xs))\nw.add_(1)\ntotal = sum(xs) + float(w.sum())")
    assert report.ok, report
    assert shell.user_ns["xs"] == [1, 1] and shell.user_ns["total"] == 4.0
    assert torch.equal(shell.user_ns["w"], torch.ones(2))
    assert shell.user_ns["xs"] is xs and shell.user_ns["w"] is w  # the last run worked on the user's own objects


def test_a_training_step_keeps_model_and_optimizer_linked(shell: Any) -> None:
    shell.run_cell(
        "torch.manual_seed(0)\nmodel = torch.nn.Linear(3, 1)\nopt = torch.optim.SGD(model.parameters(), lr=0.1)\n"
        "x = torch.ones(2, 3)\nw0 = model.weight.detach().clone()"
    )
    cell = (
        "opt.zero_grad()\nloss = model(x).pow(2).sum()\nloss.backward()\nopt.step()\nw1 = model.weight.detach().clone()"
    )
    report = repro(shell, "--runs 3 --vars loss,w1,model,opt", cell)
    assert report.ok, report  # every run stepped the model its optimizer holds, from the same start
    torch.manual_seed(0)
    expected = torch.nn.Linear(3, 1)
    optimizer = torch.optim.SGD(expected.parameters(), lr=0.1)
    expected(torch.ones(2, 3)).pow(2).sum().backward()
    optimizer.step()
    assert torch.equal(shell.user_ns["model"].weight, expected.weight)  # stepped exactly once
    assert not torch.equal(shell.user_ns["w1"], shell.user_ns["w0"])
    shell.user_ns.pop("w0"), shell.user_ns.pop("w1")


def test_functions_defined_in_the_notebook_have_their_globals_restored(shell: Any) -> None:
    shell.run_cell("xs = []\ndef record():\n    xs.append(1)\n    return len(xs)")
    report = repro(shell, "--runs 3", "count = record()")
    assert report.ok, report
    assert shell.user_ns["xs"] == [1] and shell.user_ns["count"] == 1
    shell.user_ns.pop("record"), shell.user_ns.pop("count")


def test_a_run_that_raises_is_reported_and_the_namespace_restored(shell: Any) -> None:
    shell.run_cell("a = 1\nxs = [0]")
    for failing_run, runs in ((1, 3), (2, 3), (3, 3)):
        cell = (
            f"a = 100\nb = 5\nxs.append(9)\n"
            f"if tick() % {runs} == {failing_run % runs}:\n    raise ValueError('bad batch')"
        )
        shell.run_cell("tick.__defaults__[0][0] = 0")
        report = repro(shell, f"--runs {runs}", cell)
        assert not report.ok
        assert report.error is not None and report.error.run == failing_run
        assert f"run {failing_run} of {runs} raised ValueError: bad batch" in str(report)
        assert "the namespace was restored to its state before the cell" in str(report)
        assert shell.user_ns["a"] == 1 and shell.user_ns["xs"] == [0] and "b" not in shell.user_ns


def test_no_restore_skips_the_snapshot_and_says_what_that_means(shell: Any) -> None:
    shell.run_cell("n = 0")
    report = repro(shell, "--runs 3 --no-restore", "n += 1")
    assert shell.user_ns["n"] == 3
    assert not report.ok and report.differences["n"]["detail"] == "1 vs 2"
    text = str(report)
    assert "--no-restore: no snapshot was taken" in text
    assert "deterministic rerun: skipped: --no-restore" in text
    assert report.snapshot_bytes is None


def test_vars_compares_only_the_names_given(shell: Any) -> None:
    shell.run_cell("w = torch.zeros(3)")
    report = repro(shell, "--vars w,missing", "t = time.perf_counter_ns()\nw.add_(torch.rand(3))")
    assert [entry.name for entry in report.entries] == ["w", "missing"]
    assert report.differences == {
        "missing": {"status": "missing", "path": "missing", "detail": "not defined after any run", "run": None}
    }
    assert report.entries[0].outcome.status == "identical"


def test_tolerances(shell: Any) -> None:
    cell = "y = torch.ones(3, dtype=torch.float64) * (1 + tick() * 1e-9)"
    bitwise = repro(shell, "--runs 3", cell)
    assert not bitwise.ok and bitwise.differences["y"]["max_rel_diff"] == pytest.approx(1e-9, rel=1e-3)
    close = repro(shell, "--runs 3 --rtol 1e-6", cell)
    assert close.ok and close.entries[0].outcome.status == "within tolerance"
    assert "rtol=1e-06, atol=0" in str(close)
    absolute = repro(shell, "--atol 1e-12", cell)
    assert not absolute.ok


def test_last_expression_and_nested_containers(shell: Any) -> None:
    report = repro(shell, "", "hist = {'loss': [torch.rand(2), tick()], 'cfg': ('sgd', 0.1)}\nhist['cfg']")
    assert set(report.differences) == {"hist"}
    assert report.differences["hist"]["path"] == "hist['loss'][1]"
    assert report.value == ("sgd", 0.1)
    assert [entry.outcome.status for entry in report.entries] == ["differs", "identical"]
    shell.user_ns.pop("hist")


def test_modules_functions_and_imports_bound_by_the_cell_are_not_compared(shell: Any) -> None:
    report = repro(shell, "", "import math\ndef f():\n    return 1\nclass C:\n    pass\nmodel = torch.nn.Linear(2, 2)")
    assert report.ok and [entry.name for entry in report.entries] == ["model"]
    for name in ("math", "f", "C"):
        shell.user_ns.pop(name)


def test_values_that_cannot_be_compared_say_why_and_do_not_fail(shell: Any) -> None:
    report = repro(shell, "", "class Box:\n    pass\nbox = Box()")
    assert report.ok and "box" in report.not_comparable and "defines no ==" in report.not_comparable["box"]
    shell.user_ns.pop("box"), shell.user_ns.pop("Box")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("--runs 0", "invalid run count"),
        ("--runs two", "invalid run count"),
        ("--seed -1", "invalid seed"),
        ("--rtol abc", "invalid tolerance"),
        ("--atol -1", "invalid tolerance"),
        ("--vars 1a,b", "invalid --vars"),
        ("--bogus", "unrecognized arguments"),
        ("--save '/no/such/dir/f.json'", "does not exist"),
        ("--check /no/such/file.json", "does not exist"),
        ("--save a.json --check b.json", "not both"),
        ("--save 'unclosed", "cannot read the options"),
    ],
)
def test_bad_options_raise_usage_errors_and_run_nothing(shell: Any, line: str, message: str) -> None:
    shell.run_cell("marker = 0")
    with pytest.raises(UsageError, match=message):
        repro(shell, line, "marker = tick()")
    assert shell.user_ns["marker"] == 0


def test_a_cell_that_does_not_parse_runs_nothing(shell: Any) -> None:
    shell.run_cell("marker = 0")
    with pytest.raises(UsageError, match="does not parse"):
        repro(shell, "", "marker = 1\nthis is ) not python")
    assert shell.user_ns["marker"] == 0


def test_runs_fire_no_cell_hooks_and_store_no_history(shell: Any) -> None:
    seen: list[str] = []

    def pre_run_cell(info: Any) -> None:
        seen.append(info.raw_cell)

    shell.events.register("pre_run_cell", pre_run_cell)
    try:
        count = shell.execution_count
        result = shell.run_cell("%%repro --runs 3\nmarker = 5", store_history=True)
    finally:
        shell.events.unregister("pre_run_cell", pre_run_cell)
    assert result.success and result.result.ok
    assert seen == ["%%repro --runs 3\nmarker = 5"]  # only the outer cell
    assert shell.execution_count == count + 1
    assert shell.user_ns["_"] is result.result  # the report is the cell's output


def test_cell_output_is_shown_once(shell: Any, capsys: pytest.CaptureFixture[str]) -> None:
    repro(shell, "--runs 3", "print('epoch done')")
    assert capsys.readouterr().out.count("epoch done") == 1


def test_ipython_syntax_inside_the_cell(shell: Any) -> None:
    report = repro(shell, "", "x = torch.rand(2)\n%time y = x * 2\ny")
    assert report.ok and [entry.name for entry in report.entries] == ["x", "y", "(last expression)"]


def test_default_seed_is_the_base_seed(shell: Any) -> None:
    STATE.seed_all(99)
    assert repro(shell, "", "x = torch.rand(1)").seed == 99
    assert repro(shell, "--seed 5", "x = torch.rand(1)").seed == 5
    torch.manual_seed(5)
    assert torch.equal(shell.user_ns["x"], torch.rand(1))


def test_snapshot_size_is_reported_and_a_large_one_suggests_no_restore(
    shell: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    shell.run_cell("w = torch.zeros(1024)")
    report = repro(shell, "", "w.add_(1)")
    assert report.snapshot_bytes == 4096
    assert "snapshot of the names the cell reads (w): 4.0 KiB, restored before each run" in str(report)
    monkeypatch.setattr(rerun_cell_module, "SNAPSHOT_WARN_BYTES", 1000)
    with pytest.warns(UserWarning, match="use --no-restore"):
        report = repro(shell, "", "w.add_(1)")
    assert any("4.0 KiB on cpu" in text and "--no-restore" in text for text in report.warnings)


def test_diagnosis_lists_ops_without_a_deterministic_implementation(shell: Any) -> None:
    cell = "out = torch.zeros(4).put_(torch.tensor([0, 1]), torch.ones(2)) + tick()"
    report = repro(shell, "", cell)
    assert not report.ok and report.diagnosis is not None
    assert report.diagnosis.ops == ["put_"]
    assert any("deterministic algorithms were off" in text for text in report.diagnosis.settings)
    assert "ops without a deterministic implementation (rerun with warn_only=True): put_" in str(report)
    assert deterministic_algorithms_mode() == "off"
    assert float(shell.user_ns["out"][0]) == 1 + 2  # the namespace holds run 2, not the diagnosis rerun


def test_diagnosis_names_drift_and_respects_the_users_mode(shell: Any) -> None:
    shell.run_line_magic("repro", "on --warn-only")
    with pytest.warns(ReproWarning, match="now off, not warn"):
        shell.run_cell("import torch; torch.use_deterministic_algorithms(False)")
    report = repro(shell, "", "t = time.perf_counter_ns()")
    settings = "\n".join(report.diagnosis.settings)
    assert "deterministic algorithms were off" in settings
    assert "torch.use_deterministic_algorithms is now off, not warn" in settings
    assert deterministic_algorithms_mode() == "off"


def test_save_then_check_in_the_same_shell(shell: Any, tmp_path: Path) -> None:
    path = tmp_path / "cell.json"
    cell = "x = torch.randn(8)\nstats = {'mean': float(x.mean()), 'n': 8}"
    saved = repro(shell, f"--seed 3 --save {path}", cell)
    assert saved.ok and saved.saved == str(path) and f"written to {path}" in str(saved)
    document = json.loads(path.read_text())
    assert set(document["values"]) == {"x", "stats['mean']", "stats['n']"} and document["seed"] == 3
    assert repro(shell, f"--check {path}", cell).ok
    changed = repro(shell, f"--check {path}", cell.replace("randn(8)", "randn(8) * 2"))
    assert not changed.ok and "DOES NOT MATCH" in str(changed)
    assert "x: differs (digest differs" in str(changed)
    shell.user_ns.pop("stats")


def test_a_corrupt_check_file_is_a_usage_error(shell: Any, tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text('{"format": "ipyrepro.fingerprint", "version": 1, "values": {')
    shell.run_cell("marker = 0")
    with pytest.raises(UsageError, match="not valid JSON \\(it looks truncated\\)"):
        repro(shell, f"--check {path}", "marker = 1")
    assert shell.user_ns["marker"] == 0


def test_html_report(shell: Any) -> None:
    report = repro(shell, "", "t = time.perf_counter_ns()\nok_value = 1")
    page = report._repr_html_()
    assert "<table>" in page and "<code>t</code>" in page and "<code>ok_value</code>" in page
    shell.user_ns.pop("ok_value")


# -- which names a cell touches --------------------------------------------------


def names(code: str) -> tuple[set[str], set[str]]:
    found = cell_names(ast.parse(code))
    return set(found.bound), set(found.read)


def test_names_bound_and_read() -> None:
    bound, read = names(
        "a = b + 1\nc += 1\nd.e = f\nimport g.h as i, j.k\nfrom l import m\nfor n in o: pass\n"
        "with p() as q: pass\ntry:\n    pass\nexcept E as r:\n    pass\ndel s\n(t := u)\nv, *w = x"
    )
    assert bound == {"a", "c", "i", "j", "m", "n", "q", "r", "s", "t", "v", "w"}
    assert {"b", "c", "d", "f", "o", "p", "E", "s", "u", "x"} <= read


def test_names_in_functions_classes_and_comprehensions_stay_local() -> None:
    bound, read = names(
        "def f(arg=default):\n    local = arg + outer\n    global g\n    g = 1\n"
        "class K(Base):\n    attr = 1\nys = [z for z in zs if (hit := z)]\nlam = lambda q: q + r"
    )
    assert bound == {"f", "g", "K", "ys", "hit", "lam"}
    assert {"default", "outer", "Base", "zs", "r"} <= read
    assert "local" not in bound and "attr" not in bound and "z" not in bound and "q" not in bound


def test_rerunning_diagnosing_and_saving_never_initialise_cuda(shell: Any, fake_gpu: Any, tmp_path: Path) -> None:
    report = repro(shell, f"--save {tmp_path / 'f.json'}", "t = time.perf_counter_ns()\nx = torch.rand(3)")
    assert not report.ok and report.diagnosis is not None and report.diagnosis.rerun == "done"
    settings = "\n".join(report.diagnosis.settings)
    assert "cudnn.deterministic was off" in settings  # CUDA looks available, so cuDNN settings count
    assert json.loads((tmp_path / "f.json").read_text())["environment"]["gpus"] is None
    assert fake_gpu.lazy_init_calls == []


def test_help_prints_the_options_and_runs_nothing(shell: Any, capsys: pytest.CaptureFixture[str]) -> None:
    shell.run_cell("marker = 0")
    assert repro(shell, "-h", "marker = 1") is None
    out = capsys.readouterr().out
    assert "--runs" in out and "--no-restore" in out and "--check FILE" in out
    assert shell.user_ns["marker"] == 0


def test_the_memory_threshold_is_the_smaller_of_the_limit_and_a_quarter_of_the_device() -> None:
    from ipyrepro.comparison.snapshot import device_memory, oversized

    total = device_memory("cpu")
    assert total and total > 1 << 20
    assert oversized({"cpu": total // 4 + 1}, limit=total) == {"cpu": total // 4 + 1}
    assert oversized({"cpu": 2048}, limit=1024) == {"cpu": 2048}
    assert oversized({"cpu": 512}, limit=1024) == {}
    assert oversized({"cuda:0": 2048}, limit=1024) == {"cuda:0": 2048}  # unknown size: the limit alone


def test_names_assigned_by_a_line_magic_are_compared_and_undone_on_error(shell: Any) -> None:
    shell.run_cell("tick.__defaults__[0][0] = 0")
    report = repro(shell, "--runs 2", "%time made = tick()\nif made == 2:\n    raise RuntimeError('late')")
    assert report.error is not None and report.error.run == 2
    assert "made" not in shell.user_ns
    report = repro(shell, "", "%time made = time.perf_counter_ns()")
    assert set(report.differences) == {"made"}
    shell.user_ns.pop("made")


def test_with_reseeding_on_the_cell_starts_from_its_own_seed_as_without_the_magic(shell: Any) -> None:
    from ipyrepro.core.seeding import derive_cell_seed

    shell.run_line_magic("repro", "on --seed 42")
    result = shell.run_cell("%%repro\nx = torch.rand(2)", cell_id="cell-7")
    assert result.result.seed == derive_cell_seed(42, "cell-7")
    with_magic = shell.user_ns["x"]
    shell.run_cell("x = torch.rand(2)", cell_id="cell-7")  # the same cell without %%repro
    assert torch.equal(shell.user_ns["x"], with_magic)
    shell.run_line_magic("repro", "reseed fixed")
    assert shell.run_cell("%%repro\nx = torch.rand(2)", cell_id="cell-7").result.seed == 42


@pytest.mark.parametrize("mode, cell_id", [("source", "cell-7"), ("cell", None)])
def test_a_seed_from_the_code_is_the_seed_of_the_code_without_the_magic(shell: Any, mode: str, cell_id: Any) -> None:
    """`source` mode, and `cell` mode without a cell id (nbconvert, a terminal): the `%%repro` line is
    not part of the cell's code, so the cell ends as it does without the magic."""
    from ipyrepro.core.seeding import derive_source_seed

    shell.run_line_magic("repro", f"on --seed 42 --reseed {mode}")
    result = shell.run_cell("%%repro --runs 2\nx = torch.rand(2)\n", cell_id=cell_id)
    assert result.result.seed == derive_source_seed(42, "x = torch.rand(2)")
    with_magic = shell.user_ns["x"]
    shell.run_cell("x = torch.rand(2)", cell_id=cell_id)  # the same cell without %%repro
    assert torch.equal(shell.user_ns["x"], with_magic)


def test_shared_and_self_referencing_objects_are_copied_once_and_stay_shared(shell: Any) -> None:
    shell.run_cell("xs = [1]\nxs.append(xs)\nw = torch.zeros(2)\nviews = {'all': w, 'head': w[:1]}")
    report = repro(shell, "--runs 3", "views['head'].add_(1)\nxs[0] += 1\ntotal = float(w.sum()) + xs[0]")
    assert report.ok and report.notes == [], report
    assert shell.user_ns["total"] == 3.0 and shell.user_ns["xs"][1] is shell.user_ns["xs"]
    assert float(shell.user_ns["w"][0]) == 1.0  # the view and its base stayed one storage
    shell.user_ns.pop("views")


def test_a_graph_tensor_from_an_earlier_cell_is_snapshotted_without_torch_warnings(shell: Any) -> None:
    shell.run_cell("w = torch.ones(3, requires_grad=True)\nloss = (w * 2).sum()\nloss.backward()")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # reading .grad of the non-leaf `loss` would warn here
        report = repro(shell, "", "out = loss.detach() + w.grad.sum()")
    assert report.ok, report
    assert torch.equal(shell.user_ns["w"].grad, torch.full((3,), 2.0))
