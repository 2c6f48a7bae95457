"""`%%repro --runs 3` and more keep the snapshot and at most one copy of what the cell reads alive, as 2 runs do."""

from __future__ import annotations

from typing import Any

import pytest

from . import test_cell_magic_memory

shell = test_cell_magic_memory.shell  # the same fixture: the counted big object, defined once


@pytest.mark.parametrize("runs", [3, 4, 5])
def test_more_runs_keep_at_most_one_copy_alive_and_change_the_users_object_once(shell: Any, runs: int) -> None:
    report = shell.run_cell_magic("repro", f"--runs {runs}", "total = sum(big.value)\nbig.value.append(4)")
    counted = shell.user_ns["Counted"]
    assert report.ok, report
    assert counted.most == 1
    assert shell.user_ns["big"] is shell.user_ns["ORIGINAL"]  # the last run worked on the user's object
    assert shell.user_ns["big"].value == [1, 2, 3, 4]  # changed by exactly one run
    assert shell.user_ns["total"] == 6


def test_every_run_starts_from_the_namespace_before_the_cell(shell: Any) -> None:
    shell.run_cell("n = 10")
    report = shell.run_cell_magic("repro", "--runs 4", "n += 1\nbig.value.append(n)\nb = list(big.value)")
    assert report.ok, report  # each run saw n == 10 and big.value == [1, 2, 3]
    assert shell.user_ns["n"] == 11 and shell.user_ns["b"] == [1, 2, 3, 11]
    assert shell.user_ns["Counted"].most == 1


@pytest.mark.parametrize("failing_run", [1, 2, 3])
def test_a_failing_run_of_three_still_restores_the_namespace(shell: Any, failing_run: int) -> None:
    shell.run_cell("def tick(_count=[0]):\n    _count[0] += 1\n    return _count[0]")
    cell = f"big.value.append(9)\nb = 1\nif tick() == {failing_run}:\n    raise ValueError('bad batch')"
    report = shell.run_cell_magic("repro", "--runs 3", cell)
    assert report.error is not None and report.error.run == failing_run
    assert shell.user_ns["big"].value == [1, 2, 3] and "b" not in shell.user_ns
    assert shell.user_ns["big"] is shell.user_ns["ORIGINAL"]


def test_a_difference_in_a_middle_run_is_still_found(shell: Any) -> None:
    shell.run_cell("def tick(_count=[0]):\n    _count[0] += 1\n    return _count[0]")
    report = shell.run_cell_magic("repro", "--runs 3", "b = 1 if tick() != 2 else 2\nbig.value.append(b)")
    assert not report.ok
    assert list(report.differences) == ["b"]
    assert report.differences["b"]["run"] == 2
