"""The package's layers, read from the imports with `ast` (imports inside functions count too).

ARCHITECTURE.md explains the layers; this test keeps them: a change that makes a lower layer import a
higher one, or adds an import circle, fails here with the offending imports named.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "ipyrepro"

# Which subpackages each layer may import (besides itself). Top-level modules are the public faces.
ALLOWED: dict[str, set[str]] = {
    "core": set(),
    "comparison": {"core"},
    "env": {"core"},
    "causes": {"core", "comparison"},
    "rerun": {"core", "comparison", "causes"},
    "distributed": {"core", "comparison"},
    "notebooks": {"core", "comparison", "causes"},
    "resume": {"core", "comparison"},
    "jupyter": {"core", "comparison", "causes", "rerun", "env", "distributed", "notebooks", "resume"},
    "testing": {"core", "comparison", "causes", "rerun", "notebooks", "resume"},
}
FACES = {"jupyter", "testing"}  # nothing below them imports a face; top-level modules are faces too

# Import circles allowed between modules, each with its reason. Empty: there are none.
ALLOWED_CIRCLES: dict[frozenset[str], str] = {}

MAX_LINES = 600


def modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The ipyrepro modules `name` imports anywhere in its body, as dotted names."""
    is_package = path.name == "__init__.py"
    here = name.split(".") if is_package else name.split(".")[:-1]
    found: set[str] = set()
    tree = ast.parse(path.read_text(), str(path))
    typing_only = {id(inner) for node in ast.walk(tree) if _is_type_checking_block(node) for inner in ast.walk(node)}
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = (here[: len(here) - node.level + 1] if node.level else []) + (node.module or "").split(".")
            base = [part for part in base if part]
            targets = [".".join(base + [alias.name]) for alias in node.names] + [".".join(base)]
        else:
            continue
        for target in targets:
            while target and target not in known:  # `from x import name` where name is not a module
                target = target.rpartition(".")[0]
            if target and target != name and target.startswith("ipyrepro"):
                found.add(target)
    return found


def _is_type_checking_block(node: ast.AST) -> bool:
    """`if TYPE_CHECKING:` imports never run; they name types for checkers, which resolve circles themselves."""
    return isinstance(node, ast.If) and getattr(node.test, "id", getattr(node.test, "attr", None)) == "TYPE_CHECKING"


def layer(name: str) -> str | None:
    parts = name.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and (PACKAGE / parts[1]).is_dir()) else None


GRAPH = {name: imports_of(name, path, set(modules())) for name, path in modules().items()}


def test_every_subpackage_has_a_place_in_the_layers() -> None:
    subpackages = {path.name for path in PACKAGE.iterdir() if (path / "__init__.py").exists()}
    assert subpackages <= set(ALLOWED), f"add {subpackages - set(ALLOWED)} to ALLOWED and to ARCHITECTURE.md"


def test_layers_point_down_only() -> None:
    wrong = []
    for name, targets in GRAPH.items():
        source = layer(name)
        for target in targets:
            destination = layer(target)
            if target == "ipyrepro" or destination is None:
                if source is not None:
                    wrong.append(f"{name} -> {target} (a public face at the top)")
            elif source is not None and destination != source and destination not in ALLOWED[source]:
                wrong.append(f"{name} -> {target} ({source} may import only {sorted(ALLOWED[source]) or 'itself'})")
    assert not wrong, "imports that point up:\n" + "\n".join(sorted(wrong))


def test_nothing_imports_a_face() -> None:
    wrong = [
        f"{name} -> {target}"
        for name, targets in GRAPH.items()
        for target in targets
        if layer(target) in FACES and layer(name) != layer(target) and layer(name) is not None
    ]
    assert not wrong, wrong


def circles() -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in GRAPH.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in GRAPH:
        if node not in index:
            visit(node)
    return found


def test_no_import_circles_except_the_listed_ones() -> None:
    unlisted = [circle for circle in circles() if frozenset(circle) not in ALLOWED_CIRCLES]
    assert not unlisted, f"import circles: {unlisted}"


def test_the_test_above_can_fail() -> None:
    GRAPH["ipyrepro.core.state"].add("ipyrepro.core.status")
    GRAPH["ipyrepro.core.status"].add("ipyrepro.core.state")
    try:
        assert any({"ipyrepro.core.state", "ipyrepro.core.status"} <= set(circle) for circle in circles())
    finally:
        GRAPH["ipyrepro.core.state"].discard("ipyrepro.core.status")
        status = "ipyrepro.core.status"
        GRAPH[status] = imports_of(status, modules()[status], set(GRAPH))


@pytest.mark.parametrize("name", sorted(modules()))
def test_no_module_is_over_600_lines(name: str) -> None:
    lines = len(modules()[name].read_text().splitlines())
    assert lines <= MAX_LINES, f"{name} has {lines} lines: split it by responsibility"
