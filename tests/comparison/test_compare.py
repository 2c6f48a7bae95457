"""Comparing values between runs, and `ipyrepro.compare(fn)` with its diagnosis."""

from __future__ import annotations

import dataclasses
import os
import time

import numpy as np
import pytest
import torch

import ipyrepro
from ipyrepro.comparison.values import CLOSE, DIFFERS, IDENTICAL, NOT_COMPARABLE, Tolerance, compare_values
from ipyrepro.core.torchinfo import deterministic_algorithms_mode

NAN = float("nan")


# -- values ----------------------------------------------------------------------


def test_nan_equals_nan_in_the_same_place_but_not_elsewhere() -> None:
    a = torch.tensor([1.0, NAN, 3.0])
    assert compare_values(a, a.clone(), "x").status == IDENTICAL
    moved = torch.tensor([1.0, 3.0, NAN])
    outcome = compare_values(a, moved, "x")
    assert outcome.status == DIFFERS
    assert outcome.count == 2 and outcome.first_index == (1,)
    assert "NaN in one run only" in outcome.detail


def test_nan_payloads_do_not_count_as_a_difference() -> None:
    a = torch.tensor([NAN, 1.0])
    b = a.clone()
    b.view(torch.int32)[0] = 0x7FC00001  # another quiet NaN bit pattern
    assert torch.isnan(b[0]) and not torch.equal(a.view(torch.int32), b.view(torch.int32))
    assert compare_values(a, b, "x").status == IDENTICAL


def test_a_tensor_difference_reports_count_first_index_and_max_diffs() -> None:
    a = torch.zeros(4, 5)
    b = a.clone()
    b[2, 3] = 0.5
    b[3, 0] = -2.0
    outcome = compare_values(a, b, "out")
    assert outcome.status == DIFFERS
    assert (outcome.count, outcome.total, outcome.first_index) == (2, 20, (2, 3))
    assert outcome.max_abs_diff == 2.0
    assert outcome.max_rel_diff == float("inf")  # relative to run 1's value, which is 0
    text = outcome.text()
    assert "2 of 20 elements differ" in text and "first at index [2, 3]" in text and "max abs diff 2" in text


def test_bitwise_default_catches_sign_of_zero_and_tolerance_accepts_small_changes() -> None:
    a = torch.tensor([0.0, 1.0, 2.0])
    b = torch.tensor([-0.0, 1.0, 2.0 + 1e-6])
    bitwise = compare_values(a, b, "x")
    assert bitwise.status == DIFFERS and bitwise.count == 2
    assert "-0.0 vs 0.0" in bitwise.detail
    close = compare_values(a, b, "x", Tolerance(rtol=1e-5))
    assert close.status == CLOSE and close.matched
    assert close.max_abs_diff == float(b[2].double() - a[2].double())  # float32's nearest step above 2
    too_far = compare_values(a, b, "x", Tolerance(atol=1e-9))
    assert too_far.status == DIFFERS and too_far.count == 1 and too_far.first_index == (2,)


def test_dtype_shape_and_device_differences_are_named() -> None:
    x = torch.zeros(2, 3)
    assert "dtype torch.float32 vs torch.float64" in compare_values(x, x.double(), "x").text()
    assert "shape (2, 3) vs (3, 2)" in compare_values(x, x.reshape(3, 2), "x").text()
    meta = torch.zeros(2, 3, device="meta")
    assert "device cpu vs meta" in compare_values(x, meta, "x").text()
    assert compare_values(meta, meta, "x").status == NOT_COMPARABLE


def test_other_dtypes_compare_bitwise() -> None:
    for dtype in (torch.bfloat16, torch.float16, torch.int64, torch.uint8, torch.bool, torch.complex64):
        a = torch.ones(5, dtype=dtype)
        b = a.clone()
        assert compare_values(a, b, "x").status == IDENTICAL, dtype
        b[4] = 0
        outcome = compare_values(a, b, "x")
        assert outcome.status == DIFFERS and outcome.first_index == (4,), dtype


def test_numpy_arrays_and_scalars() -> None:
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    b = a.copy()
    assert compare_values(a, b, "a").status == IDENTICAL
    b[1, 2] += 1
    outcome = compare_values(a, b, "a")
    assert outcome.status == DIFFERS and outcome.first_index == (1, 2) and outcome.max_abs_diff == 1
    assert compare_values(np.array(["a", "b"]), np.array(["a", "c"]), "s").status == DIFFERS
    assert compare_values(NAN, NAN, "f").status == IDENTICAL
    assert compare_values(0.1 + 0.2, 0.3, "f").status == DIFFERS
    assert compare_values(0.1 + 0.2, 0.3, "f", Tolerance(rtol=1e-12)).status == CLOSE
    assert "type int vs float" in compare_values(1, 1.0, "n").text()
    assert compare_values("abc", "abd", "s").status == DIFFERS


def test_nested_containers_name_the_path_of_the_first_difference() -> None:
    a = {"losses": [1.0, 2.0], "stats": ({"w": torch.ones(3)}, "ok")}
    b = {"losses": [1.0, 2.0], "stats": ({"w": torch.tensor([1.0, 1.0, 7.0])}, "ok")}
    outcome = compare_values(a, b, "hist")
    assert outcome.status == DIFFERS
    assert outcome.path == "hist['stats'][0]['w']"
    assert (outcome.leaves_differing, outcome.leaves) == (1, 4)
    assert compare_values(a, dict(a), "hist").status == IDENTICAL
    keys = compare_values({"a": 1}, {"b": 1}, "d")
    assert keys.status == DIFFERS and "only in the first run ['a']" in keys.detail
    assert "length 2 vs 3" in compare_values([1, 2], [1, 2, 3], "l").text()


def test_modules_compare_by_state_dict_and_optimizers_by_state() -> None:
    torch.manual_seed(0)
    first = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    torch.manual_seed(0)
    second = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    assert compare_values(first, second, "model").status == IDENTICAL
    with torch.no_grad():
        second[0].bias[1] += 1e-3
    outcome = compare_values(first, second, "model")
    assert outcome.status == DIFFERS and outcome.path == "model['0.bias']" and outcome.first_index == (1,)

    def stepped(lr: float) -> torch.optim.Optimizer:
        torch.manual_seed(0)
        model = torch.nn.Linear(3, 2)
        optimizer = torch.optim.Adam(model.parameters(), lr=lr)
        model(torch.ones(4, 3)).sum().backward()
        optimizer.step()
        return optimizer

    assert compare_values(stepped(0.1), stepped(0.1), "opt").status == IDENTICAL
    changed = compare_values(stepped(0.1), stepped(0.2), "opt")
    assert changed.status == DIFFERS and changed.path == "opt['param_groups'][0]['lr']"


def test_equality_fallback_and_not_comparable_say_why() -> None:
    @dataclasses.dataclass
    class Config:
        width: int
        weights: torch.Tensor

    assert compare_values(Config(1, torch.ones(2)), Config(1, torch.ones(2)), "c").status == IDENTICAL
    assert compare_values(Config(1, torch.ones(2)), Config(2, torch.ones(2)), "c").path == "c.width"

    class Plain:
        pass

    outcome = compare_values(Plain(), Plain(), "p")
    assert outcome.status == NOT_COMPARABLE and "defines no ==" in outcome.detail

    class Weird:
        def __eq__(self, other: object) -> object:
            return np.array([True, False])

    assert "not True/False" in compare_values(Weird(), Weird(), "w").detail

    class Equal:
        def __init__(self, value: int) -> None:
            self.value = value

        def __eq__(self, other: object) -> bool:
            return isinstance(other, Equal) and other.value == self.value

    assert compare_values(Equal(1), Equal(1), "e").status == IDENTICAL
    assert compare_values(Equal(1), Equal(2), "e").status == DIFFERS


def test_tolerance_is_validated() -> None:
    for bad in (-1, float("nan"), float("inf"), "1e-3", True):
        with pytest.raises(ValueError, match="must be a finite number >= 0"):
            Tolerance(rtol=bad)  # type: ignore[arg-type]


# -- ipyrepro.compare ------------------------------------------------------------


def test_compare_passes_a_seeded_function_and_returns_its_value() -> None:
    def train() -> dict:
        model = torch.nn.Linear(4, 2)
        out = model(torch.randn(8, 4))
        return {"model": model, "loss": out.pow(2).mean(), "noise": np.random.rand(3)}

    report = ipyrepro.compare(train, runs=3, seed=5)
    assert report.ok, report
    assert report.differences == {}
    assert [entry.name for entry in report.entries] == ["model", "loss", "noise"]
    assert report.seed == 5 and report.runs == 3
    assert "REPRODUCIBLE: 3 of 3 compared match (3 runs from seed 5, bitwise)" in str(report)
    assert isinstance(report.value["loss"], torch.Tensor)


def test_compare_names_unseeded_randomness() -> None:
    def noisy() -> dict:
        return {
            "clock": time.perf_counter_ns(),
            "rng": np.random.default_rng().random(4),
            "bytes": os.urandom(8),
            "seeded": torch.rand(3),
        }

    report = ipyrepro.compare(noisy, runs=2)
    assert not report.ok
    assert set(report.differences) == {"clock", "rng", "bytes"}
    assert report.differences["rng"]["count"] == 4 and report.differences["rng"]["run"] == 2
    assert "NOT REPRODUCIBLE: 3 of 4 compared differ" in str(report)
    assert {entry.name: entry.outcome.status for entry in report.entries}["seeded"] == IDENTICAL


def test_compare_uses_the_base_seed_by_default() -> None:
    ipyrepro.seed_all(1234)
    report = ipyrepro.compare(lambda: torch.rand(2), runs=2)
    assert report.seed == 1234
    torch.manual_seed(1234)
    assert torch.equal(report.value, torch.rand(2))


def test_compare_reports_the_run_that_raised() -> None:
    calls = []

    def flaky() -> float:
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("CUDA out of memory (pretend)")
        return 1.0

    report = ipyrepro.compare(flaky, runs=3)
    assert not report.ok
    assert report.error is not None and report.error.run == 2
    assert "run 2 of 3 raised RuntimeError: CUDA out of memory (pretend)" in str(report)
    assert len(calls) == 2  # no run after the failing one


def test_compare_with_tolerance_and_names() -> None:
    jitter = iter([0.0, 1e-7, 5e-7])

    def almost() -> dict:
        return {"x": torch.ones(3) + next(jitter), "label": "same"}

    report = ipyrepro.compare(almost, runs=3, rtol=1e-6, names=["x"])
    assert report.ok and [entry.name for entry in report.entries] == ["x"]
    assert report.entries[0].outcome.status == CLOSE


def test_compare_rejects_bad_arguments_before_running() -> None:
    calls = []
    for kwargs, message in (
        ({"runs": 0}, "runs must be an integer >= 1"),
        ({"runs": 2.5}, "runs must be an integer >= 1"),
        ({"seed": -1}, "seed must satisfy"),
        ({"atol": -1}, "atol must be a finite number"),
        ({"names": ["not a name"]}, "is not a name"),
        ({"check": "/nonexistent/f.json"}, "does not exist"),
        ({"save": "/nonexistent/dir/f.json"}, "does not exist"),
    ):
        with pytest.raises(ValueError, match=message):
            ipyrepro.compare(lambda: calls.append(1), **kwargs)
    with pytest.raises(ValueError, match="needs a callable"):
        ipyrepro.compare(42)  # type: ignore[arg-type]
    assert calls == []


# -- diagnosis -------------------------------------------------------------------


def _nondeterministic_put() -> torch.Tensor:
    """`put_` is the CPU op that torch 2.13 reports as having no deterministic implementation."""
    target = torch.zeros(4)
    target.put_(torch.tensor([0, 1]), torch.ones(2))
    return target + torch.tensor(float(time.perf_counter_ns() % 1000))


def test_diagnosis_names_deterministic_mode_off_and_the_ops_that_warned() -> None:
    assert deterministic_algorithms_mode() == "off"
    report = ipyrepro.compare(_nondeterministic_put, runs=2)
    assert not report.ok and report.diagnosis is not None
    diagnosis = report.diagnosis
    assert any("deterministic algorithms were off" in text for text in diagnosis.settings)
    assert diagnosis.ops == ["put_"]
    assert diagnosis.rerun == "done"
    assert "ops without a deterministic implementation (rerun with warn_only=True): put_" in str(report)
    assert deterministic_algorithms_mode() == "off"  # the user's setting is back


@pytest.mark.parametrize("mode", ["warn", "error"])
def test_the_diagnosis_rerun_restores_the_users_deterministic_setting(mode: str) -> None:
    ipyrepro.configure(deterministic_algorithms=mode)
    report = ipyrepro.compare(lambda: time.perf_counter_ns(), runs=2)
    assert report.diagnosis is not None and report.diagnosis.rerun == "done"
    assert deterministic_algorithms_mode() == mode
    warned = [text for text in report.diagnosis.settings if "warn-only" in text]
    assert bool(warned) == (mode == "warn")


def test_no_diagnosis_when_everything_matches_and_when_turned_off() -> None:
    assert ipyrepro.compare(lambda: torch.rand(3)).diagnosis is None
    assert ipyrepro.compare(lambda: time.perf_counter_ns(), diagnose=False).diagnosis is None


def test_the_diagnosis_rerun_leaves_the_rng_as_the_last_run_left_it() -> None:
    report = ipyrepro.compare(lambda: (torch.rand(1), time.perf_counter_ns()), runs=2, seed=3)
    assert report.diagnosis is not None
    after = torch.rand(1)
    torch.manual_seed(3)
    torch.rand(1)
    assert torch.equal(after, torch.rand(1))


def test_report_renders_as_html_with_each_name() -> None:
    report = ipyrepro.compare(lambda: {"a<b": 1, "t": time.perf_counter_ns()}, runs=2)
    page = report._repr_html_()
    assert "a&lt;b" in page and "differs" in page and "Diagnosis" in page
    assert report.to_dict()["differences"].keys() == {"t"}


def test_random_generators_compare_by_state() -> None:
    import random

    assert compare_values(np.random.default_rng(1), np.random.default_rng(1), "g").status == IDENTICAL
    unseeded = compare_values(np.random.default_rng(), np.random.default_rng(), "g")
    assert unseeded.status == DIFFERS and unseeded.path.startswith("g.bit_generator.state")
    assert compare_values(random.Random(3), random.Random(3), "r").status == IDENTICAL
    assert compare_values(random.Random(3), random.Random(4), "r").path.startswith("r.getstate()")
    legacy = compare_values(np.random.RandomState(1), np.random.RandomState(2), "s")
    assert legacy.status == DIFFERS and legacy.path.startswith("s.get_state()")
    assert compare_values(torch.Generator().manual_seed(1), torch.Generator().manual_seed(2), "t").status == DIFFERS


def test_a_callable_that_returns_the_same_object_changed_in_place_is_caught() -> None:
    state = torch.zeros(3)

    def step() -> torch.Tensor:
        state.add_(torch.rand(3))  # accumulates across calls: not reproducible
        return state

    report = ipyrepro.compare(step, runs=2)
    assert not report.ok and report.differences["result"]["count"] == 3
    assert report.value is state
