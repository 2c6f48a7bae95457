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
import types
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
    if record["kind"] == "bulk":
        return record.get("type") == "float"
    if record["kind"] not in ("tensor", "array"):
        return False
    dtype = record["dtype"]
    return "float" in dtype or "complex" in dtype or dtype[1:2] in ("f", "c")  # "<f4": NumPy's dtype.str


class StateDigester:
    """Digests a namespace; `tolerance` and `sanitizers` are set once per kernel by `configure`."""

    def __init__(self) -> None:
        from .walk import Budget

        self.tolerance = False
        self.sanitizers: tuple[tuple[re.Pattern[str], str], ...] = ()
        self.literals: tuple[tuple[str, ...] | None, ...] = ()
        self.budget = Budget()

    def configure(
        self, tolerance: bool, sanitizers: list[tuple[str, str]], budget: dict[str, Any] | None = None
    ) -> None:
        from .walk import Budget

        self.tolerance = bool(tolerance)
        self.budget = Budget(**(budget or {}))
        self.sanitizers = tuple((re.compile(pattern, re.MULTILINE), text) for pattern, text in sanitizers)
        self.literals = tuple(required_literals(pattern) for pattern, _ in self.sanitizers)

    def sanitized(self, text: str) -> str:
        """`text` through the sanitizers; a pattern whose required words (`required_literals`) are all absent is
        not run: a search for a word runs at memory speed, a regular expression over megabytes does not."""
        for (pattern, replacement), literals in zip(self.sanitizers, self.literals):
            if literals is None or any(literal in text for literal in literals):
                text = pattern.sub(replacement, text)
        return text

    # -- one digest of everything --------------------------------------------------------------

    def digest(self, namespace: dict[str, Any], hidden: dict[str, Any], source: str | None) -> dict[str, Any]:
        """The JSON-safe answer for one cell: digests per name, RNG states, skipped names, what the budgets
        summarised or could not read (path -> why), names read, and the seconds it took."""
        started = time.perf_counter()
        names, skipped = self._select(namespace, hidden)
        memo: dict[tuple[Any, ...], tuple[Any, dict[str, Any]]] = {}
        walk = self._walk()
        first = self._rngs(memo, walk, reuse_large=False)  # first: small, and never left to an exhausted budget
        first.update({name: self._name(value, name, memo, walk, reuse_large=False) for name, value in names.items()})
        again_walk = self._walk()
        again = self._rngs(memo, again_walk, reuse_large=True)
        again.update(
            {name: self._name(value, name, memo, again_walk, reuse_large=True) for name, value in names.items()}
        )
        for name in [name for name, record in first.items() if "nothing_digested" in record]:
            skipped[name] = first.pop(name)["nothing_digested"]
        unstable = sorted(name for name in first if again.get(name, {}).get("digest") != first[name]["digest"])
        for name in unstable:
            skipped[name] = "its digest changed between two digests in a row (not stable within one process)"
            del first[name]
        summarised = {path: why for path, why in walk.summarised.items() if not path.startswith("<")}
        for record in first.values():
            summarised.update(record.pop("unreadable_paths", {}))
        return {
            "names": {name: record for name, record in first.items() if not name.startswith("<")},
            "rngs": {name: record for name, record in first.items() if name.startswith("<")},
            "skipped": skipped,
            "summarised": summarised,
            "reads": _reads(source, namespace),
            "seconds": round(time.perf_counter() - started, 6),
        }

    def _walk(self) -> Any:
        from .walk import Walk

        return Walk(self.budget, bulk=True)

    def _select(self, namespace: dict[str, Any], hidden: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
        names: dict[str, Any] = {}
        skipped: dict[str, str] = {}
        for name, value in list(namespace.items()):
            if _IPYTHON_NAMES.match(name) or (name in hidden and hidden[name] is value):
                continue  # IPython's own names: history, outputs, the shell
            if issubclass(type(value), _SHARED_TYPES) or _is_ipython_internal(value):  # as %%repro leaves them out
                skipped[name] = _kind_of(value)
            else:
                names[name] = value
        return dict(sorted(names.items())), skipped

    def _name(self, value: Any, name: str, memo: dict, walk: Any, *, reuse_large: bool) -> dict[str, Any]:
        digests = _digests()
        built = _Name()
        try:
            found = walk.add(value, name, alone=True)
        except Exception as error:  # noqa: BLE001 - never expected (the walk records what it cannot read)
            found = [(name, _unreadable(value, error))]
        unreadable: dict[str, str] = {}
        for path, leaf in found:
            record = self._record(leaf, memo, reuse_large)
            built.leaves += 1
            relative = path[len(name) :]
            if record["kind"] in ("unsupported", "unreadable"):
                built.unsupported.append(relative or name)
                # an unreadable value is compared by its type, not the words of its error (they may hold addresses)
                why = record.get("type", "") if record["kind"] == "unreadable" else record.get("why", "")
                text = f"{relative}={record['kind']}:{why}"
                built.parts.append(text)
                built.exact.append(text)
                if record["kind"] == "unreadable":
                    unreadable[path] = f"unreadable {record.get('type')}: {record.get('why')}"
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
        if unreadable:
            answer["unreadable_paths"] = dict(list(unreadable.items())[:10])
        elif built.leaves and len(built.unsupported) == built.leaves:
            answer["nothing_digested"] = f"{type(value).__qualname__} has no byte representation to digest"
        if self.tolerance:
            answer["exact"] = _combined(digests, built.exact)
            answer["floats"] = built.floats if len(built.floats) <= MAX_FLOAT_RECORDS else [_summarised(built.floats)]
        return answer

    def _record(self, leaf: Any, memo: dict, reuse_large: bool) -> dict[str, Any]:
        digests = _digests()
        if type(leaf) is str and self.sanitizers:
            leaf = self.sanitized(leaf)
        if type(leaf).__name__ == "Bulk" and type(leaf).__module__ == "ipyrepro.comparison.walk":
            identity = ("bulk", id(leaf.items), len(leaf))
            if reuse_large and identity in memo and 8 * len(leaf) > STABLE_BYTES:
                return memo[identity][1]  # a long list read moments ago, as large tensors are
            record = self._bulk(leaf)
            memo.setdefault(identity, (leaf.items, record))
            return record
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

    def _bulk(self, bulk: Any) -> dict[str, Any]:
        """A long list of str, int or float in one pass: strings cleaned by the sanitizers all at once (joined by
        NUL, which no sanitizer matches), floats with their statistics when a tolerance needs them."""
        digests = _digests()
        text = None
        if bulk.kind == "str":
            text = self.sanitized(bulk.text if bulk.text is not None else "\0".join(bulk.items))
        record = digests.bulk_record(bulk, bulk.items, text)
        if bulk.kind == "float" and self.tolerance:
            record.update(dtype="float64", shape=[len(bulk)], stats=_float_stats(bulk.items))
        return record

    def _rngs(self, memo: dict, walk: Any, *, reuse_large: bool) -> dict[str, dict[str, Any]]:
        """The global RNG states, read without drawing and without importing anything."""
        import random

        found = {"<random>": self._name(random._inst, "<random>", memo, walk, reuse_large=reuse_large)}  # type: ignore[attr-defined]
        numpy_random = sys.modules.get("numpy.random")
        rand = getattr(getattr(numpy_random, "mtrand", None), "_rand", None)
        if rand is not None:
            found["<numpy.random>"] = self._name(rand, "<numpy.random>", memo, walk, reuse_large=reuse_large)
        torch = sys.modules.get("torch")
        if torch is not None and hasattr(torch, "default_generator"):
            found["<torch>"] = self._name(torch.default_generator, "<torch>", memo, walk, reuse_large=reuse_large)
            cuda = getattr(torch, "cuda", None)
            if cuda is not None and cuda.is_initialized():  # never initialise CUDA by looking
                for index, generator in enumerate(cuda.default_generators):
                    name = f"<torch.cuda:{index}>"
                    found[name] = self._name(generator, name, memo, walk, reuse_large=reuse_large)
        return found


def required_literals(pattern: re.Pattern[str]) -> tuple[str, ...] | None:
    """Words one of which any match of `pattern` contains (None: no such words could be read from it)."""
    if pattern.flags & re.IGNORECASE:
        return None
    try:
        from re import _parser as parser  # type: ignore[attr-defined]
    except ImportError:  # Python before 3.11
        import sre_parse as parser  # type: ignore[no-redef]
    try:
        return _literals_of(list(parser.parse(pattern.pattern, pattern.flags)), parser)
    except Exception:  # noqa: BLE001 - a pattern this reading does not follow is simply always run
        return None


def _literals_of(items: list[Any], parser: Any) -> tuple[str, ...] | None:
    constants = parser.LITERAL, parser.SUBPATTERN, parser.BRANCH
    options: list[tuple[str, ...]] = []
    run = ""
    for op, argument in items + [(None, None)]:
        if op is constants[0]:
            run += chr(argument)
            continue
        if run:
            options.append((run,))
        run = ""
        if op is constants[1]:
            found = _literals_of(list(argument[-1]), parser)
            options += [found] if found else []
        elif op is constants[2]:
            branches = [_literals_of(list(branch), parser) for branch in argument[1]]
            if all(branches):
                options.append(tuple(word for branch in branches for word in branch))  # type: ignore[union-attr]
    return max(options, key=lambda words: min(map(len, words)), default=None)


def _memory_key(leaf: Any) -> tuple[int, tuple[Any, ...]] | None:
    """(bytes, where and how the data lies) for tensors and arrays: equal keys, equal bytes within one digest."""
    torch = sys.modules.get("torch")
    if torch is not None and issubclass(type(leaf), torch.Tensor):
        from .tensordigest import dispatch_subclass, hashed_bytes, is_lazy, no_torch_function

        with no_torch_function():
            if dispatch_subclass(leaf) or is_lazy(leaf):
                return None
            if leaf.layout != torch.strided or leaf.is_quantized or leaf.is_conj() or leaf.is_neg():
                return None
            try:
                pointer = leaf.data_ptr()
            except RuntimeError:  # no storage (e.g. a fake or meta tensor)
                return None
            return hashed_bytes(leaf), (
                "tensor",
                str(leaf.device),
                pointer,
                leaf.storage_offset(),
                str(leaf.dtype),
                tuple(leaf.shape),
                tuple(leaf.stride()),
            )
    numpy = sys.modules.get("numpy")
    if numpy is not None and issubclass(type(leaf), numpy.ndarray) and not leaf.dtype.hasobject:
        leaf = numpy.ndarray.view(leaf, numpy.ndarray)
        pointer = leaf.__array_interface__["data"][0]
        return leaf.nbytes, ("array", pointer, leaf.dtype.str, leaf.shape, leaf.strides)
    return None


def _unreadable(value: Any, error: BaseException) -> Any:
    from .walk import Unreadable

    return Unreadable(type(value).__qualname__, f"{type(error).__name__}: {error}")


def _float_stats(items: Any) -> dict[str, Any]:
    """Statistics of a list of Python floats, in Python (no NumPy or torch imported for them)."""
    stats: dict[str, Any] = {"numel": len(items), "nan": 0, "posinf": 0, "neginf": 0}
    finite = [value for value in items if value - value == 0]
    stats["nan"] = sum(1 for value in items if value != value)
    stats["posinf"] = sum(1 for value in items if value == math.inf)
    stats["neginf"] = sum(1 for value in items if value == -math.inf)
    if not finite:
        return {**stats, **dict.fromkeys(_STAT_KEYS)}
    count = len(finite)
    values = [min(finite), max(finite), math.fsum(finite) / count, math.fsum(map(abs, finite)) / count]
    return {**stats, **dict(zip(_STAT_KEYS, values))}


def _combined(digests: Any, parts: list[str]) -> str:
    hasher = digests._hasher("state")
    for part in parts:
        hasher.update(part.encode("utf-8", "surrogatepass") + b"\0")
    return f"xxh3_128:{hasher.hexdigest()}"


def _float_entry(path: str, record: dict[str, Any]) -> dict[str, Any]:
    if record["kind"] in ("tensor", "array", "bulk"):
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


_SHARED_TYPES = (types.ModuleType, types.FunctionType, types.BuiltinFunctionType, types.MethodType, type)


def _is_ipython_internal(value: Any) -> bool:
    module = type(value).__module__ or ""
    return module.startswith("IPython.") and "IPython" in sys.modules


def _kind_of(value: Any) -> str:
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


def configure_kernel(tolerance: bool, sanitizers: list[list[str]], budget: dict[str, Any] | None = None) -> str:
    """The check's first call in each kernel: whether to carry tolerance data, how to clean strings, and the
    per-cell budget (`walk.Budget`'s fields; the defaults when None)."""
    try:
        DIGESTER.configure(tolerance, [(pattern, text) for pattern, text in sanitizers], budget)
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
