"""Put a snapshot's contents back into the user's own objects, in place.

When the last `%%repro` run (which works on the user's objects) fails, binding
names to the snapshot's copies would leave every other reference (an alias, an
optimizer's parameters, a list holding the model) pointing at the mutated
originals. Instead each original object gets its copy's contents back, with
references to copied objects translated to their originals, so identities and
links between objects stay as they were before the cell.
"""

from __future__ import annotations

import collections
import sys
from collections.abc import Iterable
from typing import Any

_IMMUTABLE = (tuple, frozenset, str, bytes, int, float, complex, bool, type(None), range)


def restore_in_place(pairs: Iterable[tuple[Any, Any]]) -> dict[str, str]:
    """Give each original its copy's contents; returns {type name: why} for objects that could not be restored."""
    pairs = [(original, copy) for original, copy in pairs if not isinstance(original, _IMMUTABLE)]
    inverse = {id(copy): original for original, copy in pairs}
    failures: dict[str, str] = {}
    for original, copy in pairs:
        try:
            _restore(original, copy, inverse)
        except Exception as error:
            failures.setdefault(type(original).__qualname__, f"{type(error).__name__}: {error}".split("\n")[0])
    return failures


def _translate(value: Any, inverse: dict[int, Any]) -> Any:
    """The original behind a copied object; fresh containers are rebuilt with their items translated."""
    if id(value) in inverse:
        return inverse[id(value)]
    if type(value) is tuple:
        return tuple(_translate(item, inverse) for item in value)
    if type(value) is list:
        return [_translate(item, inverse) for item in value]
    if type(value) is dict:
        return {_translate(key, inverse): _translate(item, inverse) for key, item in value.items()}
    return value


def _restore(original: Any, copy: Any, inverse: dict[int, Any]) -> None:
    torch = sys.modules.get("torch")
    np = sys.modules.get("numpy")
    if torch is not None and isinstance(original, torch.Tensor):
        _restore_tensor(torch, original, copy, inverse)
        return
    if np is not None and isinstance(original, np.ndarray):
        _restore_array(np, original, copy, inverse)
        return
    if isinstance(original, dict):
        items = [(_translate(key, inverse), _translate(item, inverse)) for key, item in copy.items()]
        dict.clear(original)
        for key, item in items:
            dict.__setitem__(original, key, item)
        if isinstance(original, collections.defaultdict):
            original.default_factory = copy.default_factory
    elif isinstance(original, list):
        list.__setitem__(original, slice(None), [_translate(item, inverse) for item in copy])
    elif isinstance(original, (set, collections.deque, bytearray)):
        items = [_translate(item, inverse) for item in copy]
        original.clear()
        (original.extend if not isinstance(original, set) else original.update)(items)
    elif _custom_reduce(type(original)) or (not hasattr(original, "__dict__") and not _slots(type(original))):
        _restore_by_state(original, copy, inverse)  # generators and C types: their state is not in __dict__
        return
    if hasattr(original, "__dict__") and not isinstance(original, type):
        state = {key: _translate(item, inverse) for key, item in vars(copy).items()}
        vars(original).clear()
        vars(original).update(state)
    for slot in _slots(type(original)):
        if hasattr(copy, slot):
            object.__setattr__(original, slot, _translate(getattr(copy, slot), inverse))
        elif hasattr(original, slot):
            object.__delattr__(original, slot)


def _restore_tensor(torch: Any, original: Any, copy: Any, inverse: dict[int, Any]) -> None:
    with torch.no_grad():
        if original.shape == copy.shape and original.dtype == copy.dtype and original.layout == torch.strided:
            original.copy_(copy)
        else:
            original.data = copy.data.clone()
    if original.is_leaf:
        original.grad = _translate(copy.grad, inverse)


def _restore_array(np: Any, original: Any, copy: Any, inverse: dict[int, Any]) -> None:
    if original.shape != copy.shape or original.dtype != copy.dtype:
        raise ValueError(f"the array changed from shape {copy.shape} to {original.shape}; it cannot be resized back")
    if original.dtype.hasobject:
        for index in np.ndindex(original.shape):
            original[index] = _translate(copy[index], inverse)
    else:
        np.copyto(original, copy)


def _restore_by_state(original: Any, copy: Any, inverse: dict[int, Any]) -> None:
    """Objects without a __dict__ (generators, C types): through their pickling state."""
    reduced = copy.__reduce_ex__(4)
    state = reduced[2] if isinstance(reduced, tuple) and len(reduced) > 2 else None
    if state is None:
        return  # all its state lives in objects it refers to, restored through their own pairs
    if not hasattr(original, "__setstate__"):
        raise TypeError(f"{type(original).__qualname__} has no way to take its state back in place")
    original.__setstate__(_translate(state, inverse))


def _custom_reduce(kind: type) -> bool:
    """A class that pickles through its own __reduce__ keeps state outside __dict__ (e.g. random.Random)."""
    return kind.__reduce_ex__ is not object.__reduce_ex__ or kind.__reduce__ is not object.__reduce__


def _slots(kind: type) -> list[str]:
    names: list[str] = []
    for klass in kind.__mro__:
        slots = vars(klass).get("__slots__", ())
        for name in [slots] if isinstance(slots, str) else slots:
            if name not in ("__dict__", "__weakref__") and name not in names:
                names.append(name)
    return names
