"""The digest walk and tensor digests in-process: views digest like their contiguous copies (chunk by chunk),
expanded views as stored, references and budgets end every walk, and sanitizers are skipped only when they
cannot match."""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest
import torch

from ipyrepro.comparison import digests, tensordigest
from ipyrepro.comparison.statedigest import StateDigester, required_literals
from ipyrepro.comparison.walk import Budget, Reference, Summary, Walk, key_text


def test_a_non_contiguous_view_digests_like_its_contiguous_copy_chunk_by_chunk(monkeypatch) -> None:
    monkeypatch.setattr(tensordigest, "CHUNK", 64)  # many chunks, rows split too
    base = torch.arange(24 * 10, dtype=torch.float32).reshape(24, 10)
    for view in (base.t(), base[:, ::3], base.reshape(4, 6, 10).permute(2, 0, 1)):
        assert not view.is_contiguous()
        assert digests.tensor_digest(view) == digests.tensor_digest(view.contiguous())
    bf16 = base.to(torch.bfloat16).t()
    assert digests.tensor_digest(bf16) == digests.tensor_digest(bf16.contiguous())


def test_an_expanded_view_is_digested_from_its_storage_and_still_tells_values_apart() -> None:
    zeros, ones = torch.zeros(1).expand(2**28), torch.ones(1).expand(2**28)
    assert tensordigest.hashed_bytes(zeros) == 4
    assert digests.tensor_digest(zeros) != digests.tensor_digest(ones)
    assert digests.tensor_digest(zeros) != digests.tensor_digest(torch.zeros(1).expand(2**27))
    broadcast = np.broadcast_to(np.arange(3.0), (10**6, 3))
    assert digests.array_digest(broadcast) != digests.array_digest(np.broadcast_to(np.arange(3.0) + 1, (10**6, 3)))


def test_transposed_arrays_digest_like_their_copies() -> None:
    array = np.arange(60.0).reshape(6, 10)
    assert digests.array_digest(array.T) == digests.array_digest(np.ascontiguousarray(array.T))
    assert digests.array_digest(array[::-1]) == digests.array_digest(array[::-1].copy())


def test_references_within_a_value_and_aliasing_compared() -> None:
    shared = [1.0]
    walk = Walk()
    leaves = walk.add({"a": shared, "b": shared, "c": [1.0]}, "x")
    assert leaves[1] == ("x['b']", Reference("x['a']", "list"))
    assert leaves[2] == ("x['c'][0]", 1.0)


def test_tied_weights_are_one_parameter_and_a_reference() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(2, 2, bias=False), torch.nn.Linear(2, 2, bias=False))
    model[1].weight = model[0].weight
    paths = [(path, type(leaf).__name__) for path, leaf in digests.leaves(model, "m")]
    assert paths == [("m['0.weight']", "Parameter"), ("m['1.weight']", "Reference")]


def test_budgets_summarise_the_rest_of_a_container_once() -> None:
    walk = Walk(Budget(elements=10))
    leaves = walk.add(list(range(100)) + [[1]], "x")  # a mixed list: walked item by item
    assert isinstance(leaves[-1][1], Summary) and leaves[-1][0] == "x[9:]"
    assert walk.summarised == {"x[9:]": "over the budget of 10 elements per cell"}
    deep: list = []
    for _ in range(200):
        deep = [deep]
    walk = Walk(Budget(depth=50))
    (path, leaf), *_ = walk.add(deep, "d")
    assert isinstance(leaf, Summary) and path == "d" + "[0]" * 51 and "nested more than 50" in leaf.reason


def test_keys_of_user_classes_are_named_by_position() -> None:
    class Key:
        def __repr__(self) -> str:
            raise AssertionError("repr ran")

    assert key_text(("a", 1, None), 0) == "('a', 1, None)"
    assert key_text(Key(), 3) == "#3:Key"
    assert key_text("x" * 500, 2) == "#2:str"


def test_dataclass_fields_are_read_from_the_instance_dict() -> None:
    @dataclasses.dataclass
    class Config:
        lr: float
        names: list

    leaves = digests.leaves(Config(0.1, ["a"]), "c")
    assert leaves == [("c.lr", 0.1), ("c.names[0]", "a")]

    @dataclasses.dataclass(slots=True)
    class Slotted:
        size: int

    assert digests.leaves(Slotted(3), "s") == [("s.size", 3)]


def test_sanitizer_words_are_read_from_the_pattern() -> None:
    assert required_literals(re.compile(r"\b0x[0-9a-f]{4,}\b")) == ("0x",)
    assert required_literals(re.compile(r"^CPU times: .*$", re.M)) == ("CPU times: ",)
    assert required_literals(re.compile(r"[a-z]+\d")) is None
    assert required_literals(re.compile("abc", re.I)) is None
    digester = StateDigester()
    digester.configure(False, [(r"\b0x[0-9a-fA-F]{4,}\b", "0x<address>"), (r"(?:/var/tmp|/tmp)/\S*", "<tmp>")])
    assert digester.sanitized("at 0xdeadbeef in /tmp/x1 ok") == "at 0x<address> in <tmp> ok"


@pytest.mark.parametrize("tolerance", [False, True])
def test_bulk_lists_digest_in_one_record(tolerance: bool) -> None:
    digester = StateDigester()
    digester.configure(tolerance, [])
    answer = digester.digest(
        {"words": ["a", "b"] * 50, "losses": [0.5] * 40, "big": [2**70] * 20, "mixed": [1, 2.0] * 10}, {}, None
    )
    names = answer["names"]
    assert names["words"]["leaves"] == names["losses"]["leaves"] == names["big"]["leaves"] == 1
    assert names["mixed"]["leaves"] == 20
    if tolerance:
        assert names["losses"]["floats"][0]["stats"]["mean"] == 0.5
