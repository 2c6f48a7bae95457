"""compare() keeps run 1's results without copying them, yet still catches a later run changing them in place."""

from __future__ import annotations

import numpy as np
import torch

import ipyrepro
from ipyrepro.comparison.aliasing import keep_run_one

STATE_TENSOR = torch.zeros(4)


def test_fresh_results_are_kept_as_they_are_and_reachable_ones_are_copied() -> None:
    layer = torch.nn.Linear(2, 2)
    shared = {
        "global": STATE_TENSOR,
        "view": STATE_TENSOR[1:3],
        "detached_weight": layer.weight.detach(),  # a new tensor object on the module's storage
        "array_view": np.arange(4.0)[1:],
    }
    values = {"fresh": torch.rand(3), "fresh_array": np.arange(3.0), "number": 3, **shared}
    fresh_ids = {name: id(values[name]) for name in ("fresh", "fresh_array")}  # ids hold no reference
    kept, by_reference = keep_run_one(values)
    assert by_reference == {"fresh", "fresh_array"}
    assert {name: id(kept[name]) for name in fresh_ids} == fresh_ids
    for name, original in shared.items():
        assert kept[name] is not original
        assert (kept[name] == original).all()
    assert kept["detached_weight"].untyped_storage().data_ptr() != layer.weight.untyped_storage().data_ptr()


def test_a_result_that_shares_a_modules_storage_changed_by_the_next_run_is_caught() -> None:
    layer = torch.nn.Linear(2, 2)

    def train() -> dict[str, torch.Tensor]:
        with torch.no_grad():
            layer.weight.add_(1.0)  # in place, every run: run 1's result would change with it
        return {"weight": layer.weight.detach(), "fresh": layer.weight.detach().clone() * 0}

    report = ipyrepro.compare(train, runs=3)
    assert not report.ok
    assert set(report.differences) == {"weight"}
    assert report.differences["weight"]["count"] == 4


def test_a_fresh_result_each_run_compares_as_before() -> None:
    data = torch.rand(1000)
    assert ipyrepro.compare(lambda: data.clone(), runs=3).ok
    assert ipyrepro.compare(lambda: torch.rand(1000), runs=2).ok  # every run starts from the same seed
    counter = iter(range(10))
    assert not ipyrepro.compare(lambda: torch.full((3,), float(next(counter))), runs=2).ok


def test_memory_a_later_run_hands_back_again_is_reported_not_silently_passed() -> None:
    buffer = np.zeros(3)

    def accumulate() -> torch.Tensor:
        buffer[:] += 1.0  # numpy memory that torch cannot see is shared
        return torch.from_numpy(buffer)

    report = ipyrepro.compare(accumulate, runs=2)
    entry = next(entry for entry in report.entries if entry.name == "result")
    assert entry.outcome.status == "not comparable"
    assert "returned run 1's object (or one sharing its memory) again" in entry.outcome.detail
