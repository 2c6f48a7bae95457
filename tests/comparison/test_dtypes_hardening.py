"""Every value a cell can hold: every torch and NumPy dtype, 0-d, empty, non-contiguous and sparse.

Each must compare, digest, save and check without error, or be reported as not comparable with the reason.
"""

from __future__ import annotations

import contextlib
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from ipyrepro.comparison import digests
from ipyrepro.comparison import fingerprint as fp
from ipyrepro.comparison.values import NOT_COMPARABLE, Tolerance, compare_values

TORCH_DTYPES = sorted({value for value in vars(torch).values() if isinstance(value, torch.dtype)}, key=str)
NUMPY_DTYPES = [
    *(np.dtype(name) for name in ("?", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "f2", "f4", "f8", "g")),
    *(np.dtype(name) for name in ("c8", "c16", "G", "M8[s]", "m8[ns]", "U3", "S3", "V4")),
    np.dtype([("a", "<i4"), ("b", "<f8")]),
    np.dtype([("a", "u2"), ("b", "f4", (2,))]),
]
TOLERANCES = (Tolerance(), Tolerance(rtol=1e-3, atol=1e-6))
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def make_tensor(dtype: torch.dtype, shape: tuple[int, ...], data: bytes) -> torch.Tensor | None:
    """A tensor of any dtype filled from `data`, or None where torch cannot hold that dtype in that shape."""
    count = math.prod(shape)
    try:
        if dtype == torch.bool:
            return torch.tensor(
                [byte & 1 for byte in data[:count]] + [0] * (count - len(data[:count])), dtype=dtype
            ).reshape(shape)
        size = torch.empty((), dtype=dtype).element_size() if dtype.itemsize else 1
        raw = (data * (count * size // max(len(data), 1) + 1))[: count * size] if data else bytes(count * size)
        return (
            torch.frombuffer(bytearray(raw) or bytearray(1), dtype=torch.uint8)[: count * size]
            .view(dtype)
            .reshape(shape)
        )
    except (RuntimeError, NotImplementedError, TypeError, ValueError):
        try:
            return torch.zeros(shape, dtype=dtype)
        except (RuntimeError, NotImplementedError, TypeError, ValueError):
            return None


def variants(tensor: torch.Tensor) -> dict[str, Any]:
    """The same data as non-contiguous, expanded, conjugated and sparse tensors, where torch allows."""
    out: dict[str, Any] = {"plain": tensor}
    attempts = {
        "transposed": lambda t: t.t() if t.dim() == 2 else t.mT,
        "strided": lambda t: t[::2],
        "expanded": lambda t: t.reshape(-1)[:1].expand(3),
        "conj": lambda t: t.conj(),
        "neg": lambda t: t.conj().imag if t.is_complex() else t._neg_view(),
        "sparse": lambda t: t.to_sparse(),
        "csr": lambda t: t.to_sparse_csr(),
    }
    for name, build in attempts.items():
        with contextlib.suppress(RuntimeError, NotImplementedError, TypeError, ValueError, IndexError):
            out[name] = build(tensor)
    return out


def assert_handled(a: Any, b: Any, tmp_path: Path, identical: bool) -> None:
    """compare, digest, save, load and check: no exception; not comparable only with a reason."""
    for tol in TOLERANCES:
        outcome = compare_values(a, b, "v", tol)
        if outcome.status == NOT_COMPARABLE:
            assert outcome.detail, outcome
        elif identical:
            assert outcome.matched, (outcome.status, outcome.text())
        outcome.text(2)
        outcome.to_dict()
    records = digests.fingerprint({"v": a})
    for record in records.values():
        assert record["kind"] != "unsupported" or record["why"]
    path = tmp_path / "f.json"
    fp.save(path, records, seed=0, runs=2, reproducible=True)
    saved = fp.load(path)
    for tol in TOLERANCES:
        assert fp.check(saved, records, tol, fp.environment(0)).ok
        fp.check(saved, digests.fingerprint({"v": b}), tol, fp.environment(0)).to_dict()


@FUZZ
@given(
    dtype=st.sampled_from(TORCH_DTYPES),
    shape=st.lists(st.integers(0, 4), max_size=3).map(tuple),
    data=st.binary(max_size=96),
    other=st.binary(max_size=96),
    variant=st.sampled_from(["plain", "transposed", "strided", "expanded", "conj", "neg", "sparse", "csr"]),
)
def test_every_torch_dtype_and_shape_is_compared_digested_saved_and_checked(
    tmp_path: Path, dtype: torch.dtype, shape: tuple[int, ...], data: bytes, other: bytes, variant: str
) -> None:
    a, b = make_tensor(dtype, shape, data), make_tensor(dtype, shape, other)
    assume(a is not None and b is not None)
    va, vb = variants(a), variants(b)
    assume(variant in va and variant in vb)
    assert_handled(va[variant], variants(a.clone() if _clonable(a) else a)[variant], tmp_path, identical=True)
    assert_handled(va[variant], vb[variant], tmp_path, identical=False)


def _clonable(tensor: torch.Tensor) -> bool:
    try:
        tensor.clone()
    except (RuntimeError, NotImplementedError):
        return False
    return True


@FUZZ
@given(
    dtype=st.sampled_from(NUMPY_DTYPES),
    shape=st.lists(st.integers(0, 4), max_size=3).map(tuple),
    data=st.binary(max_size=256),
    other=st.binary(max_size=256),
    transpose=st.booleans(),
)
def test_every_numpy_dtype_and_shape_is_compared_digested_saved_and_checked(
    tmp_path: Path, dtype: np.dtype, shape: tuple[int, ...], data: bytes, other: bytes, transpose: bool
) -> None:
    def make(raw: bytes) -> np.ndarray:
        size = math.prod(shape) * dtype.itemsize
        raw = (raw * (size // max(len(raw), 1) + 1))[:size] if raw else bytes(size)
        array = np.frombuffer(raw, dtype=dtype).reshape(shape).copy()
        if dtype.kind == "b":
            array = array.view(np.uint8) & 1
            array = array.astype(bool)
        return array.T if transpose else array

    a, b = make(data), make(other)
    assert_handled(a, a.copy(), tmp_path, identical=True)
    assert_handled(a, b, tmp_path, identical=False)


@pytest.mark.parametrize(
    "value",
    [
        np.array([1, "a", None, [1, 2]], dtype=object),
        np.array([np.arange(3), np.arange(2)], dtype=object),
        np.array([(1, {"k": 2})], dtype=[("a", "i4"), ("b", "O")]),
        np.random.SeedSequence(1234).generate_state(2),
        np.float64(np.nan),
        np.uint64(2**64 - 1),
        np.array(5, dtype=np.uint32),
    ],
    ids=["object", "object-of-arrays", "structured-object", "seedsequence", "np-nan", "np-uint64", "0d-uint32"],
)
def test_numpy_object_structured_and_scalar_values(tmp_path: Path, value: Any) -> None:
    copy = value.copy() if isinstance(value, np.ndarray) else value
    assert_handled(value, copy, tmp_path, identical=True)


def test_object_arrays_that_differ_name_the_element() -> None:
    a = np.array([np.arange(3), np.arange(2)], dtype=object)
    b = np.array([np.arange(3), np.arange(2) + 1], dtype=object)
    outcome = compare_values(a, b, "v")
    assert outcome.status == "differs" and outcome.count == 1 and outcome.first_index == (1,)
    assert "v[1]" in outcome.detail


@pytest.mark.parametrize(
    "cell",
    [
        "v = np.random.SeedSequence(1234).generate_state(2)",
        "v = torch.arange(6).to(torch.uint16).reshape(2, 3).t()",
        "v = torch.tensor([1, 2], dtype=torch.uint64)",
        "v = torch.ones(3, dtype=torch.float8_e4m3fn)" if hasattr(torch, "float8_e4m3fn") else "v = 1",
        "v = torch.zeros(2, 2, dtype=torch.bfloat16) + torch.rand(2, 2).to(torch.bfloat16)",
        "v = torch.ones(3, dtype=torch.complex64).conj()",
        "v = torch.eye(3).to_sparse_csr()",
        "v = torch.tensor(True)",
        "v = np.zeros((0, 3), dtype='u2')",
    ],
)
def test_rerun_save_and_check_hold_any_dtype(ip: Any, tmp_path: Path, cell: str) -> None:
    ip.run_cell("import numpy as np, torch")
    path = tmp_path / "f.json"
    saved = ip.run_cell_magic("repro", f"--seed 1 --save {path}", cell)
    assert saved.error is None and saved.ok, str(saved)
    checked = ip.run_cell_magic("repro", f"--check {path}", cell)
    assert checked.ok, str(checked)
    ip.user_ns.pop("v", None)
