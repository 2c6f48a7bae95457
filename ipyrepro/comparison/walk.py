"""The walk that turns a value into digestible leaves: bounded, and inert.

It visits each container once (a memo by object id: a second reference is recorded as a reference to the
first path, so aliasing is still compared and `a.append(a)` ends), within budgets of depth, elements and
bytes; what is over budget becomes a cheap summary (type, length, a sample digest) and is listed with the
reason. It runs no user code: containers are read through the built-in slots (`list.__iter__`, `dict.items`)
whatever their subclass, paths come from positions or the repr of built-in keys only, modules from
`_parameters`, `_buffers` and `_modules` (no `state_dict()`, no hooks), optimizers from their `state` and
`param_groups`, objects of other classes by type name only. A value that cannot be read becomes an
`Unreadable` leaf; the walk goes on. It imports nothing: torch and NumPy only if the process already has.
"""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

PLAIN_LEAVES = (bool, int, float, complex, str, bytes, type(None))
_SAFE_KEYS = (bool, int, float, str, bytes, type(None))
BULK_AT = 16  # a list or tuple of at least this many str (or int, or float) is one bulk leaf
SAMPLE_ITEMS = 8  # items of an over-budget container that go into its summary's sample digest
KEY_REPR_LIMIT = 200  # longer built-in keys are named by position


@dataclass(frozen=True)
class Budget:
    """Per-cell limits of one digest: nesting depth, elements visited, bytes hashed, and seconds spent."""

    depth: int = 100
    elements: int = 1_000_000
    bytes: int = 4 << 30
    seconds: float = 60.0


@dataclass(frozen=True)
class Unsupported:
    """A value with no byte representation to digest (an object of a class the walk does not read)."""

    why: str


@dataclass(frozen=True)
class Unreadable:
    """A value the walk could not read: its type and why; recorded, compared by that, and the walk goes on."""

    type_name: str
    reason: str


@dataclass(frozen=True)
class Reference:
    """A second reference to an object already visited in this digest, at `to`."""

    to: str
    type_name: str


@dataclass(frozen=True)
class Summary:
    """An over-budget value: its type, its length or shape, a digest of a small sample, and why."""

    type_name: str
    size: str
    sample: str
    reason: str


@dataclass(frozen=True)
class Bulk:
    """A long list or tuple of plain str, int or float, digested in one pass (`items` is the container)."""

    kind: str  # "str", "int" or "float"
    items: Any
    text: str | None = None  # strings: the items joined by NUL, read once

    def __len__(self) -> int:
        return list.__len__(self.items) if issubclass(type(self.items), list) else tuple.__len__(self.items)


@dataclass
class Walk:
    """The leaves of one or more values and what the budgets left out (path -> reason)."""

    budget: Budget = field(default_factory=Budget)
    bulk: bool = False
    leaves: list[tuple[str, Any]] = field(default_factory=list)
    summarised: dict[str, str] = field(default_factory=dict)
    elements: int = 0
    bytes: int = 0
    started: float = field(default_factory=time.perf_counter)
    _memo: dict[int, tuple[str, Any]] = field(default_factory=dict)  # id -> (first path, the object kept alive)

    def add(self, value: Any, path: str, *, alone: bool = False) -> list[tuple[str, Any]]:
        """Walk `value` at `path`; returns the leaves it added (they are also in `self.leaves`). `alone`: references
        only within this value (each name digests all it holds), the budgets still shared with earlier values."""
        if alone:
            self._memo.clear()
        start = len(self.leaves)
        self._visit(value, path, 0)
        return self.leaves[start:]

    def charge(self, nbytes: int) -> bool:
        """Count `nbytes` against the bytes budget; False (and nothing counted) when they do not fit."""
        if self.bytes + nbytes > self.budget.bytes:
            return False
        self.bytes += nbytes
        return True

    # -- the walk --------------------------------------------------------------------------------

    def _visit(self, value: Any, path: str, depth: int) -> None:
        kind = type(value)
        if kind in PLAIN_LEAVES or issubclass(kind, PLAIN_LEAVES):
            self.elements += 1
            self.leaves.append((path, _plain(value)))
            return
        first = self._memo.get(id(value))
        if first is not None:
            self.leaves.append((path, Reference(first[0], kind.__qualname__)))
            return
        over = self._over(depth)
        if over is not None:
            self._summarise(value, path, over)
            return
        self.elements += 1
        if not _is_empty_singleton(value):
            self._memo[id(value)] = (path, value)
        try:
            self._read(value, kind, path, depth)
        except Exception as error:  # one value that cannot be read never ends the digest
            self.leaves.append((path, Unreadable(kind.__qualname__, _reason(error))))

    def _over(self, depth: int) -> str | None:
        if depth > self.budget.depth:
            return f"nested more than {self.budget.depth} levels deep"
        return self._over_budget()

    def _over_budget(self) -> str | None:
        if self.elements >= self.budget.elements:
            return f"over the budget of {self.budget.elements:,} elements per cell"
        if time.perf_counter() - self.started > self.budget.seconds:
            return f"over the budget of {self.budget.seconds:g} s per cell"
        return None

    def _summarise(self, value: Any, path: str, reason: str) -> None:
        summary = summarise(value, reason)
        self.summarised[path] = reason
        self.leaves.append((path, summary))

    def _read(self, value: Any, kind: type, path: str, depth: int) -> None:
        torch, numpy = sys.modules.get("torch"), sys.modules.get("numpy")
        if torch is not None and issubclass(kind, torch.Tensor):
            from .tensordigest import hashed_bytes

            self._data(value, path, hashed_bytes(value))
        elif numpy is not None and issubclass(kind, numpy.ndarray):
            self._data(value, path, numpy.ndarray.nbytes.__get__(value))
        elif numpy is not None and issubclass(kind, numpy.generic):
            self.leaves.append((path, value))
        elif issubclass(kind, (list, tuple)):
            self._sequence(value, kind, path, depth)
        elif issubclass(kind, dict):
            for position, (key, item) in enumerate(dict.items(value)):
                if self._tail(value, path, position, depth):
                    break
                self._visit(item, f"{path}[{key_text(key, position)}]", depth + 1)
        elif torch is not None and issubclass(kind, torch.nn.Module):
            self._module(value, path, depth)
        elif torch is not None and issubclass(kind, torch.optim.Optimizer):
            self._visit(optimizer_state(value), path, depth + 1)
        elif torch is not None and issubclass(kind, torch.Generator):
            self.leaves.append((f"{path}.get_state()", torch.Generator.get_state(value)))
        elif issubclass(kind, random.Random) or _is_numpy_generator(kind):
            suffix, state = generator_state(value)
            self._visit(state, f"{path}{suffix}", depth + 1)
        elif _is_dataclass_instance(kind):
            fields = object.__getattribute__(kind, "__dataclass_fields__")
            attributes = _instance_dict(value)
            for name in fields:
                if fields[name]._field_type is not _dataclass_field_marker():  # ClassVar, InitVar: no instance data
                    continue
                slot = _slot(kind, name)
                if name in attributes:
                    self._visit(attributes[name], f"{path}.{name}", depth + 1)
                elif slot is not None:
                    self._visit(slot.__get__(value, kind), f"{path}.{name}", depth + 1)
                else:
                    self.leaves.append((f"{path}.{name}", Unreadable(kind.__qualname__, "field not in __dict__")))
        else:
            self.leaves.append((path, Unsupported(f"{kind.__qualname__} has no byte representation to digest")))

    def _data(self, value: Any, path: str, nbytes: int) -> None:
        """A tensor or array: a leaf while its bytes fit the budget, else a summary."""
        if self.charge(nbytes):
            self.leaves.append((path, value))
        else:
            self._summarise(value, path, f"{nbytes:,} bytes, over the budget of {self.budget.bytes:,} bytes per cell")

    def _sequence(self, value: Any, kind: type, path: str, depth: int) -> None:
        base = list if issubclass(kind, list) else tuple
        if self.bulk and base.__len__(value) >= BULK_AT:
            bulk = bulk_of(value, base)
            if bulk is not None:
                self._data(bulk, path, 8 * len(bulk))
                return
        for index, item in enumerate(base.__iter__(value)):
            if self._tail(value, path, index, depth):
                break
            self._visit(item, f"{path}[{index}]", depth + 1)

    def _tail(self, container: Any, path: str, index: int, depth: int) -> bool:
        """When the budget runs out inside a container, its remaining items become one summary (never one each)."""
        over = self._over_budget() if index else None
        if over is None:
            return False
        self._summarise(container, f"{path}[{index}:]", over)
        return True

    def _module(self, module: Any, path: str, depth: int, prefix: str = "") -> None:
        """A module's parameters and persistent buffers, named as its state dict names them, read directly."""
        attributes = _instance_dict(module)
        transient = attributes.get("_non_persistent_buffers_set", ())
        for name, tensor in dict.items(attributes.get("_parameters", {})):
            if tensor is not None:
                self._visit(tensor, f"{path}[{prefix + name!r}]", depth + 1)
        for name, tensor in dict.items(attributes.get("_buffers", {})):
            if tensor is not None and name not in transient:
                self._visit(tensor, f"{path}[{prefix + name!r}]", depth + 1)
        for name, child in dict.items(attributes.get("_modules", {})):
            if child is None:
                continue
            first = self._memo.get(id(child))
            if first is not None:
                self.leaves.append((f"{path}[{prefix + name!r}]", Reference(first[0], type(child).__qualname__)))
                continue
            over = self._over(depth + 1)
            if over is not None:
                self._summarise(child, f"{path}[{prefix + name!r}]", over)
                continue
            self.elements += 1
            self._memo[id(child)] = (f"{path}[{prefix + name!r}]", child)
            try:
                self._module(child, path, depth + 1, f"{prefix}{name}.")
            except Exception as error:
                self.leaves.append((f"{path}[{prefix + name!r}]", Unreadable(type(child).__qualname__, _reason(error))))


def _dataclass_field_marker() -> Any:
    """The marker `dataclasses` gives instance fields (not ClassVar or InitVar pseudo-fields)."""
    import dataclasses

    return dataclasses._FIELD  # type: ignore[attr-defined]


def _slot(kind: type, name: str) -> Any:
    """The built-in slot descriptor of `name` (a `__slots__` field), found in the classes' own dicts; else None."""
    import types

    for klass in kind.__mro__:
        found = type.__getattribute__(klass, "__dict__").get(name)
        if found is not None:
            return found if type(found) is types.MemberDescriptorType else None
    return None


def _plain(value: Any) -> Any:
    """A built-in value of a subclass (an IntEnum, a str subclass) as its built-in base, read without its methods."""
    kind = type(value)
    if kind in PLAIN_LEAVES:
        return value
    for base in (bool, int, float, complex, str, bytes):
        if issubclass(kind, base):
            return _AS_BASE[base](value)
    return value


_AS_BASE = {
    bool: lambda value: bool(int.__index__(value)),
    int: lambda value: int.__index__(value),
    float: lambda value: float.__float__(value),
    complex: lambda value: complex(float.__float__(complex.real.__get__(value)), complex.imag.__get__(value)),
    str: lambda value: str.__str__(value),
    bytes: lambda value: bytes(memoryview(value)),
}


def _is_empty_singleton(value: Any) -> bool:
    return type(value) is tuple and not tuple.__len__(value)


def _is_numpy_generator(kind: type) -> bool:
    module = sys.modules.get("numpy.random")
    return module is not None and issubclass(kind, (module.Generator, module.RandomState))


def _is_dataclass_instance(kind: type) -> bool:
    try:
        return "__dataclass_fields__" in type.__getattribute__(kind, "__dict__") or any(
            "__dataclass_fields__" in type.__getattribute__(base, "__dict__") for base in kind.__mro__[1:]
        )
    except Exception:
        return False


def _instance_dict(value: Any) -> dict[str, Any]:
    try:
        attributes = object.__getattribute__(value, "__dict__")
    except AttributeError:
        return {}
    return attributes if isinstance(attributes, dict) else {}


def _reason(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__


def key_text(key: Any, position: int) -> str:
    """A dict key in a path: the repr of a built-in key (str, int, float, bool, None, bytes, tuples of those),
    else its position and type name; no method of the key runs."""
    if _safe_key(key, 0):
        text = repr(key)
        if len(text) <= KEY_REPR_LIMIT:
            return text
    return f"#{position}:{type(key).__name__}"


def _safe_key(key: Any, depth: int) -> bool:
    kind = type(key)
    if kind in _SAFE_KEYS:
        return True
    return kind is tuple and depth < 4 and all(_safe_key(item, depth + 1) for item in tuple.__iter__(key))


def bulk_of(items: Any, base: type) -> Bulk | None:
    """A bulk leaf when every item is a str (joined at C speed: a subclass's methods never run), or every item is
    exactly int or exactly float; None otherwise."""
    first = type(base.__getitem__(items, 0))
    if issubclass(first, str):
        try:
            return Bulk("str", items, "\0".join(items))
        except TypeError:  # not all strings
            return None
    kinds = set(map(type, base.__iter__(items)))
    if len(kinds) != 1:
        return None
    kind = kinds.pop()
    if kind not in (int, float):
        return None
    return Bulk(kind.__name__, items)


def generator_state(generator: Any) -> tuple[str, Any]:
    """(path suffix, state) of a NumPy or Python random generator, as plain data, by the base classes' methods."""
    if issubclass(type(generator), random.Random):  # before NumPy's: checking those would import numpy.random
        import _random

        gauss = _instance_dict(generator).get("gauss_next")
        return ".getstate()", (random.Random.VERSION, _random.Random.getstate(generator), gauss)
    numpy_random = sys.modules["numpy.random"]
    if issubclass(type(generator), numpy_random.Generator):
        bit_generator = numpy_random.Generator.bit_generator.__get__(generator)
        return ".bit_generator.state", type(bit_generator).state.__get__(bit_generator)
    return ".get_state()", numpy_random.RandomState.get_state(generator, legacy=False)


def optimizer_state(optimizer: Any) -> dict[str, Any]:
    """What `Optimizer.state_dict()` returns, built from `state` and `param_groups` directly: no hooks run."""
    attributes = _instance_dict(optimizer)
    index: dict[int, int] = {}
    groups = []
    for group in list.__iter__(attributes.get("param_groups", [])):
        packed = {key: value for key, value in dict.items(group) if key != "params"}
        packed["params"] = [index.setdefault(id(param), len(index)) for param in list.__iter__(group["params"])]
        groups.append(packed)
    state = {index[id(param)]: value for param, value in dict.items(attributes.get("state", {})) if id(param) in index}
    return {"state": state, "param_groups": groups}


def summarise(value: Any, reason: str) -> Summary:
    """Type, length (or dtype and shape), and a digest of a small sample: what an over-budget value is compared by."""
    import xxhash

    kind = type(value)
    sample = xxhash.xxh3_128()
    size = ""
    torch, numpy = sys.modules.get("torch"), sys.modules.get("numpy")
    if torch is not None and issubclass(kind, torch.Tensor):
        from .tensordigest import tensor_sample

        size = f"{value.dtype}:{list(value.shape)}"
        return Summary(kind.__qualname__, size, tensor_sample(value), reason)
    elif numpy is not None and issubclass(kind, numpy.ndarray):
        size = f"{value.dtype.str}:{list(value.shape)}"
    elif issubclass(kind, (list, tuple, dict)):
        base = list if issubclass(kind, list) else tuple if issubclass(kind, tuple) else dict
        size = f"len {base.__len__(value)}"
        items = dict.items(value) if base is dict else base.__iter__(value)
        for _, item in zip(range(SAMPLE_ITEMS), items):
            sample.update(_sample_text(item).encode("utf-8", "surrogatepass") + b"\0")
    return Summary(kind.__qualname__, size, f"xxh3_128:{sample.hexdigest()}", reason)


def _sample_text(item: Any) -> str:
    if type(item) is tuple and len(item) == 2:  # a dict's (key, value)
        return f"{_sample_text(item[0])}:{_sample_text(item[1])}"
    if type(item) in PLAIN_LEAVES:
        return f"{type(item).__name__}:{item!r}"[:1000]
    return type(item).__qualname__


def iter_leaves(value: Any, path: str, budget: Budget | None = None) -> Iterator[tuple[str, Any]]:
    """The leaves of one value in a fresh walk (no bulk leaves: `%%repro --save` names every element)."""
    walk = Walk(budget or Budget())
    yield from walk.add(value, path)
