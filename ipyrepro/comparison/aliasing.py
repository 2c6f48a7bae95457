"""Keep run 1's values without copying them, unless a later run could change them in place.

`compare(fn)` compares every run with run 1. A callable may hand back an object it keeps
(a global tensor it accumulates into): the next run then changes run 1's value in place,
and comparing it with itself would pass. Copying every result guards against that, at the
price of a full copy of every tensor. Instead, a tensor or array that nothing else can
reach (no other Python reference, no view, no other user of its storage) is kept as it is;
only what is reachable from elsewhere is copied. After each later run, `aliased` checks that
no kept value came back (same object or same memory), the sign of a reference this missed.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

from .snapshot import _deep_copy_all


def _calibrated_refcount() -> int:
    """References a value has when only a dict being iterated holds it (the dict, the loop, the call)."""
    probe = {"value": object()}
    for _name, value in probe.items():
        return sys.getrefcount(value)
    raise AssertionError("unreachable")


_PRIVATE_REFCOUNT = _calibrated_refcount()


def _private_tensor(value: Any) -> bool:
    torch = sys.modules.get("torch")
    if torch is None or type(value) is not torch.Tensor:  # subclasses (Parameter, ...) may hold state
        return False
    if value.layout != torch.strided or value._is_view() or value.grad_fn is not None:
        return False
    use_count = getattr(torch._C, "_storage_Use_Count", None)
    if use_count is None:
        return False
    return use_count(value.untyped_storage()._cdata) <= 2  # this tensor and the temporary storage object


def _private_array(value: Any) -> bool:
    numpy = sys.modules.get("numpy")
    return numpy is not None and type(value) is numpy.ndarray and value.base is None and value.flags.owndata


def keep_run_one(values: dict[str, Any]) -> tuple[dict[str, Any], set[str]]:
    """Run 1's values, safe from later runs: (values, names kept by reference, not copied)."""
    kept: dict[str, Any] = {}
    by_reference: set[str] = set()
    for name, value in values.items():
        if sys.getrefcount(value) <= _PRIVATE_REFCOUNT and (_private_tensor(value) or _private_array(value)):
            kept[name] = value
            by_reference.add(name)
    copies, _ = _deep_copy_all({name: value for name, value in values.items() if name not in by_reference})
    kept.update(copies)
    return {name: kept[name] for name in values}, by_reference


def _memory(value: Any) -> int | None:
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(value, torch.Tensor):
        try:
            return value.untyped_storage().data_ptr() or None
        except (RuntimeError, NotImplementedError):
            return None
    numpy = sys.modules.get("numpy")
    if numpy is not None and isinstance(value, numpy.ndarray):
        base = value
        while isinstance(base.base, numpy.ndarray):
            base = base.base
        return base.__array_interface__["data"][0] or None
    return None


def aliased(kept: Mapping[str, Any], by_reference: set[str], later: Mapping[str, Any]) -> list[str]:
    """Names whose kept run-1 value a later run returned again (same object, or one sharing its memory)."""
    found = []
    for name in by_reference:
        mine, theirs = kept[name], later.get(name)
        if theirs is mine:
            found.append(name)
            continue
        address = _memory(mine)
        if address is not None and any(_memory(item) == address for item in later.values()):
            found.append(name)
    return found
