"""`%%repro` reruns that fail or are interrupted: every name keeps its object, with its contents as before.

Interrupts are raised where a real Ctrl-C lands (inside the cell, inside a deep copy between runs,
inside a comparison), by objects of the notebook, so the engine's own code paths are exercised.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

SETUP = """
import torch
def tick(_count=[0]):
    _count[0] += 1
    return _count[0]
model = torch.nn.Linear(2, 1)
opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
alias = model
weight = model.weight
history = [model, {"opt": opt}]
xs = [0]
xs_alias = xs
w0 = model.weight.detach().clone()
"""

STEP = """
xs.append(len(xs))
opt.zero_grad()
loss = model(torch.ones(1, 2)).sum()
loss.backward()
opt.step()
model.extra = 1
if tick() == {fail}:  # tick counts across runs: fail in run `fail` (0: never)
    raise ValueError("bad batch")
"""


@pytest.fixture
def shell(ip: Any) -> Any:
    ip.run_cell(SETUP)
    yield ip
    for name in ("tick", "model", "opt", "alias", "weight", "history", "xs", "xs_alias", "w0", "loss", "Bomb", "Cmp"):
        ip.user_ns.pop(name, None)
    ip.user_ns.pop("v", None)


def assert_as_before_the_cell(ns: dict) -> None:
    model = ns["model"]
    assert model is ns["alias"] is ns["history"][0] and ns["history"][1]["opt"] is ns["opt"]
    assert model.weight is ns["weight"] and torch.equal(model.weight, ns["w0"])
    assert model.weight.grad is None and not hasattr(model, "extra")
    assert ns["opt"].param_groups[0]["params"][0] is model.weight  # the optimizer still drives the model
    assert len(ns["opt"].state) == 0  # no momentum buffer from a run that was undone
    assert ns["xs"] is ns["xs_alias"] and ns["xs"] == [0]
    assert "loss" not in ns


def assert_linked(ns: dict) -> None:
    """A training step after the cell moves the very tensors the aliases hold."""
    ns["opt"].zero_grad()
    ns["model"](torch.ones(1, 2)).sum().backward()
    ns["opt"].step()
    assert not torch.equal(ns["weight"], ns["w0"]) and ns["alias"].weight is ns["weight"]


@pytest.mark.parametrize("fail", [1, 2, 3])
def test_a_failure_in_any_run_leaves_every_object_as_before_the_cell(shell: Any, fail: int) -> None:
    report = shell.run_cell_magic("repro", "--runs 3", STEP.format(runs=3, fail=fail))
    assert report.error is not None and report.error.run == fail
    assert "restored to its state before the cell" in str(report)
    assert_as_before_the_cell(shell.user_ns)
    assert_linked(shell.user_ns)


def test_a_complete_rerun_keeps_the_links_too(shell: Any) -> None:
    report = shell.run_cell_magic("repro", "--runs 2", STEP.format(runs=2, fail=0))
    assert report.error is None
    ns = shell.user_ns
    assert ns["model"] is ns["alias"] and ns["xs"] is ns["xs_alias"] and ns["xs"] == [0, 1]
    assert ns["opt"].param_groups[0]["params"][0] is ns["weight"] and len(ns["opt"].state) == 2


def test_an_interrupt_inside_the_cell_is_reported_and_undone(shell: Any) -> None:
    cell = STEP.format(runs=2, fail=0) + "if tick() == 4:\n    raise KeyboardInterrupt\n"
    report = shell.run_cell_magic("repro", "--runs 2", cell)
    assert report.error is not None and report.error.run == 2
    assert "KeyboardInterrupt" in str(report) and "restored to its state before the cell" in str(report)
    assert_as_before_the_cell(shell.user_ns)


BOMB = """
class Bomb:
    '''Ctrl-C lands while the snapshot is copied for copy number `at`.'''
    copies = [0]
    def __init__(self, at):
        self.at = at
    def __deepcopy__(self, memo):
        Bomb.copies[0] += 1
        if Bomb.copies[0] == self.at:
            raise KeyboardInterrupt
        return Bomb(self.at)
"""


@pytest.mark.parametrize("at", [1, 2, 3])  # copies: 1 is the snapshot, 2 and 3 before runs 1 and 2
def test_an_interrupt_while_copying_between_runs_restores_the_state_before_the_cell(shell: Any, at: int) -> None:
    shell.run_cell(BOMB + f"bomb = Bomb({at})")
    bomb = shell.user_ns["bomb"]
    cell = "b = bomb\n" + STEP.format(runs=3, fail=0)
    with pytest.raises(KeyboardInterrupt, match="as before the cell|restored to its state before the cell"):
        shell.run_cell_magic("repro", "--runs 3", cell)
    assert shell.user_ns["bomb"] is bomb and "b" not in shell.user_ns
    assert_as_before_the_cell(shell.user_ns)
    assert_linked(shell.user_ns)
    shell.user_ns.pop("bomb")


CMP = """
class Cmp:
    '''Ctrl-C lands while run `at` is compared with run 1.'''
    calls = [0]
    def __init__(self, at):
        self.at = at
    def __eq__(self, other):
        Cmp.calls[0] += 1
        if Cmp.calls[0] == self.at - 1:
            raise KeyboardInterrupt
        return True
"""


def test_an_interrupt_while_comparing_an_earlier_run_restores_the_state_before_the_cell(shell: Any) -> None:
    shell.run_cell(CMP)
    with pytest.raises(KeyboardInterrupt, match="restored to its state before the cell"):
        shell.run_cell_magic("repro", "--runs 3", "v = Cmp(2)\n" + STEP.format(runs=3, fail=0))
    assert "v" not in shell.user_ns
    assert_as_before_the_cell(shell.user_ns)


def test_an_interrupt_while_comparing_the_last_run_leaves_one_complete_run(shell: Any) -> None:
    shell.run_cell(CMP)
    with pytest.raises(KeyboardInterrupt, match="as after one complete run"):
        shell.run_cell_magic("repro", "--runs 3", "v = Cmp(3)\n" + STEP.format(runs=3, fail=0))
    ns = shell.user_ns
    assert isinstance(ns["v"], ns["Cmp"]) and ns["xs"] is ns["xs_alias"] and ns["xs"] == [0, 1]
    assert ns["model"] is ns["alias"] and ns["model"].weight is ns["weight"] and ns["model"].extra == 1
    assert not torch.equal(ns["weight"], ns["w0"])  # exactly one training step
    assert ns["opt"].param_groups[0]["params"][0] is ns["weight"]


def test_existing_gradients_are_part_of_the_state_each_run_starts_from(shell: Any) -> None:
    """A cell that accumulates into gradients from before the cell (no zero_grad) reproduces, and a
    failed last run puts those gradients back (nn.Parameter's own deepcopy drops .grad)."""
    shell.run_cell("model(torch.ones(1, 2)).sum().backward()\ngrad = model.weight.grad\ng0 = grad.clone()")
    cell = "model(torch.ones(1, 2)).sum().backward()\nopt.step()\nw = model.weight.detach().clone()\n"
    report = shell.run_cell_magic("repro", "--runs 2", cell)
    assert report.ok, str(report)
    shell.run_cell("model.weight.grad = grad\ngrad.copy_(g0)\nweight.data.copy_(w0)\nopt.state.clear()")
    report = shell.run_cell_magic("repro", "--runs 2", cell + "if tick() == 2:\n    raise ValueError('bad batch')")
    assert report.error is not None and report.error.run == 2
    ns = shell.user_ns
    assert ns["model"].weight.grad is ns["grad"] and torch.equal(ns["grad"], ns["g0"])
    assert torch.equal(ns["weight"], ns["w0"])
    for name in ("grad", "g0", "w"):
        ns.pop(name, None)


def test_restoring_in_place_covers_generators_arrays_and_containers() -> None:
    import copy
    import random

    import numpy as np

    from ipyrepro.comparison.snapshot import CellNames, Snapshot

    objects = np.empty(2, dtype=object)
    objects[:] = [[1], [2]]
    ns: dict[str, Any] = {
        "r": random.Random(1),
        "g": np.random.default_rng(1),
        "rs": np.random.RandomState(1),
        "tg": torch.Generator().manual_seed(1),
        "d": {"a": [1, 2]},
        "s": {1, 2},
        "arr": np.arange(3),
        "objects": objects,
    }
    ns["alias"] = ns["d"]["a"]
    snapshot = Snapshot.take(ns, CellNames((), tuple(ns)))
    twins = copy.deepcopy({key: ns[key] for key in ("r", "g", "rs", "tg")})
    ns["r"].random(), ns["g"].random(), ns["rs"].random_sample(), torch.rand(5, generator=ns["tg"])
    ns["d"]["a"].append(3), ns["s"].add(5), ns["objects"][0].append(7)
    ns["arr"][0] = 9
    assert snapshot.restore_contents() == {}
    assert ns["r"].random() == twins["r"].random() and ns["g"].random() == twins["g"].random()
    assert ns["rs"].random_sample() == twins["rs"].random_sample()
    assert torch.equal(torch.rand(2, generator=ns["tg"]), torch.rand(2, generator=twins["tg"]))
    assert ns["d"] == {"a": [1, 2]} and ns["alias"] is ns["d"]["a"] and ns["s"] == {1, 2}
    assert ns["arr"].tolist() == [0, 1, 2] and ns["objects"].tolist() == [[1], [2]]
