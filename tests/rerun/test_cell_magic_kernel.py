"""`%%repro` in real Jupyter kernels: what a notebook user sees, and save/check across kernels."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ..kernels import kernel

pytestmark = pytest.mark.kernel

SETUP = "%load_ext ipyrepro\nimport os, time\nimport numpy as np\nimport torch"


def test_a_notebook_cell_is_rerun_and_compared_in_a_kernel() -> None:
    with kernel() as k:
        k.ok(SETUP)
        k.ok("n = 0\nw = torch.zeros(3)")
        reply = k.ok("%%repro --runs 3\nn += 1\nw.add_(torch.rand(3))\nloss = float(w.sum())\nprint('trained')")
        assert reply.text().startswith("%%repro: REPRODUCIBLE: 2 of 2 compared match (3 runs from seed 0, bitwise)")
        assert any("text/html" in item and "ipyrepro-compare" in item["text/html"] for item in reply.data)
        assert reply.stdout.count("trained") == 1
        assert k.ok("n").text() == "1"
        assert k.ok("float(w.sum()) == loss").text() == "True"  # w was changed in place exactly once


def test_unseeded_randomness_is_named_in_a_kernel() -> None:
    with kernel() as k:
        k.ok(SETUP)
        reply = k.ok(
            "%%repro\nt = time.perf_counter_ns()\ng = np.random.default_rng().random(2)\n"
            "u = os.urandom(4)\ns = torch.rand(2)"
        )
        text = reply.text()
        assert "NOT REPRODUCIBLE: 3 of 4 compared differ" in text
        for name in ("t", "g", "u"):
            assert f"\n  {name}  differs in run 2 vs run 1" in text
        assert "\n  s  identical" in text
        assert "deterministic algorithms were off" in text


def test_a_failing_run_shows_the_error_and_restores_the_namespace_in_a_kernel() -> None:
    with kernel() as k:
        k.ok(SETUP)
        k.ok("a = 1\ncalls = [0]\ndef tick(_c=[0]):\n    _c[0] += 1\n    return _c[0]")
        reply = k.ok("%%repro --runs 3\na = 2\nif tick() == 2:\n    raise KeyError('batch 7')")
        assert "FAILED: run 2 of 3 raised KeyError: 'batch 7'" in reply.text()
        assert "KeyError" in reply.error  # the traceback is shown as the cell's error output
        assert k.ok("a").text() == "1"


def test_save_then_check_in_a_fresh_kernel(tmp_path: Path) -> None:
    path = tmp_path / "train.json"
    cell = (
        "model = torch.nn.Linear(4, 2)\n"
        "out = model(torch.randn(3, 4))\n"
        "history = {'loss': [float(out.pow(2).mean())], 'steps': 1}"
    )
    with kernel() as k:
        k.ok(SETUP)
        reply = k.ok(f"%%repro --seed 21 --save {path}\n{cell}")
        assert "REPRODUCIBLE" in reply.text() and f"written to {path}" in reply.text()
    document = json.loads(path.read_text())
    assert document["seed"] == 21 and "model['weight']" in document["values"]
    with kernel() as k:
        k.ok(SETUP)
        assert "DOES NOT MATCH" not in k.ok(f"%%repro --check {path}\n{cell}").text()
        reply = k.ok(f"%%repro --check {path}\n{cell}\nhistory['steps'] = 2")
        text = reply.text()
        assert "DOES NOT MATCH" in text and "history['steps']: differs ('2' now, '1' saved)" in text
        bad = tmp_path / "bad.json"
        bad.write_text(path.read_text()[:100])
        failed = k.run(f"%%repro --check {bad}\nx = 1")
        assert failed.status == "error" and "UsageError" in failed.stderr and "truncated" in failed.stderr
        assert k.run("x").status == "error"  # nothing ran
