"""Which names a cell touches, and a deep-copy snapshot of them to restore before each rerun.

The names come from the cell's AST: every name it binds at top level, and every
name it reads (a read name may be mutated in place: `model.fit(x)`, `xs.append(1)`).
Functions defined in the notebook add the globals their code reads, since calling
`train()` can mutate `model` without the cell naming it.
"""

from __future__ import annotations

import ast
import contextlib
import copy
import inspect
import os
import sys
import types
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

# What a snapshot never copies: code and namespaces that a cell uses but does not own.
_SHARED_TYPES = (
    types.ModuleType,
    types.FunctionType,
    types.BuiltinFunctionType,
    types.MethodType,
    type,
)

# A snapshot larger than this on one device, or than a quarter of that device's memory,
# makes `%%repro` warn and suggest `--no-restore`.
SNAPSHOT_WARN_BYTES = 1 << 30


@dataclass(frozen=True)
class CellNames:
    """The top-level names a cell binds and the names it (or a notebook function it calls) reads."""

    bound: tuple[str, ...]
    read: tuple[str, ...]

    @property
    def touched(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(self.bound + self.read))


class _ScopeVisitor(ast.NodeVisitor):
    """Collects module-scope bindings and all loads; does not enter function or class bodies for bindings."""

    def __init__(self) -> None:
        self.bound: dict[str, None] = {}
        self.read: dict[str, None] = {}
        self._depth = 0  # > 0 inside a function, lambda, class body or comprehension

    def _bind(self, name: str) -> None:
        if self._depth == 0:
            self.bound[name] = None

    def visit_Name(self, node: ast.Name) -> None:
        if isinstance(node.ctx, ast.Load):
            self.read[node.id] = None
        else:
            self._bind(node.id)
            if isinstance(node.ctx, ast.Del):
                self.read[node.id] = None

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        if isinstance(node.target, ast.Name):
            self.read[node.target.id] = None
        self.generic_visit(node)

    def visit_Global(self, node: ast.Global) -> None:
        for name in node.names:  # `global x` in a function body binds the notebook's x
            self.bound[name] = None
            self.read[name] = None

    def visit_NamedExpr(self, node: ast.NamedExpr) -> None:
        # A walrus binds in the enclosing scope, even inside a comprehension.
        if isinstance(node.target, ast.Name) and (self._depth == 0 or self._in_comprehension_only):
            self.bound[node.target.id] = None
        self.visit(node.value)

    _in_comprehension_only = False

    def _visit_scope(self, body: Iterable[ast.AST], *, comprehension: bool = False) -> None:
        saved = self._in_comprehension_only
        self._in_comprehension_only = comprehension and (self._depth == 0 or saved)
        self._depth += 1
        for child in body:
            self.visit(child)
        self._depth -= 1
        self._in_comprehension_only = saved

    def _visit_function(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) -> None:
        for decorator in getattr(node, "decorator_list", []):
            self.visit(decorator)
        args = node.args
        for default in [*args.defaults, *[d for d in args.kw_defaults if d is not None]]:
            self.visit(default)
        if not isinstance(node, ast.Lambda):
            self._bind(node.name)
            if node.returns is not None:
                self.visit(node.returns)
        body = [node.body] if isinstance(node, ast.Lambda) else node.body
        self._visit_scope(body)

    visit_FunctionDef = _visit_function
    visit_AsyncFunctionDef = _visit_function
    visit_Lambda = _visit_function

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        for item in [*node.decorator_list, *node.bases, *node.keywords]:
            self.visit(item)
        self._bind(node.name)
        self._visit_scope(node.body)

    def _visit_comprehension(self, node: ast.AST) -> None:
        self._visit_scope([child for child in ast.iter_child_nodes(node)], comprehension=True)

    visit_ListComp = _visit_comprehension
    visit_SetComp = _visit_comprehension
    visit_DictComp = _visit_comprehension
    visit_GeneratorExp = _visit_comprehension

    def _visit_import(self, node: ast.Import | ast.ImportFrom) -> None:
        for alias in node.names:
            if alias.name != "*":
                self._bind(alias.asname or alias.name.split(".")[0])

    visit_Import = _visit_import
    visit_ImportFrom = _visit_import

    def visit_ExceptHandler(self, node: ast.ExceptHandler) -> None:
        if node.name:
            self._bind(node.name)
        self.generic_visit(node)

    def visit_MatchAs(self, node: ast.AST) -> None:
        name = getattr(node, "name", None)
        if name:
            self._bind(name)
        self.generic_visit(node)

    def visit_MatchStar(self, node: ast.AST) -> None:
        self.visit_MatchAs(node)

    def visit_MatchMapping(self, node: ast.AST) -> None:
        rest = getattr(node, "rest", None)
        if rest:
            self._bind(rest)
        self.generic_visit(node)


def cell_names(tree: ast.Module, namespace: Mapping[str, Any] | None = None) -> CellNames:
    """The names `tree` binds and reads; with `namespace`, also the globals read by notebook functions it calls."""
    visitor = _ScopeVisitor()
    visitor.visit(tree)
    read = dict(visitor.read)
    if namespace is not None:
        for name in _globals_of_functions(list(read), namespace):
            read.setdefault(name, None)
    return CellNames(tuple(visitor.bound), tuple(read))


def _globals_of_functions(names: list[str], namespace: Mapping[str, Any]) -> list[str]:
    """Globals read by functions (and methods of classes) defined in this namespace, followed transitively."""
    found: dict[str, None] = {}
    pending = list(names)
    seen_code: set[int] = set()
    while pending:
        value = namespace.get(pending.pop())
        for code in _notebook_code(value, namespace):
            if id(code) in seen_code:
                continue
            seen_code.add(id(code))
            for name in _code_names(code):
                if name in namespace and name not in found:
                    found[name] = None
                    pending.append(name)
    return list(found)


def _notebook_code(value: Any, namespace: Mapping[str, Any]) -> list[types.CodeType]:
    functions: list[Any] = []
    if isinstance(value, types.FunctionType):
        functions = [value]
    elif isinstance(value, type):
        functions = [item for item in vars(value).values() if isinstance(item, types.FunctionType)]
    return [fn.__code__ for fn in functions if fn.__globals__ is namespace]


def _code_names(code: types.CodeType) -> list[str]:
    names = list(code.co_names)
    for const in code.co_consts:  # nested functions, lambdas and comprehensions
        if inspect.iscode(const):
            names.extend(_code_names(const))
    return names


def is_shared(value: Any) -> bool:
    """Modules, functions and classes: kept by reference, never copied and never compared automatically."""
    return isinstance(value, _SHARED_TYPES)


_MISSING = object()


@dataclass
class Snapshot:
    """Copies of the names a cell touches, taken before its first run.

    `restore()` puts fresh copies back (so every run starts from equal state);
    `restore_originals()` puts back the very objects that were there, so the
    final run works on the user's own objects and other references to them stay valid.
    """

    originals: dict[str, Any]
    copies: dict[str, Any]
    absent: tuple[str, ...]  # touched names that did not exist before the cell
    not_copied: dict[str, str] = field(default_factory=dict)  # name -> why it is kept by reference
    nbytes: int = 0
    bytes_by_device: dict[str, int] = field(default_factory=dict)
    pairs: list[tuple[Any, Any]] = field(default_factory=list, repr=False)  # (original, its copy), every object
    handed_over: bool = False  # the copies went to a run (restore(hand_over=True)) and must be retaken
    copied_names: tuple[str, ...] = ()
    _handed: dict[str, tuple[Any, Any]] = field(default_factory=dict, repr=False)

    @classmethod
    def take(cls, namespace: Mapping[str, Any], names: CellNames) -> Snapshot:
        read = set(names.read)
        originals: dict[str, Any] = {}
        to_copy: dict[str, Any] = {}
        absent: list[str] = []
        not_copied: dict[str, str] = {}
        for name in names.touched:
            value = namespace.get(name, _MISSING)
            if value is _MISSING:
                absent.append(name)
                continue
            originals[name] = value
            # A name the cell only rebinds cannot be changed through it: keeping the reference is enough.
            if name in read and not is_shared(value):
                to_copy[name] = value
        memo: dict[int, Any] = {}
        copies, failures = _deep_copy_all(to_copy, memo)
        not_copied.update(failures)
        snapshot = cls(
            originals, copies, tuple(absent), not_copied, pairs=_copied_pairs(memo), copied_names=tuple(copies)
        )
        snapshot.nbytes, snapshot.bytes_by_device = measure(list(copies.values()))
        return snapshot

    def restore(self, namespace: dict[str, Any], *, hand_over: bool = False) -> None:
        """Fresh copies of the snapshot into `namespace`; names the cell created are removed.

        The originals go back first, so that the previous run's copies can be freed before the
        new ones are made. `hand_over` puts the snapshot's own copies in instead of copies of
        them (no second copy in memory); `retake` makes the snapshot again before it is needed.
        """
        self._put(namespace, {})
        if hand_over:
            fresh, self.copies, self.handed_over = self.copies, {}, True
            self.pairs = []  # they pointed at the copies this run will change; retake makes new ones
            self._handed = {name: (value, _unchanged_mark(value)) for name, value in fresh.items()}
        else:
            fresh, _ = _deep_copy_all(self.copies)
        self._put(namespace, fresh)

    def retake(self) -> None:
        """After `restore(hand_over=True)`: copy the originals again, which nothing has changed yet."""
        if not self.handed_over:
            return
        # A plain tensor the run did not change in place (same version counter, memory, shape, no
        # grad) is still an exact copy: it is kept, and shared with the rest through the memo.
        reused = {
            name: value
            for name, (value, mark) in self._handed.items()
            if mark is not None and _unchanged_mark(value) == mark
        }
        memo = {id(self.originals[name]): value for name, value in reused.items()}
        self._handed = {}  # what was changed can be freed before it is copied again
        self.pairs = []
        rest = {name: self.originals[name] for name in self.copied_names if name not in reused}
        copies, _ = _deep_copy_all(rest, memo)
        self.copies = {name: reused[name] if name in reused else copies[name] for name in self.copied_names}
        self.pairs = _copied_pairs(memo) + [(self.originals[name], value) for name, value in reused.items()]
        self.handed_over = False

    def restore_originals(self, namespace: dict[str, Any]) -> None:
        self._put(namespace, {})

    def restore_contents(self) -> dict[str, str]:
        """The snapshot's contents back into the user's own objects, in place (after the last run failed);
        returns {type: why} for objects that could not be restored."""
        from .inplace import restore_in_place

        return restore_in_place(self.pairs)

    def _put(self, namespace: dict[str, Any], copies: Mapping[str, Any]) -> None:
        for name in self.absent:
            namespace.pop(name, None)
        for name, value in self.originals.items():
            namespace[name] = copies.get(name, value)


def _unchanged_mark(value: Any) -> tuple[Any, ...] | None:
    """For a plain tensor without grad: what an in-place change through torch would alter; else None.

    (Writes that bypass the version counter, through `.data` or a NumPy view, are not seen; they
    only matter to what a failing last run or the diagnosis rerun starts from, never to the runs.)
    """
    torch = sys.modules.get("torch")
    if torch is None or type(value) is not torch.Tensor or value.requires_grad or value.layout != torch.strided:
        return None
    if value.__dict__:
        return None
    return (value._version, value.data_ptr(), tuple(value.shape), value.stride(), value.dtype, value.device)


def _deep_copy_all(
    values: Mapping[str, Any], memo: dict[int, Any] | None = None
) -> tuple[dict[str, Any], dict[str, str]]:
    """Deep-copy the values with one shared memo, so objects shared between names stay shared
    (an optimizer keeps pointing at the copied model's parameters). A value that cannot be copied
    is kept by reference, with the reason. `memo` may say what some objects are copied as."""
    memo = {} if memo is None else memo
    copies: dict[str, Any] = {}
    failures: dict[str, str] = {}
    for name, value in values.items():
        try:
            copies[name] = _copy(value, memo)
        except Exception as error:
            copies[name] = value
            failures[name] = f"{type(error).__name__}: {error}".split("\n")[0]
    _copy_gradients(memo)
    return copies, failures


def _copy_gradients(memo: dict[int, Any]) -> None:
    """`nn.Parameter` copies drop `.grad`: give them a copy of it, so a run that accumulates into
    existing gradients starts from them (and a failed last run can put them back)."""
    torch = sys.modules.get("torch")
    if torch is None:
        return
    for original in list(memo.get(id(memo), [])):
        if isinstance(original, torch.Tensor) and original.is_leaf and original.grad is not None:
            copied = memo.get(id(original))
            if isinstance(copied, torch.Tensor) and copied is not original and copied.grad is None:
                with contextlib.suppress(RuntimeError, TypeError):  # a grad the copy cannot take: none
                    copied.grad = copy.deepcopy(original.grad, memo)


def _copy(value: Any, memo: dict[int, Any]) -> Any:
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(value, torch.Tensor) and value.grad_fn is not None:
        # Not a graph leaf: deepcopy refuses it. Detach and clone: the values survive, the graph cannot.
        if id(value) not in memo:
            memo[id(value)] = value.detach().clone()
            _keep(value, memo)
        return memo[id(value)]
    if type(value) in (list, tuple, dict):
        if id(value) in memo:
            return memo[id(value)]
        _keep(value, memo)
        if isinstance(value, dict):
            result: Any = {}
            memo[id(value)] = result
            for key, item in value.items():
                result[key] = _copy(item, memo)
            return result
        if isinstance(value, list):
            result = []
            memo[id(value)] = result  # before the items: a list may contain itself
            result.extend(_copy(item, memo) for item in value)
            return result
        result = tuple(_copy(item, memo) for item in value)
        memo[id(value)] = result
        return result
    return copy.deepcopy(value, memo)


def _keep(value: Any, memo: dict[int, Any]) -> None:
    """Record the original, as copy.deepcopy does for what it copies, so its copy can be paired with it."""
    memo.setdefault(id(memo), []).append(value)  # type: ignore[arg-type]


def _copied_pairs(memo: dict[int, Any]) -> list[tuple[Any, Any]]:
    """(original, copy) for every object the memo copied: what `restore_contents` puts back in place."""
    pairs: dict[int, tuple[Any, Any]] = {}
    for original in memo.get(id(memo), []):
        copy = memo.get(id(original), original)
        if copy is not original:
            pairs.setdefault(id(original), (original, copy))
    return list(pairs.values())


def measure(values: list[Any]) -> tuple[int, dict[str, int]]:
    """Bytes of tensor and array data reachable from `values` (each storage counted once), by device."""
    by_device: dict[str, int] = {}
    seen: set[int] = set()
    storages: set[tuple[str, int]] = set()
    torch = sys.modules.get("torch")
    np = sys.modules.get("numpy")

    def add(device: str, nbytes: int) -> None:
        by_device[device] = by_device.get(device, 0) + nbytes

    def visit(value: Any, depth: int) -> None:
        if depth > 12 or id(value) in seen:
            return
        seen.add(id(value))
        if torch is not None and isinstance(value, torch.Tensor):
            try:
                storage = value.untyped_storage()
                key = (str(value.device), storage.data_ptr())
                if key not in storages:
                    storages.add(key)
                    add(str(value.device), storage.nbytes())
            except (RuntimeError, NotImplementedError):  # sparse, meta and other storage-less tensors
                add(str(value.device), value.element_size() * value.numel())
            return
        if np is not None and isinstance(value, np.ndarray):
            add("cpu", value.nbytes)
            return
        if torch is not None and isinstance(value, torch.nn.Module):
            for tensor in [*value.parameters(), *value.buffers()]:
                visit(tensor, depth + 1)
            return
        if torch is not None and isinstance(value, torch.optim.Optimizer):
            for state in value.state.values():
                visit(state, depth + 1)
            return
        if isinstance(value, dict):
            for item in value.values():
                visit(item, depth + 1)
        elif isinstance(value, (list, tuple, set, frozenset)):
            for item in value:
                visit(item, depth + 1)
        elif isinstance(value, (str, bytes, bytearray)):
            add("cpu", len(value))
        elif hasattr(value, "__dict__") and not is_shared(value):
            visit(vars(value), depth + 1)

    for value in values:
        visit(value, 0)
    return sum(by_device.values()), by_device


def device_memory(device: str) -> int | None:
    """Total memory of a device, when it can be read without initialising anything; else None."""
    try:
        if device == "cpu":
            return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        torch = sys.modules.get("torch")
        if torch is not None and device.startswith("cuda") and torch.cuda.is_initialized():
            index = int(device.partition(":")[2] or torch.cuda.current_device())
            return int(torch.cuda.get_device_properties(index).total_memory)
    except (ValueError, OSError, AttributeError, RuntimeError):
        pass
    return None


def oversized(bytes_by_device: Mapping[str, int], limit: int = SNAPSHOT_WARN_BYTES) -> dict[str, int]:
    """Devices where the snapshot exceeds `limit` or a quarter of the device's memory."""
    found = {}
    for device, nbytes in bytes_by_device.items():
        total = device_memory(device)
        if nbytes > min(limit, total // 4 if total else limit):
            found[device] = nbytes
    return found


def format_bytes(nbytes: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if nbytes >= size:
            return f"{nbytes / size:.1f} {unit}"
    return f"{nbytes} B"
