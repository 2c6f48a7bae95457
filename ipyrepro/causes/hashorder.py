"""String hash order: the expressions at a line that iterate a set (or dict) of strings, whose order
PYTHONHASHSEED decides."""

from __future__ import annotations

import ast
import os
import types
from typing import Any


def hash_seed_fixed() -> bool:
    """Whether string hashing (and so the order of sets of strings) is the same in every process."""
    return os.environ.get("PYTHONHASHSEED", "random") != "random"


# -- string hash order: static candidates, checked against runtime values ---------------------------

_ORDER_SENSITIVE_CALLS = {
    *("list", "tuple", "enumerate", "iter", "next", "zip", "print", "str", "repr", "map", "filter"),
    *("fromkeys", "dict", "OrderedDict", "array", "tensor", "Series"),  # containers that keep the set's order
}
_SET_METHODS = {"union", "intersection", "difference", "symmetric_difference", "copy"}
_UNRESOLVED = object()


def hash_order_candidates(tree: ast.AST) -> list[ast.expr]:
    """Expressions whose iteration order shows: loops, comprehensions, list()/print()/join() arguments,
    f-string values and a cell's displayed expressions."""
    found: list[ast.expr] = []
    if isinstance(tree, ast.Module) and tree.body and isinstance(tree.body[-1], ast.Expr):
        found.append(tree.body[-1].value)  # a cell's last expression is displayed
    for node in ast.walk(tree):
        if isinstance(node, (ast.For, ast.AsyncFor, ast.comprehension)):
            found.append(node.iter)
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
            if name in _ORDER_SENSITIVE_CALLS or name == "join":
                found += [arg.value if isinstance(arg, ast.Starred) else arg for arg in node.args]
            else:
                found += [arg.value for arg in node.args if isinstance(arg, ast.Starred)]
        elif isinstance(node, ast.FormattedValue):
            found.append(node.value)
        elif isinstance(node, (ast.List, ast.Tuple)):
            found += [item.value for item in node.elts if isinstance(item, ast.Starred)]
    kept = (ast.Name, ast.Attribute, ast.Set, ast.SetComp, ast.Call, ast.BinOp)
    return [node for node in found if isinstance(node, kept)]


def _has_strings(values: Any) -> bool:
    try:
        for index, item in enumerate(values):
            if isinstance(item, (str, bytes)):
                return True
            if index >= 20:
                break
    except TypeError:
        return False
    return False


def _value(node: ast.expr, frame: types.FrameType) -> Any:
    """The value of a plain name or attribute chain, read without running any code; else _UNRESOLVED."""
    if isinstance(node, ast.Name):
        for scope in (frame.f_locals, frame.f_globals, frame.f_builtins):
            if node.id in scope:
                return scope[node.id]
        return _UNRESOLVED
    if isinstance(node, ast.Attribute):
        base = _value(node.value, frame)
        if base is _UNRESOLVED:
            return _UNRESOLVED
        try:
            return vars(base).get(node.attr, _UNRESOLVED)
        except TypeError:
            return _UNRESOLVED
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, (ast.List, ast.Tuple)):
        items = [_value(item, frame) for item in node.elts]
        return _UNRESOLVED if any(item is _UNRESOLVED for item in items) else items
    return _UNRESOLVED


def _hash_ordered(node: ast.expr, frame: types.FrameType) -> str:
    """A description when `node` is (or builds) a set of strings, else ''."""
    if isinstance(node, ast.Set):
        if any(isinstance(item, ast.Constant) and isinstance(item.value, (str, bytes)) for item in node.elts):
            return "a set literal of strings is iterated"
        values = [_value(item, frame) for item in node.elts]
        return "a set of strings is iterated" if _has_strings(v for v in values if v is not _UNRESOLVED) else ""
    if isinstance(node, ast.SetComp):
        source = _value(node.generators[0].iter, frame)
        if source is not _UNRESOLVED and _has_strings(source):
            return "a set built from strings is iterated"
        return ""
    if isinstance(node, (ast.Name, ast.Attribute)):
        value = _value(node, frame)
        if isinstance(value, (set, frozenset)) and _has_strings(value):
            return f"`{ast.unparse(node)}`, a {type(value).__name__} of strings, is iterated"
        return ""
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.BitOr, ast.BitAnd, ast.Sub, ast.BitXor)):
        return _hash_ordered(node.left, frame) or _hash_ordered(node.right, frame)
    if isinstance(node, ast.Call):
        func = node.func
        if isinstance(func, ast.Name) and func.id in ("set", "frozenset") and node.args:
            source = _value(node.args[0], frame)
            if source is not _UNRESOLVED and (isinstance(source, (str, bytes)) or _has_strings(source)):
                return f"`{ast.unparse(node)}`, a {func.id} of strings, is iterated"
        if isinstance(func, ast.Attribute) and func.attr in _SET_METHODS:
            return _hash_ordered(func.value, frame)
    return ""
