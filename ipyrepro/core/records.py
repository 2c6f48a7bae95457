"""Small records that cost nothing to define.

`typing.NamedTuple` and `dataclass` write and `exec` code for every class they define:
0.2 ms for a named tuple, 0.3 to 1.3 ms for a dataclass. A fresh kernel's `%load_ext ipyrepro` +
`%repro on` defines thirteen records and has a budget of a few milliseconds in all
(benchmarks/bench_lazy_torch.py), so the records on that path subclass `Record` instead: the
fields are the class's annotations, in order, and defaults are plain class attributes, as in a
`NamedTuple`. Defining one costs what a plain class costs; the methods are shared.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar


class Record:
    """An immutable record with the API of a `NamedTuple` that ipyrepro uses.

    Positional or keyword construction, `==` by type and values, `hash`, a `repr` that reads as a
    call, unpacking (`a, b = record`), `_fields`, `_replace` and `_asdict`. Subclass with
    `mutable=True` for a record whose fields are assigned after construction; a mutable default
    (a list, a dict) is not allowed, since every instance would share it.
    """

    __slots__ = ()
    _fields: ClassVar[tuple[str, ...]] = ()
    _defaults: ClassVar[dict[str, Any]] = {}
    _mutable: ClassVar[bool] = False

    def __init_subclass__(cls, mutable: bool = False, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        own = tuple(
            name
            for name, annotation in cls.__dict__.get("__annotations__", {}).items()
            if not str(annotation).startswith(("ClassVar", "typing.ClassVar"))
        )
        defaults = {name: cls.__dict__[name] for name in own if name in cls.__dict__}
        shared = [name for name, value in defaults.items() if isinstance(value, (list, dict, set))]
        if shared:
            raise TypeError(f"{cls.__name__}: mutable defaults would be shared by every instance: {shared}")
        cls._fields = cls._fields + own
        cls._defaults = {**cls._defaults, **defaults}
        cls._mutable = mutable or cls._mutable

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        fields = self._fields
        if len(args) > len(fields):
            raise TypeError(f"{type(self).__name__} takes {len(fields)} fields, {len(args)} were given")
        values = dict(zip(fields, args))
        for name, value in kwargs.items():
            if name not in fields:
                raise TypeError(f"{type(self).__name__} has no field {name!r}")
            if name in values:
                raise TypeError(f"{type(self).__name__} got {name!r} twice")
            values[name] = value
        for name in fields:
            if name not in values:
                if name not in self._defaults:
                    raise TypeError(f"{type(self).__name__} needs {name!r}")
                values[name] = self._defaults[name]
        vars(self).update(values)

    def __setattr__(self, name: str, value: Any) -> None:
        if not self._mutable:
            raise AttributeError(f"{type(self).__name__} is immutable: use _replace({name}=...)")
        if name not in self._fields:
            raise AttributeError(f"{type(self).__name__} has no field {name!r}")
        object.__setattr__(self, name, value)

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"cannot delete {type(self).__name__}.{name}")

    def __iter__(self) -> Iterator[Any]:
        return iter(self.__dict__[name] for name in self._fields)

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self.__dict__ == other.__dict__

    def __hash__(self) -> int:
        if self._mutable:
            raise TypeError(f"unhashable type: {type(self).__name__!r}")
        return hash((type(self), tuple(self)))

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={self.__dict__[name]!r}" for name in self._fields)
        return f"{type(self).__name__}({shown})"

    def _replace(self, **changes: Any) -> Any:
        return type(self)(**{**self.__dict__, **changes})

    def _asdict(self) -> dict[str, Any]:
        return {name: self.__dict__[name] for name in self._fields}
