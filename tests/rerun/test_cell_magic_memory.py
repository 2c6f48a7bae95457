"""`%%repro` keeps one copy of what the cell reads in memory with 2 runs, and still restores and diagnoses."""

from __future__ import annotations

from typing import Any

import pytest

COUNTED = '''
class Counted:
    """A stand-in for a big object: counts how many of its copies are alive at once."""
    alive = 0
    most = 0
    def __init__(self, value, is_copy=False):
        self.value = value
        self.is_copy = is_copy
    def __deepcopy__(self, memo):
        Counted.alive += 1
        Counted.most = max(Counted.most, Counted.alive)
        return Counted(list(self.value), is_copy=True)
    def __del__(self):
        if self.is_copy:
            type(self).alive -= 1
ORIGINAL = big = Counted([1, 2, 3])
'''


@pytest.fixture
def shell(ip: Any) -> Any:
    ip.run_cell(COUNTED)
    yield ip
    for name in ("Counted", "ORIGINAL", "big", "total", "tick", "b", "n"):
        ip.user_ns.pop(name, None)


def test_two_runs_keep_at_most_one_copy_of_what_the_cell_reads_alive(shell: Any) -> None:
    report = shell.run_cell_magic("repro", "--runs 2", "total = sum(big.value)\nbig.value.append(4)")
    counted = shell.user_ns["Counted"]
    assert report.ok, report
    assert counted.most == 1
    assert shell.user_ns["big"] is shell.user_ns["ORIGINAL"]  # the last run worked on the user's object
    assert shell.user_ns["big"].value == [1, 2, 3, 4]  # changed by exactly one run


@pytest.mark.parametrize("failing_run", [1, 2])
def test_a_failing_run_of_two_still_restores_the_namespace(shell: Any, failing_run: int) -> None:
    shell.run_cell("def tick(_count=[0]):\n    _count[0] += 1\n    return _count[0]")
    cell = f"big.value.append(9)\nb = 1\nif tick() == {failing_run}:\n    raise ValueError('bad batch')"
    report = shell.run_cell_magic("repro", "--runs 2", cell)
    assert report.error is not None and report.error.run == failing_run
    assert shell.user_ns["big"].value == [1, 2, 3] and "b" not in shell.user_ns


def test_the_diagnosis_rerun_still_runs_after_the_copies_were_handed_over(shell: Any) -> None:
    shell.run_cell("import os")
    report = shell.run_cell_magic(
        "repro", "--runs 2", "big.value.append(os.urandom(2))\ntotal = len(big.value[-1]) and big.value[-1]"
    )
    assert not report.ok and report.diagnosis is not None
    assert any("deterministic rerun" in line for line in str(report).splitlines())
    assert shell.user_ns["big"] is shell.user_ns["ORIGINAL"] and len(shell.user_ns["big"].value) == 4


@pytest.mark.parametrize(
    "change",
    ["total = float(a.sum())", "a.add_(1.0)", "a[0] = 7.0"],
    ids=["reads a", "adds in place", "sets an element"],
)
def test_a_failing_last_run_restores_tensors_it_read_or_changed_and_their_sharing(shell: Any, change: str) -> None:
    import torch

    shell.user_ns["torch"] = torch
    shell.run_cell("a = torch.zeros(3)\nholder = [a]\ndef tick(_count=[0]):\n    _count[0] += 1\n    return _count[0]")
    cell = f"{change}\nlength = len(holder)\nif tick() == 2:\n    raise ValueError('bad batch')"
    report = shell.run_cell_magic("repro", "--runs 2", cell)
    assert report.error is not None and report.error.run == 2
    restored = shell.user_ns
    assert torch.equal(restored["a"], torch.zeros(3)) and restored["holder"][0] is restored["a"]
    for name in ("a", "holder", "torch", "length"):
        restored.pop(name, None)
