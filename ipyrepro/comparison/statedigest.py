"""The kernel side of `ipyrepro check`'s state digests: what the user namespace holds after a cell, as digests.

After each cell the check asks the kernel, in a silent execute request with an
empty cell (no execution count, no history entry, no output, no event that
re-seeds), to evaluate one `user_expressions` entry that calls `kernel_digest`.
It answers one JSON text: per name a digest of the value, built from the same
leaves and leaf records as `%%repro --save` (fingerprint.py: tensors on their
device, arrays, numbers, strings, bytes, containers, modules' parameters and
buffers, optimizers' state, generators' states), the global RNG states, the
names it skipped and why, and the names the cell reads. Values never leave the
kernel; digesting draws nothing from any RNG and binds no name.

A name counts only when it digests the same twice in a row in the kernel
(tensors larger than `STABLE_BYTES` are hashed once: nothing but another thread
could change them in between). Strings are digested after the check's
sanitizers (addresses, temporary paths), as outputs are compared.

With a tolerance (`--rtol/--atol`) each name also carries `exact`, a digest of
everything but floating-point data, and `floats`: the statistics of its float
tensors and arrays and the values of its float numbers, enough for the check to
tell "within tolerance" from "differs", as `%%repro --check` does.
"""

from __future__ import annotations

import json
import math
import re
import sys
import time
from dataclasses import dataclass, field
from typing import Any

STABLE_BYTES = 1 << 20  # tensors and arrays above this are hashed once per digest, not twice
MAX_FLOAT_RECORDS = 64  # per name; beyond it one record summarises all its floating-point data
_IPYTHON_NAMES = re.compile(r"^(_+|_i+|_i\d+|_\d+|_ih|_oh|_dh|In|Out|exit|quit|get_ipython|__.*__|_ipyrepro.*)$")
_FLOAT_KINDS = ("float", "complex")
_STAT_KEYS = ("min", "max", "mean", "abs_mean")
RNG_NAMES = {
    "<random>": "Python's global `random` generator",
    "<numpy.random>": "NumPy's global RandomState",
    "<torch>": "torch's default generator",
}


def _digests() -> Any:
    """The one digest implementation ipyrepro has (the leaves and leaf records of `%%repro --save`)."""
    from . import digests

    return digests


@dataclass
class _Name:
    """One name's digests while they are built."""

    parts: list[str] = field(default_factory=list)  # path and digest of every leaf, in order
    exact: list[str] = field(default_factory=list)  # the same, without floating-point data
    floats: list[dict[str, Any]] = field(default_factory=list)
    unsupported: list[str] = field(default_factory=list)
    leaves: int = 0


def _is_float_record(record: dict[str, Any]) -> bool:
    if record["kind"] in _FLOAT_KINDS:
        return True
    if record["kind"] not in ("tensor", "array"):
        return False
    dtype = record["dtype"]
    return "float" in dtype or "complex" in dtype or dtype[1:2] in ("f", "c")  # "<f4": NumPy's dtype.str


class StateDigester:
    """Digests a namespace; `tolerance` and `sanitizers` are set once per kernel by `configure`."""

    def __init__(self) -> None:
        self.tolerance = False
        self.sanitizers: tuple[tuple[re.Pattern[str], str], ...] = ()

    def configure(self, tolerance: bool, sanitizers: list[tuple[str, str]]) -> None:
        self.tolerance = bool(tolerance)
        self.sanitizers = tuple((re.compile(pattern, re.MULTILINE), text) for pattern, text in sanitizers)

    # -- one digest of everything --------------------------------------------------------------

    def digest(self, namespace: dict[str, Any], hidden: dict[str, Any], source: str | None) -> dict[str, Any]:
        """The JSON-safe answer for one cell: digests per name, RNG states, skipped names, names read."""
        started = time.perf_counter()
        names, skipped = self._select(namespace, hidden)
        memo: dict[tuple[Any, ...], tuple[Any, dict[str, Any]]] = {}
        first = {name: self._name(value, name, memo, reuse_large=False) for name, value in names.items()}
        first.update(self._rngs(memo, reuse_large=False))
        again = {name: self._name(value, name, memo, reuse_large=True) for name, value in names.items()}
        again.update(self._rngs(memo, reuse_large=True))
        for name in [name for name, record in first.items() if "nothing_digested" in record]:
            skipped[name] = first.pop(name)["nothing_digested"]
        unstable = sorted(name for name in first if again.get(name, {}).get("digest") != first[name]["digest"])
        for name in unstable:
            skipped[name] = "its digest changed between two digests in a row (not stable within one process)"
            del first[name]
        return {
            "names": {name: record for name, record in first.items() if not name.startswith("<")},
            "rngs": {name: record for name, record in first.items() if name.startswith("<")},
            "skipped": skipped,
            "reads": _reads(source, namespace),
            "seconds": round(time.perf_counter() - started, 6),
        }

    def _select(self, namespace: dict[str, Any], hidden: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
        from .snapshot import is_shared

        names: dict[str, Any] = {}
        skipped: dict[str, str] = {}
        for name, value in list(namespace.items()):
            if _IPYTHON_NAMES.match(name) or (name in hidden and hidden[name] is value):
                continue  # IPython's own names: history, outputs, the shell
            if is_shared(value) or _is_ipython_internal(value):  # as %%repro leaves them out
                skipped[name] = _kind_of(value)
            else:
                names[name] = value
        return dict(sorted(names.items())), skipped

    def _name(self, value: Any, name: str, memo: dict, *, reuse_large: bool) -> dict[str, Any]:
        digests = _digests()
        built = _Name()
        for path, leaf in digests.leaves(_packed(value, 0, self.tolerance), name):
            record = self._record(leaf, memo, reuse_large)
            built.leaves += 1
            relative = path[len(name) :]
            if record["kind"] == "unsupported":
                built.unsupported.append(relative or name)
                text = f"{relative}=unsupported:{record.get('why', '')}"
                built.parts.append(text)
                built.exact.append(text)
                continue
            built.parts.append(f"{relative}={record['digest']}")
            if self.tolerance and _is_float_record(record):
                built.exact.append(f"{relative}={record['kind']}:{record.get('dtype', '')}:{record.get('shape', '')}")
                built.floats.append(_float_entry(relative, record))
            else:
                built.exact.append(f"{relative}={record['digest']}")
        answer: dict[str, Any] = {"digest": _combined(digests, built.parts), "leaves": built.leaves}
        if built.unsupported:
            answer["unsupported"] = built.unsupported[:10]
            answer["unsupported_count"] = len(built.unsupported)
        if built.leaves and len(built.unsupported) == built.leaves:
            answer["nothing_digested"] = f"{type(value).__qualname__} has no byte representation to digest"
        if self.tolerance:
            answer["exact"] = _combined(digests, built.exact)
            answer["floats"] = built.floats if len(built.floats) <= MAX_FLOAT_RECORDS else [_summarised(built.floats)]
        return answer

    def _record(self, leaf: Any, memo: dict, reuse_large: bool) -> dict[str, Any]:
        digests = _digests()
        if isinstance(leaf, str) and self.sanitizers:
            for pattern, replacement in self.sanitizers:
                leaf = pattern.sub(replacement, leaf)
        key = _memory_key(leaf)
        if key is None:
            return digests.leaf_record(leaf, stats=self.tolerance)
        size, identity = key
        if identity in memo and (not reuse_large or size > STABLE_BYTES):
            # The same memory with the same layout, read moments ago: the same bytes. In the second pass only
            # large ones are reused; small ones are hashed again, so that instability shows.
            return memo[identity][1]
        record = digests.leaf_record(leaf, stats=self.tolerance)
        memo.setdefault(identity, (leaf, record))  # the leaf stays alive: no other data can take its address
        return record

    def _rngs(self, memo: dict, *, reuse_large: bool) -> dict[str, dict[str, Any]]:
        """The global RNG states, read without drawing and without importing anything."""
        import random

        found = {"<random>": self._name(random._inst, "<random>", memo, reuse_large=reuse_large)}  # type: ignore[attr-defined]
        numpy_random = sys.modules.get("numpy.random")
        rand = getattr(getattr(numpy_random, "mtrand", None), "_rand", None)
        if rand is not None:
            found["<numpy.random>"] = self._name(rand, "<numpy.random>", memo, reuse_large=reuse_large)
        torch = sys.modules.get("torch")
        if torch is not None and hasattr(torch, "default_generator"):
            found["<torch>"] = self._name(torch.default_generator, "<torch>", memo, reuse_large=reuse_large)
            cuda = getattr(torch, "cuda", None)
            if cuda is not None and cuda.is_initialized():  # never initialise CUDA by looking
                for index, generator in enumerate(cuda.default_generators):
                    name = f"<torch.cuda:{index}>"
                    found[name] = self._name(generator, name, memo, reuse_large=reuse_large)
        return found


PACK_AT = 16  # a list of at least this many floats (or ints) is digested as one array, not leaf by leaf


def _packed(value: Any, depth: int, tolerance: bool) -> Any:
    """`value` with long lists of plain floats or ints (a loss history, a `random.Random` state) as one leaf
    instead of thousands: a NumPy array when NumPy is imported (statistics for a tolerance work on it), else
    their bytes. Containers around them are rebuilt (paths stay the same); nothing else is copied."""
    import random

    if depth > 20:
        return value
    if isinstance(value, random.Random):
        return _packed(value.getstate(), depth + 1, tolerance)
    if type(value) is dict:
        packed = {key: _packed(item, depth + 1, tolerance) for key, item in value.items()}
        return packed if any(packed[key] is not value[key] for key in value) else value
    if type(value) in (list, tuple):
        if len(value) >= PACK_AT:
            whole = _as_one_leaf(value, tolerance)
            if whole is not None:
                return whole
        items = [_packed(item, depth + 1, tolerance) for item in value]
        return items if any(a is not b for a, b in zip(items, value)) else value
    return value


def _as_one_leaf(items: list[Any] | tuple[Any, ...], tolerance: bool) -> Any:
    import array

    kinds = {type(item) for item in items}
    if kinds not in ({float}, {int}):
        return None
    numpy = sys.modules.get("numpy")  # never imported for this
    try:
        if numpy is not None:
            return numpy.array(items, dtype=numpy.float64 if kinds == {float} else numpy.int64)
        if kinds == {int} or not tolerance:  # a tolerance needs the floats' statistics: leaf by leaf then
            return array.array("d" if kinds == {float} else "q", items).tobytes()
    except OverflowError:  # ints beyond 64 bits: leaf by leaf
        return None
    return None


def _memory_key(leaf: Any) -> tuple[int, tuple[Any, ...]] | None:
    """(bytes, where and how the data lies) for tensors and arrays: equal keys, equal bytes within one digest."""
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(leaf, torch.Tensor):
        if leaf.layout != torch.strided or leaf.is_quantized or leaf.is_conj() or leaf.is_neg():
            return None
        try:
            pointer = leaf.data_ptr()
        except RuntimeError:  # no storage (e.g. a fake or meta tensor)
            return None
        size = leaf.element_size() * leaf.numel()
        return size, (
            "tensor",
            str(leaf.device),
            pointer,
            leaf.storage_offset(),
            str(leaf.dtype),
            tuple(leaf.shape),
            tuple(leaf.stride()),
        )
    numpy = sys.modules.get("numpy")
    if numpy is not None and isinstance(leaf, numpy.ndarray) and not leaf.dtype.hasobject:
        pointer = leaf.__array_interface__["data"][0]
        return leaf.nbytes, ("array", pointer, leaf.dtype.str, leaf.shape, leaf.strides)
    return None


def _combined(digests: Any, parts: list[str]) -> str:
    hasher = digests._hasher("state")
    for part in parts:
        hasher.update(part.encode("utf-8", "surrogatepass") + b"\0")
    return f"xxh3_128:{hasher.hexdigest()}"


def _float_entry(path: str, record: dict[str, Any]) -> dict[str, Any]:
    if record["kind"] in ("tensor", "array"):
        return {"path": path, "kind": record["kind"], "stats": record.get("stats")}
    return {"path": path, "kind": record["kind"], "value": record["value"]}


def _summarised(entries: list[dict[str, Any]]) -> dict[str, Any]:
    """One statistics record for many float leaves: counts add up, min/max over all, means weighted."""
    numel = nan = posinf = neginf = 0
    low, high, total, absolute, finite = math.inf, -math.inf, 0.0, 0.0, 0
    complete = True
    for entry in entries:
        if "stats" in entry:
            stats = entry["stats"]
            if stats is None:
                complete = False
                continue
            numel += stats["numel"]
            nan, posinf, neginf = nan + stats["nan"], posinf + stats["posinf"], neginf + stats["neginf"]
            count = stats["numel"] - stats["nan"] - stats["posinf"] - stats["neginf"]
            if count and stats["mean"] is not None:
                low, high = min(low, stats["min"]), max(high, stats["max"])
                total += stats["mean"] * count
                absolute += stats["abs_mean"] * count
                finite += count
            continue
        values = _values_of(entry)
        for value in values:
            numel += 1
            if math.isnan(value):
                nan += 1
            elif math.isinf(value):
                posinf, neginf = posinf + (value > 0), neginf + (value < 0)
            else:
                low, high, total, absolute, finite = (
                    min(low, value),
                    max(high, value),
                    total + value,
                    absolute + abs(value),
                    finite + 1,
                )
    stats: dict[str, Any] = {"numel": numel, "nan": nan, "posinf": posinf, "neginf": neginf}
    if finite:
        stats.update(min=low, max=high, mean=total / finite, abs_mean=absolute / finite)
    else:
        stats.update(dict.fromkeys(_STAT_KEYS))
    return {"path": f"({len(entries)} floating-point entries)", "kind": "summary", "stats": stats if complete else None}


def _values_of(entry: dict[str, Any]) -> list[float]:
    if entry["kind"] == "float":
        return [float.fromhex(entry["value"])]
    real, imaginary = entry["value"].split(",")
    return [float.fromhex(real), float.fromhex(imaginary)]


def _is_ipython_internal(value: Any) -> bool:
    module = type(value).__module__ or ""
    return module.startswith("IPython.") and "IPython" in sys.modules


def _kind_of(value: Any) -> str:
    import types

    if isinstance(value, types.ModuleType):
        return "module"
    if isinstance(value, type):
        return "class"
    if callable(value) and isinstance(value, (types.FunctionType, types.BuiltinFunctionType, types.MethodType)):
        return "function"
    return f"{type(value).__qualname__} (IPython's own)"


def _reads(source: str | None, namespace: dict[str, Any]) -> list[str] | None:
    """The names the cell reads, with the globals of notebook functions it calls; None when unknown."""
    if source is None:
        return None
    import ast

    from .snapshot import cell_names

    try:
        from IPython import get_ipython

        shell = get_ipython()
        code = shell.transform_cell(source) if shell is not None else source
        tree = ast.parse(code)
    except (SyntaxError, ValueError, ImportError):
        return None
    names = cell_names(tree, namespace)
    return sorted(set(names.read))


DIGESTER = StateDigester()


def configure_kernel(tolerance: bool, sanitizers: list[list[str]]) -> str:
    """The check's first call in each kernel: whether to carry tolerance data, and how to clean strings."""
    try:
        DIGESTER.configure(tolerance, [(pattern, text) for pattern, text in sanitizers])
    except Exception as error:  # report, never break the notebook's run
        return json.dumps({"error": f"{type(error).__name__}: {error}"})
    return json.dumps({"ok": True})


def kernel_digest(source: str | None = None) -> str:
    """The check's call after each cell (through user_expressions): one JSON text, or {"error": ...}."""
    try:
        from IPython import get_ipython

        shell = get_ipython()
        namespace = shell.user_ns if shell is not None else sys.modules["__main__"].__dict__
        hidden = getattr(shell, "user_ns_hidden", {}) if shell is not None else {}
        return json.dumps(DIGESTER.digest(namespace, hidden, source), allow_nan=False, default=str)
    except Exception as error:  # report, never break the notebook's run
        return json.dumps({"error": f"{type(error).__name__}: {error}"})
