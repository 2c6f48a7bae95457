"""Reading a fingerprint file whole: strict JSON, then every section and field checked for type and range.

A fingerprint may come from another machine, another version, or a hand edit. Nothing
in it is trusted: numbers must be finite and short (no NaN, no infinity, no 4,000-digit
integer echoed back), every section of the environment must be there and hold what
`env/numerics.py` writes, every cell record and trace entry must have its fields with
their types. The first problem found is one line naming the file, the field and the fix;
nothing malformed ever reaches a comparison, so no malformed file gets a verdict.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

MAX_DIGITS = 20  # of any integer in the file: seeds are below 2**64
MAX_TEXT = 4096  # characters of any string but a preview
MAX_PREVIEW = 4096
MAX_THREADS = 1 << 16
DIGEST = re.compile(r"xxh3_128:[0-9a-f]{32}")


class FingerprintError(ValueError):
    """A fingerprint file that cannot be used; the message names the file, the problem and the fix."""


class _Bad(Exception):
    """A field that is not what it must be: its dotted path and what it must hold."""

    def __init__(self, path: str, must: str, value: Any = None, shown: bool = True) -> None:
        super().__init__(path, must)
        self.path, self.must, self.value, self.shown = path, must, value, shown

    def text(self) -> str:
        found = f", not {_short(self.value)}" if self.shown else ""
        return f'"{_printable(self.path)}" must be {self.must}{found}'


def _printable(path: str) -> str:
    """A dotted path as one printable line: a name from the file may hold line breaks or control characters."""
    if path.isprintable():
        return path
    return "".join(char if char.isprintable() else ascii(char)[1:-1] for char in path)


def parse(raw: bytes, where: str) -> Any:
    """Strict JSON: NaN, Infinity, numbers that overflow to infinity and overlong integers are refused."""

    def constant(name: str) -> Any:
        raise ValueError(f"{name} is not a JSON number")

    def number(text: str) -> float:
        value = float(text)
        if value in (float("inf"), float("-inf")):
            raise ValueError(f"the number {text[:20]}{'...' if len(text) > 20 else ''} is out of range")
        return value

    def integer(text: str) -> int:
        if len(text.lstrip("-")) > MAX_DIGITS:
            raise ValueError(f"an integer of {len(text.lstrip('-'))} digits is out of range")
        return int(text)

    try:
        return json.loads(raw.decode("utf-8"), parse_constant=constant, parse_float=number, parse_int=integer)
    except (UnicodeDecodeError, ValueError, RecursionError) as error:
        reason = str(error).splitlines()[0][:200]
        raise FingerprintError(f"{where} is not valid JSON ({reason}); write it again with --save") from None


def validate(data: dict[str, Any], where: str, *, cells_required: bool) -> None:
    """Check the document (format and schema already checked) whole; the first problem is a FingerprintError."""
    try:
        _document(data, cells_required)
    except _Bad as bad:
        raise FingerprintError(
            f"{where}: {bad.text()}; write it again with `ipyrepro check NB --save FILE.json`"
        ) from None


# -- the document ----------------------------------------------------------------------------


def _document(data: dict[str, Any], cells_required: bool) -> None:
    _optional(data, "created", _text, "created")
    _optional(data, "notebook", _text, "notebook")
    if data.get("options") is not None:
        _options(_mapping(data["options"], "options"))
    _environment(data.get("environment"))
    cells = data.get("cells")
    if cells is None and cells_required:
        raise _Bad(
            "cells", "a list of cell records (this file has only an environment: nothing to compare)", shown=False
        )
    if cells is not None:
        _cells(cells)
    trace = data.get("trace")
    if trace is not None:
        if not isinstance(trace, list):
            raise _Bad("trace", "a list of cell traces or null", trace)
        for number, entry in enumerate(trace):
            _trace(entry, f"trace[{number}]")


def _options(options: dict[str, Any]) -> None:
    _optional(options, "seed", lambda v, p: _integer(v, p, 0, (1 << 64) - 1), "options.seed")
    _optional(options, "reseed", _text, "options.reseed")
    for flag in ("as_is", "portable", "trace_ops"):
        _optional(options, flag, _boolean, f"options.{flag}")
    if options.get("sanitize") is not None:
        for number, item in enumerate(_sequence(options["sanitize"], "options.sanitize")):
            _text(item, f"options.sanitize[{number}]")


# -- the environment (env/numerics.py) -----------------------------------------------------


def _text_or_none(value: Any, path: str) -> None:
    if value is not None:
        _text(value, path)


def _scalar(value: Any, path: str) -> None:
    """A flag's value: true/false, a short string, a bounded integer, or null."""
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, int):
        _integer(value, path, -(1 << 63), 1 << 63)
        return
    _text(value, path)


def _version(value: Any, path: str) -> None:
    if value is not None and not isinstance(value, str):
        _integer(value, path, 0, 1 << 40)  # cuDNN reports an integer (91000)
    elif value is not None:
        _text(value, path)


def _text_list(value: Any, path: str) -> None:
    if value is not None:
        for number, item in enumerate(_sequence(value, path)):
            _text(item, f"{path}[{number}]")


def _threads(value: Any, path: str) -> None:
    _integer(value, path, 1, MAX_THREADS)


SECTIONS: dict[str, tuple[dict[str, Callable[[Any, str], None]], Callable[[Any, str], None], tuple[str, ...]]] = {
    # section: (known fields and their check, the check of any other field, the fields that must be there)
    "software": ({"cudnn": _version}, _text_or_none, ("torch",)),
    "gpu": (
        {"names": _text_list, "capability": _text_list, "driver": _text_or_none, "cuda_driver": _text_or_none},
        _text_or_none,
        ("names",),
    ),
    "cpu": ({}, _text_or_none, ("capability",)),
    "threads": ({"intra_op": _threads, "inter_op": _threads}, _threads, ("intra_op", "inter_op")),
    "variables": ({}, _text_or_none, ()),
    "precision": ({}, _scalar, ()),
    "determinism": ({}, _scalar, ()),
    "ipyrepro": (
        {
            "enabled": lambda v, p: v is None or _boolean(v, p),
            "portable": lambda v, p: v is None or _boolean(v, p),
            "seed": lambda v, p: v is None or _integer(v, p, 0, (1 << 64) - 1),
        },
        _text_or_none,
        (),
    ),
}


def _environment(environment: Any) -> None:
    environment = _mapping(environment, "environment", "an object with the numerics environment")
    _integer(environment.get("schema"), "environment.schema", 1, 1)
    for name in environment:
        if name != "schema" and name not in SECTIONS:
            raise _Bad(f"environment.{name}", f"one of the known sections ({', '.join(SECTIONS)})", shown=False)
    for name, (fields, other, required) in SECTIONS.items():
        if name not in environment:
            raise _Bad(f"environment.{name}", "there (an object)", shown=False)
        section = _mapping(environment[name], f"environment.{name}")
        for field in required:
            if field not in section:
                raise _Bad(f"environment.{name}.{field}", "there", shown=False)
        for field, value in section.items():
            _text(field, f"environment.{name} (a field name)")
            fields.get(field, other)(value, f"environment.{name}.{field}")


# -- cells and traces ------------------------------------------------------------------------


def _cells(cells: Any) -> None:
    cells = _sequence(cells, "cells", "a non-empty list of cell records")
    if not cells:
        raise _Bad("cells", "a non-empty list of cell records (a fingerprint of no cells compares nothing)", cells)
    seen: set[int] = set()
    for number, cell in enumerate(cells):
        path = f"cells[{number}]"
        cell = _mapping(cell, path, "a cell record (index, source, outputs)")
        index = _integer(cell.get("index"), f"{path}.index", 0, 1 << 24)
        if index in seen:
            raise _Bad(f"{path}.index", "unique", index)
        seen.add(index)
        _optional(cell, "code_index", lambda v, p: _integer(v, p, 0, 1 << 24), f"{path}.code_index")
        _optional(cell, "cell_id", _text, f"{path}.cell_id")
        _digest(cell.get("source"), f"{path}.source")
        for position, item in enumerate(_sequence(cell.get("outputs"), f"{path}.outputs")):
            where = f"{path}.outputs[{position}]"
            item = _mapping(item, where, "an output record (output, digest, preview)")
            _text(item.get("output"), f"{where}.output")
            _digest(item.get("digest"), f"{where}.digest")
            _optional(item, "preview", lambda v, p: _text(v, p, MAX_PREVIEW), f"{where}.preview")
        state = cell.get("state")
        if state is not None:
            for name, digest in _mapping(state, f"{path}.state", "an object of name: digest, or null").items():
                _text(name, f"{path}.state (a name)")
                _text(digest, f"{path}.state.{name}")


def _trace(entry: Any, path: str) -> None:
    entry = _mapping(entry, path, "a cell trace (cell, cap, truncated, ops)")
    if not isinstance(entry.get("cell"), (str, int)) or isinstance(entry.get("cell"), bool):
        raise _Bad(f"{path}.cell", "a cell id", entry.get("cell"))
    _present(entry, "cap", lambda v, p: _integer(v, p, 1, 1 << 40), f"{path}.cap")
    _present(entry, "truncated", lambda v, p: _integer(v, p, 0, 1 << 40), f"{path}.truncated")
    for number, op in enumerate(_sequence(entry.get("ops", []), f"{path}.ops")):
        where = f"{path}.ops[{number}]"
        op = _mapping(op, where, "an op record (op, device, inputs, outputs, file, line, code)")
        _text(op.get("op"), f"{where}.op")
        for name in ("device", "file", "code"):
            _present(op, name, _text, f"{where}.{name}")
        for name in ("inputs", "outputs"):
            if name in op:
                for position, item in enumerate(_sequence(op[name], f"{where}.{name}")):
                    _text(item, f"{where}.{name}[{position}]")
        _present(op, "line", lambda v, p: _integer(v, p, 0, 1 << 40), f"{where}.line")


# -- leaves ------------------------------------------------------------------------------------


def _optional(container: dict[str, Any], key: str, check: Callable[[Any, str], Any], path: str) -> None:
    if container.get(key) is not None:
        check(container[key], path)


def _present(container: dict[str, Any], key: str, check: Callable[[Any, str], Any], path: str) -> None:
    """A field that may be left out, but not given as null: it is read as its type."""
    if key in container:
        check(container[key], path)


def _mapping(value: Any, path: str, must: str = "an object") -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _Bad(path, must, value)
    return value


def _sequence(value: Any, path: str, must: str = "a list") -> list[Any]:
    if not isinstance(value, list):
        raise _Bad(path, must, value)
    return value


def _text(value: Any, path: str, limit: int = MAX_TEXT) -> str:
    if not isinstance(value, str):
        raise _Bad(path, "a string", value)
    if len(value) > limit:
        raise _Bad(path, f"at most {limit} characters long", shown=False)
    return value


def _boolean(value: Any, path: str) -> bool:
    if not isinstance(value, bool):
        raise _Bad(path, "true or false", value)
    return value


def _integer(value: Any, path: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Bad(path, "an integer" if low != high else f"{low}", value)
    if not low <= value <= high:
        raise _Bad(path, f"{low}" if low == high else f"an integer from {low} to {high}", value)
    return value


def _digest(value: Any, path: str) -> None:
    if not isinstance(value, str) or not DIGEST.fullmatch(value):
        raise _Bad(path, "a digest (xxh3_128: and 32 hexadecimal digits)", value)


def _short(value: Any) -> str:
    text = json.dumps(value, allow_nan=False)
    return text if len(text) <= 40 else text[:37] + "..."
