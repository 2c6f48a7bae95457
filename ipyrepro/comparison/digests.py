"""Digests of values: a value is flattened into leaves (tensors, arrays, numbers, strings); each leaf gets an
xxh3-128 digest of its exact bytes, with its kind, dtype and shape hashed in, plus summary statistics for
checks within a tolerance. One implementation for `%%repro --save/--check`, the in-sync check and
the notebook check.
"""

from __future__ import annotations

import dataclasses
import math
import random
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import xxhash

from ..core.numpyrandom import generator_types
from .values import generator_state

_CHUNK = 64 << 20  # bytes per host copy when hashing a tensor that lives on an accelerator
LEAF_KINDS = ("tensor", "array", "float", "int", "bool", "complex", "str", "bytes", "none", "unsupported")
STAT_KEYS = ("min", "max", "mean", "abs_mean")
COUNT_KEYS = ("numel", "nan", "posinf", "neginf")
# dtypes without sum/aminmax kernels on CPU, and the dtype their statistics are taken in (exact but for uint64).
_WIDEN_FOR_STATS = {
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
STATS_SLACK = 1e-5  # relative: float32 sums taken in another order can differ by this much
# -- leaves and digests ----------------------------------------------------------


def leaves(value: Any, path: str) -> list[tuple[str, Any]]:
    """(path, leaf) pairs, walking containers, modules (state dict) and optimizers (state dict)."""
    out: list[tuple[str, Any]] = []
    _flatten(value, path, out, 0)
    return out


def _flatten(value: Any, path: str, out: list[tuple[str, Any]], depth: int) -> None:
    if depth > 100:
        out.append((path, _Unsupported("nested more than 100 levels deep")))
    elif isinstance(value, (torch.Tensor, np.ndarray, np.generic, bool, int, float, complex, str, bytes, type(None))):
        out.append((path, value))
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _flatten(item, f"{path}[{index}]", out, depth + 1)
    elif isinstance(value, dict):
        for key, item in value.items():
            _flatten(item, f"{path}[{key!r}]", out, depth + 1)
    elif isinstance(value, (torch.nn.Module, torch.optim.Optimizer)):
        _flatten(value.state_dict(), path, out, depth + 1)
    elif isinstance(value, torch.Generator):
        out.append((f"{path}.get_state()", value.get_state()))
    elif isinstance(value, (random.Random, *generator_types())):
        suffix, state = generator_state(value)
        _flatten(state, f"{path}{suffix}", out, depth + 1)
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for item in dataclasses.fields(value):
            _flatten(getattr(value, item.name), f"{path}.{item.name}", out, depth + 1)
    else:
        out.append((path, _Unsupported(f"{type(value).__qualname__} has no byte representation to digest")))


@dataclass(frozen=True)
class _Unsupported:
    why: str


def _hasher(header: str) -> xxhash.xxh3_128:
    hasher = xxhash.xxh3_128()
    hasher.update(header.encode() + b"\0")
    return hasher


def tensor_digest(tensor: torch.Tensor) -> str:
    """xxh3-128 of dtype, shape and the exact bytes; accelerator data is copied to the host in chunks."""
    tensor = tensor.detach()
    if tensor.layout != torch.strided or tensor.is_quantized:
        tensor = tensor.to_dense() if tensor.layout != torch.strided else tensor.dequantize()
    tensor = tensor.resolve_conj().resolve_neg().contiguous()
    hasher = _hasher(f"tensor:{tensor.dtype}:{list(tensor.shape)}")
    raw = tensor.reshape(-1).view(torch.uint8) if tensor.numel() else tensor.new_empty(0, dtype=torch.uint8)
    if raw.device.type == "cpu":
        hasher.update(raw.numpy())
    else:
        for start in range(0, raw.numel(), _CHUNK):
            hasher.update(raw[start : start + _CHUNK].cpu().numpy())
    return f"xxh3_128:{hasher.hexdigest()}"


def array_digest(array: np.ndarray) -> str:
    hasher = _hasher(f"array:{array.dtype.str}:{list(array.shape)}")
    if array.dtype.hasobject:
        raise TypeError("object arrays have no byte representation to digest")
    hasher.update(np.ascontiguousarray(array).reshape(-1).view(np.uint8))
    return f"xxh3_128:{hasher.hexdigest()}"


def tensor_stats(tensor: torch.Tensor) -> dict[str, Any]:
    """Counts of NaN/inf and min, max, mean, mean |x| of the finite elements, computed on the tensor's device.

    Sums accumulate in float32 (float64 for float64 and integer data) with torch's pairwise
    summation: a few passes at memory speed. A finite total means there is no NaN or inf to
    count, so the slow counting passes run only when there are some.
    """
    tensor = tensor.detach()
    if tensor.is_complex():
        tensor = torch.view_as_real(tensor.resolve_conj())
    if tensor.dtype == torch.bool:
        tensor = tensor.to(torch.uint8)
    elif tensor.dtype in _WIDEN_FOR_STATS:  # no sum/aminmax for them: summarise them widened
        tensor = tensor.to(_WIDEN_FOR_STATS[tensor.dtype])
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


def leaf_record(leaf: Any) -> dict[str, Any]:
    """The JSON-safe record of one leaf: kind, digest, and what a tolerance check needs."""
    if isinstance(leaf, torch.Tensor):
        try:
            digest = tensor_digest(leaf)
        except (RuntimeError, NotImplementedError, TypeError) as error:  # e.g. sub-byte dtypes: no bytes to read
            return {"kind": "unsupported", "why": f"torch cannot read {leaf.dtype} values here ({_first_line(error)})"}
        return {
            "kind": "tensor",
            "dtype": str(leaf.dtype),
            "shape": list(leaf.shape),
            "device": str(leaf.device),
            "digest": digest,
            "stats": _stats_or_none(leaf) if leaf.layout == torch.strided else None,
        }
    if isinstance(leaf, np.ndarray):
        try:
            tensor = torch.from_numpy(leaf)
        except (TypeError, ValueError, RuntimeError):
            tensor = None
        try:
            digest = array_digest(leaf)
        except TypeError as error:
            return {"kind": "unsupported", "why": str(error)}
        return {
            "kind": "array",
            "dtype": leaf.dtype.str,
            "shape": list(leaf.shape),
            "digest": digest,
            "stats": _stats_or_none(tensor) if tensor is not None else None,
        }
    if isinstance(leaf, np.generic):
        return leaf_record(leaf.item()) if not isinstance(leaf, (np.void, np.object_)) else _unsupported(leaf)
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
    if leaf is None:
        return {"kind": "none", "digest": _text_digest("none", "")}
    if isinstance(leaf, _Unsupported):
        return {"kind": "unsupported", "why": leaf.why}
    return _unsupported(leaf)


def _stats_or_none(tensor: torch.Tensor) -> dict[str, Any] | None:
    """Statistics for tolerance checks, or None where torch has no kernels for the dtype (digests still work)."""
    try:
        stats = tensor_stats(tensor)
    except (RuntimeError, NotImplementedError, TypeError):
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
