"""The state digest in a real kernel: what it digests and skips, and that asking for it changes nothing the notebook
can see (no count, no history, no output, no name, no RNG draw, no re-seeding event)."""

from __future__ import annotations

from ipyrepro.notebooks import statecheck
from tests.kernels import kernel

SETUP = """
import random, types
import numpy as np
import torch
seen_events = []
get_ipython().events.register("pre_run_cell", lambda info: seen_events.append("pre_run_cell"))
get_ipython().events.register("pre_execute", lambda: seen_events.append("pre_execute"))
model = torch.nn.Linear(3, 2)
optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
model(torch.ones(4, 3)).sum().backward()
optimizer.step()
history = [0.5 * step for step in range(100)]
config = {"name": "mlp at 0x7f00deadbeef", "sizes": (3, 2), "raw": b"\\x00\\x01", "nothing": None}
generator = torch.Generator().manual_seed(3)
rng = np.random.default_rng(5)
array = np.arange(6.0).reshape(2, 3)
thing = types.SimpleNamespace(a=1)
def helper(x):
    return x + array.sum()
"""

VISIBLE = (
    "(len(In), len(Out), sorted(k for k in globals() if not k.startswith('_')), list(seen_events), "
    "random.getstate(), np.random.get_state()[1].tolist(), torch.get_rng_state().tolist(), "
    "generator.get_state().tolist(), rng.bit_generator.state)"
)


def test_the_digest_changes_nothing_the_notebook_can_see() -> None:
    with kernel() as k:
        k.ok(SETUP)
        k.ok("np.random.rand(); 1")  # numpy.random imported and drawn from
        before = k.runner.execute(f"_before = {VISIBLE}")
        statecheck.configure(k.runner, False, [(r"\b0x[0-9a-fA-F]{4,}\b", "0x<address>")], timeout=60)
        state = statecheck.record(k.runner, "print(helper(1))", timeout=60)
        statecheck.record(k.runner, "print(helper(1))", timeout=60)
        after = k.runner.execute(f"_after = {VISIBLE}")
        seen = k.ok(
            "print(_after[0] - _before[0], _after[1] - _before[1], _after[2] == _before[2], "
            "_after[3][len(_before[3]):], _after[4:] == _before[4:])"
        ).stdout
        assert after.execution_count == before.execution_count + 1  # the digest requests took no count
    # One more history entry (the cell that read them), no output, no new name, no event but that cell's own,
    # and every RNG state (global and in the namespace) as it was.
    assert seen.strip() == "1 0 True ['pre_execute', 'pre_run_cell'] True", seen
    digested = {"array", "config", "generator", "history", "model", "optimizer", "rng", "seen_events", "_before"}
    assert set(state.names) == digested
    assert state.skipped["np"] == state.skipped["torch"] == "module"
    assert state.skipped["helper"] == "function"
    assert state.skipped["thing"].startswith("SimpleNamespace")
    assert {"<random>", "<numpy.random>", "<torch>"} <= set(state.rngs)
    assert state.names["history"]["leaves"] == 1  # a loss history is one array, not 100 leaves
    assert state.names["model"]["leaves"] == 2 and state.names["optimizer"]["leaves"] > 2
    assert "array" in state.reads and "helper" in state.reads  # helper's global `array` counts as read


def test_same_state_same_digest_and_a_changed_one_differs() -> None:
    with kernel() as k:
        k.ok("import torch\nweights = torch.zeros(1000)\ntag = 'run at 0x7f0011223344'")
        statecheck.configure(k.runner, False, [(r"\b0x[0-9a-fA-F]{4,}\b", "0x<address>")], timeout=60)
        first = statecheck.record(k.runner, "", timeout=60)
        k.ok("tag = 'run at 0x7f5566778899'")
        second = statecheck.record(k.runner, "", timeout=60)
        k.ok("weights[17] += 1e-6")
        third = statecheck.record(k.runner, "", timeout=60)
    assert first.names["tag"] == second.names["tag"]  # the address is sanitized away
    assert first.names["weights"] == second.names["weights"] != third.names["weights"]
