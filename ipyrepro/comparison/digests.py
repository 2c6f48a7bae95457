"""Digests of values: a value is flattened into leaves (tensors, arrays, numbers, strings); each leaf gets an
xxh3-128 digest of its exact bytes, with its kind, dtype and shape hashed in, plus summary statistics for
checks within a tolerance. One implementation for `%%repro --save/--check`, the in-sync check and
the notebook check.
"""

from __future__ import annotations

import functools
import math
import sys
from typing import TYPE_CHECKING, Any

from . import tensordigest, walk

if TYPE_CHECKING:
    import numpy as np
    import torch

LEAF_KINDS = (
    *("tensor", "array", "float", "int", "bool", "complex", "str", "bytes", "none", "unsupported"),
    *("ref", "bulk", "summary", "unreadable"),
)
STAT_KEYS = ("min", "max", "mean", "abs_mean")
COUNT_KEYS = ("numel", "nan", "posinf", "neginf")


@functools.lru_cache(maxsize=1)
def _widen_for_stats() -> dict[Any, Any]:
    """dtypes without sum/aminmax kernels on CPU, and the dtype their statistics are taken in (exact but for
    uint64). Built on first use: digesting a namespace that holds no tensor never imports torch."""
    import torch

    return {
        getattr(torch, name): widened
        for name, widened in (
            ("uint16", torch.int64),
            ("uint32", torch.int64),
            ("uint64", torch.float64),
            ("float8_e4m3fn", torch.float32),
            ("float8_e4m3fnuz", torch.float32),
            ("float8_e5m2", torch.float32),
            ("float8_e5m2fnuz", torch.float32),
            ("float8_e8m0fnu", torch.float32),
        )
        if hasattr(torch, name)
    }


def _libraries() -> tuple[Any, Any]:
    """torch and NumPy if the process imported them, else None: no value can be a tensor or an array before."""
    return sys.modules.get("torch"), sys.modules.get("numpy")


def generator_state(generator: Any) -> tuple[str, Any]:
    """(path suffix, state) of a NumPy or Python random generator, as plain data."""
    return walk.generator_state(generator)


STATS_SLACK = 1e-5  # relative: float32 sums taken in another order can differ by this much
# -- leaves and digests ----------------------------------------------------------


def leaves(value: Any, path: str) -> list[tuple[str, Any]]:
    """(path, leaf) pairs: containers, modules (parameters and buffers, as their state dict names them) and
    optimizers (their state dict's contents) walked once each, within the default budgets, running no user code."""
    return walk.Walk(walk.Budget()).add(value, path)


_hasher = tensordigest._hasher


def tensor_digest(tensor: torch.Tensor) -> str:
    """xxh3-128 of dtype, shape and the exact bytes, read as stored (tensordigest.py)."""
    return tensordigest.tensor_digest(tensor)


def array_digest(array: np.ndarray) -> str:
    """xxh3-128 of dtype, shape and bytes: a C-contiguous array from its memory, a broadcast (overlapping) one as
    stored with its strides, another view row block by row block (never a copy of the whole)."""
    import numpy as np

    if array.dtype.hasobject:
        raise TypeError("object arrays have no byte representation to digest")
    array = np.ndarray.view(array, np.ndarray)  # a subclass's methods never run
    span = _array_span(array)
    if array.size and span < array.size:
        hasher = _hasher(f"array-stored:{array.dtype.str}:{list(array.shape)}:{list(array.strides)}")
        stored = np.lib.stride_tricks.as_strided(array, (span,), (array.itemsize,))
        hasher.update(np.ascontiguousarray(stored).view(np.uint8))
        return f"xxh3_128:{hasher.hexdigest()}"
    hasher = _hasher(f"array:{array.dtype.str}:{list(array.shape)}")
    if array.flags.c_contiguous or array.ndim == 0:
        hasher.update(np.ascontiguousarray(array).reshape(-1).view(np.uint8))
    else:
        rows = max(1, tensordigest.CHUNK // max(1, array[:1].nbytes))
        for start in range(0, array.shape[0], rows):
            hasher.update(np.ascontiguousarray(array[start : start + rows]).reshape(-1).view(np.uint8))
    return f"xxh3_128:{hasher.hexdigest()}"


def _array_span(array: np.ndarray) -> int:
    if not array.size:
        return 0
    if any(stride < 0 for stride in array.strides) or any(stride % array.itemsize for stride in array.strides):
        return array.size  # reversed or unaligned views: read in logical order
    steps = [stride // array.itemsize for stride in array.strides]
    return 1 + sum((size - 1) * step for size, step in zip(array.shape, steps) if size > 1)


def array_stats(array: np.ndarray) -> dict[str, Any] | None:
    """`tensor_stats` for an array, computed with NumPy: a tolerance never imports torch into a NumPy notebook."""
    import numpy as np

    if array.dtype.kind not in "biufc":
        return None
    data = np.ndarray.view(array, np.ndarray)
    if data.dtype.kind == "c":
        data = np.stack([data.real, data.imag])
    if data.dtype.kind == "b":
        data = data.astype(np.uint8)
    stats: dict[str, Any] = {"numel": int(data.size), "nan": 0, "posinf": 0, "neginf": 0}
    if data.size == 0:
        return {**stats, **dict.fromkeys(STAT_KEYS)}
    floating = data.dtype.kind == "f"
    accumulate = np.float64 if not floating or data.dtype == np.float64 else np.float32
    with np.errstate(all="ignore"):
        total = data.sum(dtype=accumulate)
        if floating and not np.isfinite(total):
            stats.update(nan=int(np.isnan(data).sum()), posinf=int(np.isposinf(data).sum()))
            stats["neginf"] = int(np.isneginf(data).sum())
            data = data[np.isfinite(data)]
            if data.size == 0:
                return {**stats, **dict.fromkeys(STAT_KEYS)}
            total = data.sum(dtype=accumulate)
        count = data.size
        values = [data.min(), data.max(), total / count, np.abs(data).sum(dtype=accumulate) / count]
        values = [float(value) for value in values]
        if not all(math.isfinite(value) for value in values[2:]):
            scaled = data.astype(np.float64) / count
            values[2:] = [float(scaled.sum()), float(np.abs(scaled).sum())]
    return {**stats, **dict(zip(STAT_KEYS, values))}


def tensor_stats(tensor: torch.Tensor) -> dict[str, Any]:
    """Counts of NaN/inf and min, max, mean, mean |x| of the finite elements, computed on the tensor's device.

    Sums accumulate in float32 (float64 for float64 and integer data) with torch's pairwise
    summation: a few passes at memory speed. A finite total means there is no NaN or inf to
    count, so the slow counting passes run only when there are some.
    """
    import torch

    widen = _widen_for_stats()
    tensor = tensor.detach()
    if tensor.is_complex():
        tensor = torch.view_as_real(tensor.resolve_conj())
    if tensor.dtype == torch.bool:
        tensor = tensor.to(torch.uint8)
    elif tensor.dtype in widen:  # no sum/aminmax for them: summarise them widened
        tensor = tensor.to(widen[tensor.dtype])
    stats: dict[str, Any] = {"numel": tensor.numel(), "nan": 0, "posinf": 0, "neginf": 0}
    if tensor.numel() == 0:
        return {**stats, **dict.fromkeys(STAT_KEYS)}
    floating = tensor.dtype.is_floating_point
    accumulate = (torch.float64 if tensor.dtype == torch.float64 else torch.float32) if floating else torch.float64
    total = tensor.sum(dtype=accumulate) if floating and tensor.dtype != accumulate else tensor.sum()
    if floating and not bool(torch.isfinite(total)):
        stats["nan"] = int(torch.isnan(tensor).sum().item())
        stats["posinf"] = int(torch.isposinf(tensor).sum().item())
        stats["neginf"] = int(torch.isneginf(tensor).sum().item())
        tensor = tensor[torch.isfinite(tensor)]
        if tensor.numel() == 0:
            return {**stats, **dict.fromkeys(STAT_KEYS)}
        total = tensor.sum(dtype=accumulate)
    low, high = torch.aminmax(tensor)
    if floating:
        absolute = torch.linalg.vector_norm(tensor, 1, dtype=accumulate)
    else:
        absolute = tensor.abs().sum() if tensor.dtype != torch.uint8 else total
    count = tensor.numel()
    values = [low.item(), high.item(), total.item() / count, absolute.item() / count]
    if not all(math.isfinite(value) for value in values[2:]):  # the sum overflowed its accumulator
        scaled = tensor.to(torch.float64) / count  # each term <= max / count: the sums stay finite
        values[2:] = [scaled.sum().item(), scaled.abs().sum().item()]
    return {**stats, **dict(zip(STAT_KEYS, (float(v) for v in values)))}


def leaf_record(leaf: Any, *, stats: bool = True) -> dict[str, Any]:
    """The JSON-safe record of one leaf: kind, digest, and what a tolerance check needs; a leaf that cannot be
    read is an `unreadable` record (its type and why), never an exception.

    `stats=False` leaves out the statistics of tensors and arrays (None): a few passes over the data that
    only a check within a tolerance reads (the notebook check's state digests without --rtol/--atol)."""
    try:
        return _leaf_record(leaf, stats)
    except Exception as error:  # noqa: BLE001 - one value never ends a digest
        return unreadable_record(type(leaf).__qualname__, f"{type(error).__name__}: {_first_line(error)}")


def unreadable_record(type_name: str, reason: str) -> dict[str, Any]:
    return {"kind": "unreadable", "type": type_name, "why": reason}


def _leaf_record(leaf: Any, stats: bool) -> dict[str, Any]:
    torch, np = _libraries()
    kind = type(leaf)
    if torch is not None and issubclass(kind, torch.Tensor):
        return _tensor_record(leaf, stats)
    if np is not None and issubclass(kind, np.ndarray):
        try:
            digest = array_digest(leaf)
        except TypeError as error:
            return {"kind": "unsupported", "why": str(error)}
        return {
            "kind": "array",
            "dtype": leaf.dtype.str,
            "shape": list(leaf.shape),
            "digest": digest,
            "stats": _finite_or_none(array_stats(leaf)) if stats else None,
        }
    if np is not None and issubclass(kind, np.generic):
        return _leaf_record(leaf.item(), stats) if not isinstance(leaf, (np.void, np.object_)) else _unsupported(leaf)
    if kind in walk.PLAIN_LEAVES:
        return _plain_record(leaf)
    if kind is walk.Reference:
        return {"kind": "ref", "to": leaf.to, "type": leaf.type_name, "digest": _text_digest("ref", leaf.to)}
    if kind is walk.Bulk:
        return bulk_record(leaf, leaf.items)
    if kind is walk.Summary:
        text = f"{leaf.type_name}:{leaf.size}:{leaf.sample}"
        digest = _text_digest("summary", text)
        return {"kind": "summary", "type": leaf.type_name, "size": leaf.size, "why": leaf.reason, "digest": digest}
    if kind is walk.Unreadable:
        return unreadable_record(leaf.type_name, leaf.reason)
    if kind is walk.Unsupported:
        return {"kind": "unsupported", "why": leaf.why}
    return _unsupported(leaf)


def _tensor_record(leaf: Any, stats: bool) -> dict[str, Any]:
    import torch

    with tensordigest.no_torch_function():
        try:
            digest = tensor_digest(leaf)
        except tensordigest.NotReadable as error:
            return unreadable_record(type(leaf).__qualname__, str(error))
        except (RuntimeError, NotImplementedError, TypeError) as error:  # e.g. sub-byte dtypes: no bytes to read
            return {"kind": "unsupported", "why": f"torch cannot read {leaf.dtype} values here ({_first_line(error)})"}
        lazy = tensordigest.is_lazy(leaf)
        plain = leaf.layout == torch.strided and not lazy and leaf.device.type != "meta"
        record = {
            "kind": "tensor",
            "dtype": str(leaf.dtype),
            "shape": [] if lazy else list(leaf.shape),
            "device": str(leaf.device),
            "digest": digest,
            "stats": _stats_or_none(leaf) if stats and plain else None,
        }
        if lazy:
            record["lazy"] = True
        return record


def _plain_record(leaf: Any) -> dict[str, Any]:
    if isinstance(leaf, bool):
        return {"kind": "bool", "value": leaf, "digest": _text_digest("bool", str(leaf))}
    if isinstance(leaf, int):
        return {"kind": "int", "value": str(leaf), "digest": _text_digest("int", str(leaf))}
    if isinstance(leaf, float):
        return {"kind": "float", "value": leaf.hex(), "digest": _text_digest("float", leaf.hex())}
    if isinstance(leaf, complex):
        text = f"{leaf.real.hex()},{leaf.imag.hex()}"
        return {"kind": "complex", "value": text, "digest": _text_digest("complex", text)}
    if isinstance(leaf, str):
        return {"kind": "str", "digest": _text_digest("str", leaf), **({"value": leaf} if len(leaf) <= 200 else {})}
    if isinstance(leaf, bytes):
        hasher = _hasher("bytes")
        hasher.update(leaf)
        return {"kind": "bytes", "digest": f"xxh3_128:{hasher.hexdigest()}"}
    return {"kind": "none", "digest": _text_digest("none", "")}


def bulk_record(bulk: walk.Bulk, items: Any, text: str | None = None) -> dict[str, Any]:
    """One digest for a long list of plain str, int or float, in one pass: strings joined (`text`: already
    joined and cleaned by the caller), ints and floats as 64-bit machine values (ints beyond 64 bits as text)."""
    import array

    hasher = _hasher(f"bulk:{bulk.kind}:{len(bulk)}")
    if bulk.kind == "str":
        joined = text if text is not None else bulk.text if bulk.text is not None else "\0".join(items)
        hasher.update(joined.encode("utf-8", "surrogatepass"))
    else:
        try:
            hasher.update(array.array("d" if bulk.kind == "float" else "q", items))
        except OverflowError:
            hasher.update(",".join(map(int.__repr__, items)).encode())
    return {"kind": "bulk", "type": bulk.kind, "length": len(bulk), "digest": f"xxh3_128:{hasher.hexdigest()}"}


def _stats_or_none(tensor: torch.Tensor) -> dict[str, Any] | None:
    """Statistics for tolerance checks, or None where torch has no kernels for the dtype (digests still work)."""
    if tensordigest.overlapping(tensor):  # an expanded view: its stored elements, never materialised
        tensor = tensor.as_strided((tensordigest.storage_span(tensor),), (1,))
    try:
        stats = tensor_stats(tensor)
    except (RuntimeError, NotImplementedError, TypeError):
        return None
    return _finite_or_none(stats)


def _finite_or_none(stats: dict[str, Any] | None) -> dict[str, Any] | None:
    if stats is None:
        return None
    numbers = [stats[key] for key in STAT_KEYS if stats[key] is not None]
    return stats if all(math.isfinite(number) for number in numbers) else None  # the file holds finite JSON only


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _unsupported(leaf: Any) -> dict[str, Any]:
    return {"kind": "unsupported", "why": f"{type(leaf).__qualname__} has no byte representation to digest"}


def _text_digest(kind: str, text: str) -> str:
    hasher = _hasher(kind)
    hasher.update(text.encode("utf-8", "surrogatepass"))
    return f"xxh3_128:{hasher.hexdigest()}"


def fingerprint(values: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Leaf path -> record for every value of a run."""
    records: dict[str, dict[str, Any]] = {}
    for name, value in values.items():
        for path, leaf in leaves(value, name):
            records[path] = leaf_record(leaf)
    return records
