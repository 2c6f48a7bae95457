"""State digests in a real kernel are inert and bounded: no user code runs (counters on every dunder and hook
stay at zero), self and shared references end, an expanded tensor is not materialised, what is over budget is
summarised and listed, and one unreadable value stays local."""

from __future__ import annotations

import json
import re

from ipyrepro.notebooks import statecheck
from tests.kernels import kernel

COUNTERS = """
import collections, dataclasses, sys
import torch
calls = collections.Counter()

def counted(name, result=None):
    def method(self, *args, **kwargs):
        calls[name] += 1
        return result(self, *args, **kwargs) if result else None
    return method

class Key:
    __hash__ = counted("Key.__hash__", lambda self: 7)
    __eq__ = counted("Key.__eq__", lambda self, other: self is other)
    def __repr__(self):
        calls["Key.__repr__"] += 1
        raise ValueError("no repr for you")

class Items(list):
    __iter__ = counted("Items.__iter__", lambda self: list.__iter__(self))
    __len__ = counted("Items.__len__", lambda self: list.__len__(self))
    __getitem__ = counted("Items.__getitem__", lambda self, i: list.__getitem__(self, i))

class Table(dict):
    items = counted("Table.items", lambda self: dict.items(self))
    keys = counted("Table.keys", lambda self: dict.keys(self))
    values = counted("Table.values", lambda self: dict.values(self))
    __iter__ = counted("Table.__iter__", lambda self: dict.__iter__(self))
    __getitem__ = counted("Table.__getitem__", lambda self, k: dict.__getitem__(self, k))

class Opaque:
    def __getattribute__(self, name):
        calls["Opaque.__getattribute__"] += 1
        return object.__getattribute__(self, name)
    def __getattr__(self, name):
        calls["Opaque.__getattr__"] += 1
        raise AttributeError(name)
    __repr__ = counted("Opaque.__repr__", lambda self: "opaque")

@dataclasses.dataclass
class Config:
    lr: float
    def __getattribute__(self, name):
        if name == "lr":
            calls["Config.lr"] += 1
        return object.__getattribute__(self, name)

class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(3, 2)
        self.register_buffer("steps", torch.zeros(()))
    def forward(self, x):
        return self.layer(x)
    def state_dict(self, *args, **kwargs):
        calls["Net.state_dict"] += 1
        return super().state_dict(*args, **kwargs)
    def __getattr__(self, name):
        calls["Net.__getattr__"] += 1
        return super().__getattr__(name)

class Logged(torch.Tensor):
    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        calls["Logged.__torch_function__"] += 1
        return super().__torch_function__(func, types, args, kwargs or {})

net = Net()
net._register_state_dict_hook(lambda *args: calls.update(["state_dict hook"]))
net.register_state_dict_pre_hook(lambda *args: calls.update(["state_dict pre-hook"]))
optimizer = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
optimizer.register_state_dict_pre_hook(lambda *args: calls.update(["optimizer state_dict pre-hook"]))
optimizer.register_state_dict_post_hook(lambda *args: calls.update(["optimizer state_dict post-hook"]))
net(torch.ones(4, 3)).sum().backward()
optimizer.step()
odd_keys = {Key(): 1.5, "plain": 2}
items = Items([1, 2, [3, 4]])
table = Table(a=1, b=[2, 3])
opaque = Opaque()
config = Config(0.1)
logged = torch.arange(6.0).as_subclass(Logged)
calls.clear()
"""


def digest(k, tolerance: bool = False, budget: dict | None = None) -> statecheck.CellState:
    statecheck.configure(k.runner, tolerance, [], 120, **({"budget": budget} if budget else {}))
    return statecheck.record(k.runner, "print(1)", timeout=120)


def test_digesting_runs_no_user_code_counters_on_every_dunder_and_hook_stay_at_zero() -> None:
    with kernel() as k:
        k.ok(COUNTERS)
        plain = digest(k)
        within = digest(k, tolerance=True)
        counts = k.ok("import json\nprint(json.dumps(dict(calls)))").stdout
    assert json.loads(counts) == {}, counts
    for state in (plain, within):
        assert {"odd_keys", "items", "table", "net", "optimizer", "config", "logged"} <= set(state.names), state
    # the key whose repr raises is named by its position, and its value still digested
    assert plain.names["odd_keys"]["leaves"] == 2
    assert plain.names["net"]["leaves"] == 3  # layer.weight, layer.bias, steps: read from the module itself


def test_self_and_shared_references_end_and_aliasing_is_still_compared() -> None:
    with kernel() as k:
        k.ok("a = []\na.append(a)\na.append(a)\nx = [1]\nfor _ in range(40):\n    x = [x, x]")
        state = digest(k)
        k.ok("b = [[1], [1]]\ny = [1]\nfor _ in range(40):\n    y = [y, list(y)] if _ == 39 else [y, y]")
        again = digest(k)
    assert state.names["a"]["leaves"] == 2  # two references back to `a`
    assert state.names["x"]["leaves"] <= 2 * 41 + 1
    assert again.names["y"]["digest"] != again.names["x"]["digest"]  # a copy where x shares: aliasing differs


def test_an_expanded_tensor_is_digested_as_stored_and_adds_no_memory() -> None:
    with kernel() as k:
        k.ok("import resource, torch\nbig = torch.zeros(1).expand(2**28)\nsame = torch.zeros(1).expand(2**28)")
        k.ok("peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss")
        state = digest(k)
        within = digest(k, tolerance=True)
        grown = k.ok("print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before)").stdout
    assert int(grown) < 64 * 1024, f"peak RSS grew by {int(grown) // 1024} MiB"  # ru_maxrss is in KiB
    assert state.names["big"]["digest"] == state.names["same"]["digest"]
    assert within.names["big"]["floats"][0]["stats"]["max"] == 0.0


def test_over_budget_values_are_summarised_listed_and_still_compared() -> None:
    with kernel() as k:
        k.ok("import torch\nrows = [[i] for i in range(50)]\nweights = torch.ones(1000)\nsmall = [1, 2]")
        by_bytes = digest(k, budget={"bytes": 1000})
        by_count = digest(k, budget={"elements": 40})
        k.ok("weights[0] = 2.0")
        after = digest(k, budget={"bytes": 1000})
    assert by_bytes.summarised == {"weights": "4,000 bytes, over the budget of 1,000 bytes per cell"}
    tail, *rest = by_count.summarised  # the rows past the budget: one summary, not one per row
    assert re.fullmatch(r"rows\[\d+:\]", tail) and rest == ["small", "weights"], by_count.summarised
    assert set(by_count.summarised.values()) == {"over the budget of 40 elements per cell"}
    assert {"rows", "small", "weights"} <= set(by_count.names)
    assert after.names["weights"]["digest"] != by_bytes.names["weights"]["digest"]  # the sample changed


def test_sparse_quantized_meta_lazy_and_dispatch_tensors_get_a_record() -> None:
    with kernel() as k:
        k.ok(
            "import torch\n"
            "sparse = torch.eye(3).to_sparse()\n"
            "csr = torch.eye(3).to_sparse_csr()\n"
            "quantized = torch.quantize_per_tensor(torch.ones(4), 0.1, 0, torch.qint8)\n"
            "meta = torch.empty(3, device='meta')\n"
            "lazy = torch.nn.LazyLinear(4)\n"
            "expanded_t = torch.arange(3.0).expand(4, 3).t()\n"
        )
        state = digest(k)
        within = digest(k, tolerance=True)
    for name in ("sparse", "csr", "quantized", "meta", "lazy", "expanded_t"):
        assert name in state.names and name in within.names, (name, state.skipped)
        assert "unsupported" not in state.names[name], state.names[name]
    assert not state.summarised


def test_a_namespace_without_torch_or_numpy_imports_neither_even_with_a_tolerance() -> None:
    with kernel() as k:
        k.ok("import sys\nhistory = [0.5 * i for i in range(100)]\nwords = ['tok'] * 100")
        digest(k, tolerance=True)
        digest(k)
        k.ok("import numpy as np\narray = np.arange(5.0)")
        state = digest(k, tolerance=True)
        imported = k.ok("print('torch' in sys.modules, 'pandas' in sys.modules)").stdout
    assert imported.split() == ["False", "False"]
    assert state.names["array"]["floats"][0]["stats"]["max"] == 4.0
    assert state.names["history"]["leaves"] == 1 and state.names["words"]["leaves"] == 1


BROKEN = """
import torch

class Wrapped(torch.Tensor):
    @staticmethod
    def __new__(cls, inner):
        return torch.Tensor._make_wrapper_subclass(cls, inner.shape, dtype=inner.dtype)
    def __init__(self, inner):
        self.inner = inner
    @classmethod
    def __torch_dispatch__(cls, func, types, args=(), kwargs=None):
        raise RuntimeError("dispatch ran")

broken = torch.nn.Linear(2, 2)
broken.__dict__["_parameters"] = 5
wrapped = Wrapped(torch.ones(3))
fine = torch.arange(4)
"""


def test_an_unreadable_value_is_recorded_where_it_is_and_the_rest_is_digested() -> None:
    with kernel() as k:
        k.ok(BROKEN)
        state = digest(k)
        k.ok("fine += 1")
        after = digest(k)
    assert state.summarised["broken"].startswith("unreadable Linear: TypeError"), state.summarised
    assert "overrides __torch_dispatch__" in state.summarised["wrapped"], state.summarised
    assert {"broken", "wrapped", "fine"} <= set(state.names)
    assert after.names["fine"]["digest"] != state.names["fine"]["digest"]
    assert after.names["broken"]["digest"] == state.names["broken"]["digest"]
