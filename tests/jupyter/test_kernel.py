"""The extension in real Jupyter kernels, with cell ids sent the way JupyterLab sends them."""

from __future__ import annotations

import json

import pytest

from ipyrepro.core.seeding import derive_cell_seed

from ..kernels import kernel

pytestmark = pytest.mark.kernel

DRAW = "import random, numpy as np, torch\n(random.random(), float(np.random.rand()), torch.rand(2).tolist())"


def test_out_of_order_reruns_draw_the_same_numbers_in_a_kernel() -> None:
    with kernel() as k:
        k.ok("%load_ext ipyrepro\n%repro on --seed 42")
        first_a = k.ok(DRAW, cell_id="cell-a").text()
        first_b = k.ok(DRAW, cell_id="cell-b").text()
        assert first_a != first_b
        k.ok("import torch; torch.rand(1000)", cell_id="cell-c")
        assert k.ok(DRAW, cell_id="cell-b").text() == first_b
        assert k.ok(DRAW, cell_id="cell-a").text() == first_a
        status = json.loads(k.ok("%repro status --json", cell_id="cell-s").stdout)
        assert status["reseed"] == "cell" and status["cell_seed"] == derive_cell_seed(42, "cell-s")
        assert status["cell_id"] == "cell-s"


def test_the_same_cell_draws_the_same_numbers_in_a_fresh_kernel() -> None:
    results = []
    for _ in range(2):
        with kernel() as k:
            k.ok("%load_ext ipyrepro\n%repro on --seed 7")
            results.append(k.ok(DRAW, cell_id="the-cell").text())
    assert results[0] == results[1]


def test_without_ipyrepro_reruns_draw_different_numbers() -> None:
    with kernel() as k:
        first = k.ok(DRAW, cell_id="cell-a").text()
        assert k.ok(DRAW, cell_id="cell-a").text() != first


def test_bad_input_in_a_kernel_is_a_clear_error_and_later_cells_still_run() -> None:
    with kernel() as k:
        k.ok("%load_ext ipyrepro")
        reply = k.run("%repro on --seed -1")
        assert reply.status == "error"
        assert "UsageError" in reply.stderr and "0 <= seed < 2**32" in reply.stderr
        assert k.ok("1 + 1").text() == "2"
        assert json.loads(k.ok("%repro status --json").stdout)["enabled"] is False
