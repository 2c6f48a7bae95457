"""`%%repro --trace-ops` in a real IPython shell: the first op whose output differs between runs, at its line."""

from __future__ import annotations

import pytest
from IPython.core.error import UsageError


def test_names_the_first_op_fed_by_a_value_from_outside_torch(ip) -> None:
    cell = "import time\nstamp = torch.tensor([time.perf_counter()])\ntotal = (stamp * 2).sum()\n"
    ip.run_cell("import torch")
    report = ip.run_cell_magic("repro", "--trace-ops --no-restore", cell)
    assert not report.ok
    (note,) = [note for note in report.notes if note.startswith("First divergent op")]
    assert note == (
        "First divergent op (run 1 vs run 2): aten::mul at the cell, line 3 (total = (stamp * 2).sum()): "
        "its inputs already differ (they come from outside torch ops, e.g. a Python or numpy value)"
    )
    assert note in str(report)


def test_a_reproducible_cell_says_every_op_matched(ip) -> None:
    ip.run_cell("import torch")
    report = ip.run_cell_magic("repro", "--trace-ops --runs 3", "weights = torch.randn(4, 4)\nout = weights.softmax(1)")
    assert report.ok
    assert "Op trace: all 2 recorded ops gave the same bits in every run" in report.notes


def test_trace_ops_is_a_flag(ip) -> None:
    with pytest.raises(UsageError):
        ip.run_cell_magic("repro", "--trace-ops=yes", "x = 1")
