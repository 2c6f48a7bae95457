"""Compare two runs' values: bitwise by default, within rtol/atol when asked, on the device the data is on.

Tensors first go through one `torch.equal` over their bits (the fast path, about the
cost of `torch.equal` itself); only when that fails is the detail computed, and
only from the elements that changed. NaN equals NaN in the same place.
"""

from __future__ import annotations

import dataclasses
import math
import random
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..core.numpyrandom import generator_types

IDENTICAL = "identical"
CLOSE = "within tolerance"
DIFFERS = "differs"
NOT_COMPARABLE = "not comparable"
MISSING = "missing"
SINGLE = "single run"  # runs=1: recorded (for --save/--check), nothing to compare with
MATCHED = (IDENTICAL, CLOSE, SINGLE)
_RANK = {SINGLE: 0, IDENTICAL: 0, CLOSE: 1, NOT_COMPARABLE: 2, DIFFERS: 3, MISSING: 3}

_BITS = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}
# Integer dtypes torch compares natively; any other dtype (uint16/32/64 and bits* have no != on CPU) by its bits.
_NATIVE_INTEGERS = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)


def rank(status: str) -> int:
    """How bad a status is: identical < within tolerance < not comparable < differs/missing."""
    return _RANK[status]


@dataclass(frozen=True)
class Tolerance:
    """rtol/atol as in `torch.isclose`; both zero means bitwise equality."""

    rtol: float = 0.0
    atol: float = 0.0

    def __post_init__(self) -> None:
        for name in ("rtol", "atol"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0; got {value!r}")

    @property
    def exact(self) -> bool:
        return self.rtol == 0 and self.atol == 0

    def __str__(self) -> str:
        return "bitwise" if self.exact else f"rtol={self.rtol:g}, atol={self.atol:g}"


@dataclass
class Outcome:
    """How one value (or one leaf inside it) compared between the reference run and another run."""

    status: str
    path: str
    detail: str = ""
    max_abs_diff: float | None = None
    max_rel_diff: float | None = None
    count: int | None = None  # elements that differ (beyond the tolerance)
    total: int | None = None  # elements compared
    first_index: tuple[int, ...] | None = None
    leaves_differing: int = 0
    leaves: int = 1

    @property
    def matched(self) -> bool:
        return self.status in MATCHED

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        if self.first_index is not None:
            data["first_index"] = list(self.first_index)
        if self.leaves == 1:
            del data["leaves"], data["leaves_differing"]
        return {key: value for key, value in data.items() if value is not None and value != ""}

    def text(self, run: int | None = None) -> str:
        """One line: what differs and by how much (`run`: the run that differed from run 1)."""
        head, details = self.head(run), self.details()
        return head + (": " + details if details else "")

    def head(self, run: int | None = None) -> str:
        """The status, with the run that differed and where inside a container."""
        head = self.status
        if run is not None and self.status not in (IDENTICAL, SINGLE, NOT_COMPARABLE):
            head += f" in run {run} vs run 1"
        if self.leaves > 1 and self.status not in (IDENTICAL, SINGLE):
            head += f" ({self.leaves_differing} of {self.leaves} entries; first at {self.path})"
        return head

    def details(self) -> str:
        """What differs and by how much, comma-separated; empty when identical."""
        if self.status in (IDENTICAL, SINGLE):
            return ""
        parts = [self.detail] if self.detail else []
        if self.count is not None and self.total is not None and self.status == CLOSE:
            parts.append(f"{self.count:,} of {self.total:,} elements differ, all within the tolerance")
        elif self.count is not None and self.total is not None and self.status != NOT_COMPARABLE:
            parts.append(f"{self.count:,} of {self.total:,} elements differ")
        if self.first_index is not None:
            parts.append(f"first at index {list(self.first_index)}")
        if self.max_abs_diff is not None:
            parts.append(f"max abs diff {self.max_abs_diff:.3g}")
        if self.max_rel_diff is not None:
            parts.append(f"max rel diff {self.max_rel_diff:.3g}")
        return ", ".join(parts)


def compare_values(a: Any, b: Any, path: str, tol: Tolerance = Tolerance()) -> Outcome:
    """Compare `a` (the reference run) with `b`; containers and modules are walked, the worst leaf reported."""
    leaves: list[Outcome] = []
    _walk(a, b, path, tol, leaves, 0)
    worst = max(leaves, key=lambda leaf: _RANK[leaf.status])
    result = dataclasses.replace(worst)
    result.leaves = len(leaves)
    result.leaves_differing = sum(not leaf.matched for leaf in leaves)
    return result


def _walk(a: Any, b: Any, path: str, tol: Tolerance, out: list[Outcome], depth: int) -> None:
    if depth > 100:
        out.append(Outcome(NOT_COMPARABLE, path, "nested more than 100 levels deep"))
        return
    if type(a) is not type(b) and _type_name(a) != _type_name(b):
        # A class defined in the rerun cell is a new class object each run: same name counts as same type.
        out.append(Outcome(DIFFERS, path, f"type {_type_name(a)} vs {_type_name(b)}"))
        return
    if isinstance(a, torch.Tensor):
        out.append(compare_tensors(a, b, path, tol))
    elif isinstance(a, np.ndarray):
        out.append(_compare_arrays(a, b, path, tol))
    elif isinstance(a, (float, np.floating)):
        out.append(_compare_floats(float(a), float(b), path, tol))
    elif isinstance(a, (complex, np.complexfloating)):
        out.append(_compare_complex(complex(a), complex(b), path, tol))
    elif isinstance(a, (bool, int, str, bytes, type(None), np.integer, np.bool_)):
        out.append(Outcome(IDENTICAL, path) if a == b else Outcome(DIFFERS, path, f"{_short(a)} vs {_short(b)}"))
    elif isinstance(a, (list, tuple)):
        if len(a) != len(b):
            out.append(Outcome(DIFFERS, path, f"length {len(a)} vs {len(b)}"))
            return
        for index, (x, y) in enumerate(zip(a, b)):
            _walk(x, y, f"{path}[{index}]", tol, out, depth + 1)
        if not a:
            out.append(Outcome(IDENTICAL, path))
    elif isinstance(a, dict):
        _walk_dicts(a, b, path, tol, out, depth)
    elif isinstance(a, (torch.nn.Module, torch.optim.Optimizer)):
        _walk_dicts(a.state_dict(), b.state_dict(), path, tol, out, depth)
    elif isinstance(a, torch.Generator):
        out.append(compare_tensors(a.get_state(), b.get_state(), f"{path}.get_state()", Tolerance()))
    elif isinstance(a, (random.Random, *generator_types())):
        # Generators compare by state: an unseeded one shows up here, not only in what it drew.
        suffix, state_a = generator_state(a)
        _walk(state_a, generator_state(b)[1], f"{path}{suffix}", tol, out, depth + 1)
    elif dataclasses.is_dataclass(a):
        for item in dataclasses.fields(a):
            _walk(getattr(a, item.name), getattr(b, item.name), f"{path}.{item.name}", tol, out, depth + 1)
    else:
        out.append(_compare_by_eq(a, b, path))


def _walk_dicts(a: dict, b: dict, path: str, tol: Tolerance, out: list[Outcome], depth: int) -> None:
    only_a = [key for key in a if key not in b]
    only_b = [key for key in b if key not in a]
    if only_a or only_b:
        detail = "keys differ: " + "; ".join(
            text
            for text in (
                f"only in the first run {_keys(only_a)}" if only_a else "",
                f"only in the other run {_keys(only_b)}" if only_b else "",
            )
            if text
        )
        out.append(Outcome(DIFFERS, path, detail))
    for key in a:
        if key in b:
            _walk(a[key], b[key], f"{path}[{key!r}]", tol, out, depth + 1)
    if not a and not b:
        out.append(Outcome(IDENTICAL, path))


def _compare_by_eq(a: Any, b: Any, path: str) -> Outcome:
    kind = type(a)
    if kind.__eq__ is object.__eq__:
        return Outcome(
            NOT_COMPARABLE,
            path,
            f"{_type_name(a)} defines no == (equality is identity), so two runs' objects cannot be compared; "
            "compare its data instead (e.g. assign the fields you care about to names)",
        )
    try:
        equal = a == b
        if isinstance(equal, (bool, np.bool_)):
            return Outcome(IDENTICAL, path) if equal else Outcome(DIFFERS, path, f"{_short(a)} != {_short(b)}")
        return Outcome(NOT_COMPARABLE, path, f"{_type_name(a)}'s == returned {_type_name(equal)}, not True/False")
    except Exception as error:
        return Outcome(NOT_COMPARABLE, path, f"{_type_name(a)}'s == raised {type(error).__name__}: {error}")


# -- tensors ---------------------------------------------------------------------


def compare_tensors(a: torch.Tensor, b: torch.Tensor, path: str, tol: Tolerance = Tolerance()) -> Outcome:
    """dtype, shape and device first; then values on their own device, NaN equal to NaN in the same place."""
    for what, x, y in (
        ("dtype", a.dtype, b.dtype),
        ("shape", tuple(a.shape), tuple(b.shape)),
        ("device", a.device, b.device),
        ("layout", a.layout, b.layout),
    ):
        if x != y:
            return Outcome(DIFFERS, path, f"{what} {x} vs {y}")
    if a.device.type == "meta":
        return Outcome(NOT_COMPARABLE, path, "meta tensors hold no data")
    try:
        if a.is_sparse:
            a, b = a.coalesce(), b.coalesce()
            indices = compare_tensors(a.indices(), b.indices(), f"{path}.indices()")
            return indices if not indices.matched else compare_tensors(a.values(), b.values(), f"{path}.values()", tol)
        if a.layout in _COMPRESSED:
            return _compare_compressed(a, b, path, tol)
        if a.layout != torch.strided:
            return Outcome(NOT_COMPARABLE, path, f"layout {a.layout} is not supported; compare .to_dense()")
        if a.is_quantized:
            a, b = a.dequantize(), b.dequantize()
        if _bits_equal(a, b):
            return Outcome(IDENTICAL, path, total=a.numel())
        return _tensor_detail(a, b, path, tol)
    except (RuntimeError, NotImplementedError, TypeError) as error:  # a dtype torch has few kernels for
        why = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        return Outcome(NOT_COMPARABLE, path, f"torch cannot compare {a.dtype} values on {a.device} ({why})")


_COMPRESSED = tuple(
    getattr(torch, name) for name in ("sparse_csr", "sparse_csc", "sparse_bsr", "sparse_bsc") if hasattr(torch, name)
)


def _compare_compressed(a: torch.Tensor, b: torch.Tensor, path: str, tol: Tolerance) -> Outcome:
    """CSR/CSC/BSR/BSC: the same layout and the same dense values (the index arrays follow from them)."""
    if a.layout != b.layout:
        return Outcome(DIFFERS, path, f"layout {a.layout} vs {b.layout}")
    try:
        dense_a, dense_b = a.to_dense(), b.to_dense()
    except (RuntimeError, NotImplementedError) as error:
        return Outcome(NOT_COMPARABLE, path, f"layout {a.layout} cannot be made dense here ({error})")
    return compare_tensors(dense_a, dense_b, f"{path}.to_dense()", tol)


def _bits(t: torch.Tensor) -> torch.Tensor:
    if t.is_complex():
        t = torch.view_as_real(t)
    if t.dtype not in _NATIVE_INTEGERS:
        return t.view(_BITS[t.element_size()])
    return t


def _bits_equal(a: torch.Tensor, b: torch.Tensor) -> bool:
    """One pass over both tensors: the fast path for the common case of identical runs."""
    try:
        return bool(torch.equal(_bits(a), _bits(b)))
    except (RuntimeError, KeyError):  # a dtype without a same-size integer view
        return False


def _changed_positions(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Flat indices of elements whose bits differ, except where both are NaN (any NaN equals any NaN).

    One elementwise pass and one nonzero over the whole tensors; the NaN test runs only on the
    (usually few) changed elements.
    """
    if a.is_complex():
        a, b = torch.view_as_real(a), torch.view_as_real(b)
        positions = _changed_positions(a, b)
        return torch.unique(positions // 2)  # back to complex element indices, still sorted
    try:
        changed = _bits(a) != _bits(b)
    except (RuntimeError, KeyError):
        changed = a != b
    positions = changed.reshape(-1).nonzero().squeeze(1)
    if a.dtype.is_floating_point and positions.numel():
        x_nan = torch.isnan(a.reshape(-1)[positions])
        if bool(x_nan.any()):  # boolean indexing is slow: only when there is a NaN to drop
            positions = positions[~(x_nan & torch.isnan(b.reshape(-1)[positions]))]
    return positions


_DETAIL_CHUNK = 1 << 24  # elements per step of the detail pass: bounds its extra memory


@dataclass
class _Tally:
    """The detail pass's running totals over chunks."""

    changed: int = 0
    failing: int = 0
    first_changed: int | None = None
    first_failing: int | None = None
    one_nan: int = 0
    bits_only: int = 0
    max_abs: float | None = None
    max_rel: float | None = None

    def add(
        self, offset: int, positions: torch.Tensor, failing: torch.Tensor, x: torch.Tensor, y: torch.Tensor
    ) -> None:
        self.changed += positions.numel()
        self.failing += failing.numel()
        if self.first_changed is None:
            self.first_changed = offset + int(positions[0].item())
        if self.first_failing is None and failing.numel():
            self.first_failing = offset + int(failing[0].item())
        if x.dtype == torch.bool:
            return
        x, y = _widened(x), _widened(y)
        if x.is_floating_point() or x.is_complex():
            x_nan, y_nan = torch.isnan(x), torch.isnan(y)
            if bool(x_nan.any()) or bool(y_nan.any()):  # boolean indexing is slow: only when needed
                one_nan = x_nan ^ y_nan
                self.one_nan += int(one_nan.sum().item())
                x, y = x[~one_nan], y[~one_nan]
            if x.numel() == 0:
                return
            equal = x == y  # changed bits, same value: -0.0 vs 0.0
            self.bits_only += int(equal.sum().item())
            diff = (x - y).abs().masked_fill(equal, 0)
        else:
            diff = (x - y).abs()
        real = diff.real.dtype if diff.is_complex() else diff.dtype
        rel = (diff / x.abs()).masked_fill(diff == 0, 0).to(real)  # relative to run 1; x/0 -> inf
        self.max_abs = max(self.max_abs or 0.0, float(diff.max().item()))
        self.max_rel = max(self.max_rel or 0.0, float(rel.max().item()))

    def notes(self) -> str:
        notes = []
        if self.one_nan:
            notes.append(f"NaN in one run only at {self.one_nan:,} elements")
        if self.bits_only:
            notes.append(f"{self.bits_only:,} differ only in bits (e.g. -0.0 vs 0.0)")
        return "; ".join(notes)


def _widened(t: torch.Tensor) -> torch.Tensor:
    """A dtype to take differences in: float32 and float64 as they are (their differences are exact or
    nearly so), narrower floats as float32, integers as float64."""
    if t.is_complex() or t.dtype in (torch.float32, torch.float64):
        return t
    return t.to(torch.float32 if t.dtype.is_floating_point else torch.float64)


def _tensor_detail(a: torch.Tensor, b: torch.Tensor, path: str, tol: Tolerance) -> Outcome:
    """Count, first index and max diffs, chunk by chunk over the changed elements only, on the tensors' device."""
    flat_a, flat_b = a.reshape(-1), b.reshape(-1)
    tally = _Tally()
    for offset in range(0, flat_a.numel(), _DETAIL_CHUNK):
        chunk_a, chunk_b = flat_a[offset : offset + _DETAIL_CHUNK], flat_b[offset : offset + _DETAIL_CHUNK]
        positions = _changed_positions(chunk_a, chunk_b)
        if positions.numel() == 0:
            continue
        x, y = chunk_a[positions], chunk_b[positions]
        if tol.exact or a.dtype == torch.bool:
            failing = positions
        else:
            failing = positions[~torch.isclose(y, x, rtol=tol.rtol, atol=tol.atol, equal_nan=True)]  # vs run 1
        tally.add(offset, positions, failing, x, y)
    if tally.changed == 0:  # only NaN payloads differ
        return Outcome(IDENTICAL, path, total=a.numel())
    first = tally.first_failing if tally.failing else tally.first_changed
    assert first is not None
    first_index = tuple(int(i) for i in np.unravel_index(first, tuple(a.shape))) if a.dim() else None
    return Outcome(
        CLOSE if tally.failing == 0 else DIFFERS,
        path,
        tally.notes(),
        max_abs_diff=tally.max_abs,
        max_rel_diff=tally.max_rel,
        count=tally.failing or tally.changed,
        total=a.numel(),
        first_index=first_index,
    )


# -- arrays and scalars ----------------------------------------------------------


def _compare_arrays(a: np.ndarray, b: np.ndarray, path: str, tol: Tolerance) -> Outcome:
    if a.dtype != b.dtype:
        return Outcome(DIFFERS, path, f"dtype {a.dtype} vs {b.dtype}")
    if a.shape != b.shape:
        return Outcome(DIFFERS, path, f"shape {a.shape} vs {b.shape}")
    try:
        ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    except (TypeError, ValueError, RuntimeError):  # object, string, datetime, negative strides...
        ta = tb = None
    if ta is not None:
        return compare_tensors(ta, tb, path, tol)
    if a.dtype == object:
        return _compare_object_arrays(a, b, path, tol)
    try:
        # The same bytes are the same values (NaN and NaT included); else compare values, NaN/NaT equal.
        equal = np.ascontiguousarray(a).tobytes() == np.ascontiguousarray(b).tobytes() or bool(
            np.array_equal(a, b, equal_nan=a.dtype.kind in "fcmM")
        )
    except (TypeError, ValueError):
        try:
            equal = bool(np.array_equal(a, b))
        except Exception as error:  # e.g. structured arrays with object fields
            return Outcome(NOT_COMPARABLE, path, f"arrays of dtype {a.dtype} cannot be compared ({error})")
    if equal:
        return Outcome(IDENTICAL, path, total=a.size)
    try:
        with np.errstate(invalid="ignore"):  # NaT and NaN compare unequal: that is the answer, not a warning
            mask = np.asarray(a != b)
        count, first = int(mask.sum()), tuple(int(i) for i in np.unravel_index(int(np.argmax(mask)), a.shape))
        return Outcome(DIFFERS, path, count=count, total=a.size, first_index=first if a.ndim else None)
    except Exception:
        return Outcome(DIFFERS, path, f"arrays of dtype {a.dtype} differ")


def _compare_object_arrays(a: np.ndarray, b: np.ndarray, path: str, tol: Tolerance) -> Outcome:
    """Element by element, each compared as a value (an object array may hold arrays, lists, anything)."""
    differing: list[tuple[tuple[int, ...], Outcome]] = []
    for index in np.ndindex(a.shape):
        outcome = compare_values(a[index], b[index], f"{path}[{', '.join(map(str, index))}]", tol)
        if not outcome.matched:
            differing.append((index, outcome))
    if not differing:
        return Outcome(IDENTICAL, path, total=a.size)
    worst = max((outcome for _, outcome in differing), key=lambda outcome: _RANK[outcome.status])
    index, first = differing[0]
    return Outcome(
        worst.status,
        path,
        f"{first.path}: {first.text()}",
        count=len(differing),
        total=a.size,
        first_index=index if a.ndim else None,
    )


def _compare_floats(a: float, b: float, path: str, tol: Tolerance) -> Outcome:
    if (a == b and math.copysign(1, a) == math.copysign(1, b)) or (math.isnan(a) and math.isnan(b)):
        return Outcome(IDENTICAL, path)
    diff = abs(a - b) if not (math.isnan(a) or math.isnan(b)) else None
    rel = None if diff is None else (diff / abs(a) if a else math.inf)
    if diff is not None and not tol.exact and diff <= tol.atol + tol.rtol * abs(a):
        return Outcome(CLOSE, path, f"{a!r} vs {b!r}", max_abs_diff=diff, max_rel_diff=rel)
    return Outcome(DIFFERS, path, f"{a!r} vs {b!r}", max_abs_diff=diff, max_rel_diff=rel)


def _compare_complex(a: complex, b: complex, path: str, tol: Tolerance) -> Outcome:
    real = _compare_floats(a.real, b.real, path, tol)
    imag = _compare_floats(a.imag, b.imag, path, tol)
    worst = max((real, imag), key=lambda outcome: _RANK[outcome.status])
    if worst.status == IDENTICAL:
        return worst
    return Outcome(worst.status, path, f"{a!r} vs {b!r}", max_abs_diff=abs(a - b) if a == a and b == b else None)


def generator_state(generator: Any) -> tuple[str, Any]:
    """(path suffix, state) of a NumPy or Python random generator, as plain data."""
    if isinstance(generator, random.Random):  # before NumPy's: checking those would import numpy.random
        return ".getstate()", generator.getstate()
    if isinstance(generator, np.random.Generator):
        return ".bit_generator.state", generator.bit_generator.state
    return ".get_state()", generator.get_state(legacy=False)


def _type_name(value: Any) -> str:
    kind = type(value)
    return (
        kind.__qualname__ if kind.__module__ in ("builtins", "__main__") else f"{kind.__module__}.{kind.__qualname__}"
    )


def _short(value: Any, limit: int = 60) -> str:
    try:
        text = repr(value)
    except Exception:
        text = f"<{_type_name(value)}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _keys(keys: list[Any]) -> str:
    shown = ", ".join(repr(key) for key in keys[:5])
    return f"[{shown}{', ...' if len(keys) > 5 else ''}]"


def comparable_automatically(value: Any) -> bool:
    """Names bound to modules, functions or classes are not compared unless asked for with --vars."""
    from .snapshot import is_shared

    return not is_shared(value) and not _is_ipython_internal(value)


def _is_ipython_internal(value: Any) -> bool:
    module = type(value).__module__ or ""
    return module.startswith("IPython.") and "IPython" in sys.modules


__all__ = [
    "CLOSE",
    "DIFFERS",
    "IDENTICAL",
    "MISSING",
    "NOT_COMPARABLE",
    "Outcome",
    "Tolerance",
    "compare_tensors",
    "compare_values",
]
