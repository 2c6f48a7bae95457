"""Which global names a cell reads before it binds them, in the order Python runs it; nothing runs.

The twin of hiddenstate.cell_bindings (what a cell binds): together they say, top to bottom, which
cell reads a name that only a later cell binds. Function and lambda bodies are not followed (they read
when called, which the code alone cannot tell); comprehension variables and class bodies keep their
own names. Magics are turned into Python by IPython first, as the kernel would.
"""

from __future__ import annotations

import ast
import builtins

from .hiddenstate import NAMESPACE_MAGICS, parse_python

# Names every IPython kernel has without a cell binding them.
IPYTHON_NAMES = frozenset(
    {
        "In",
        "Out",
        "get_ipython",
        "exit",
        "quit",
        "display",
        "_",
        "__",
        "___",
        "_i",
        "_ii",
        "_iii",
        "_oh",
        "_ih",
        "_dh",
        "__name__",
        "__doc__",
        "__builtins__",
        "__spec__",
        "__loader__",
        "__package__",
    }
)
KNOWN = frozenset(dir(builtins)) | IPYTHON_NAMES


def python_source(source: str) -> tuple[str, int] | None:
    """The Python a cell runs, and the lines before it (a `%%time` line); None for a cell magic that runs
    something else (`%%bash`, `%%writefile`)."""
    lines = source.splitlines()
    first = lines[0].strip() if lines else ""
    if first.startswith("%%"):
        magic = first[2:].partition(" ")[0]
        return ("\n".join(lines[1:]), 1) if magic in NAMESPACE_MAGICS else None
    return source, 0


def parse_cell(source: str) -> tuple[ast.Module, int] | None:
    """The cell's syntax tree (after IPython's transforms) and its line offset, or None when it is not Python."""
    python = python_source(source)
    if python is None:
        return None
    code, offset = python
    tree = parse_python(code)
    return (tree, offset) if tree is not None else None


def reads_before_binding(tree: ast.Module, offset: int = 0) -> tuple[dict[str, int], set[str]]:
    """Each global name the code reads before binding it, with the line of its first such read (1-based),
    and the global names it binds."""
    collector = _Reads(offset)
    for statement in tree.body:
        collector.visit(statement)
    return {name: line for name, line in collector.reads.items() if name not in KNOWN}, collector.bound


class _Reads(ast.NodeVisitor):
    """Visits in execution order: a value before the names it is assigned to, a loop's target before its body."""

    def __init__(self, offset: int) -> None:
        self.offset = offset
        self.bound: set[str] = set()
        self.reads: dict[str, int] = {}

    def _bind_target(self, target: ast.AST) -> None:
        for node in ast.walk(target):
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                self.bound.add(node.id)
            elif isinstance(node, (ast.Attribute, ast.Subscript)):
                self.visit(node.value)  # `a.b = 1` reads `a`
                if isinstance(node, ast.Subscript):
                    self.visit(node.slice)

    def visit_Name(self, node: ast.Name) -> None:
        if isinstance(node.ctx, ast.Load) and node.id not in self.bound and node.id not in self.reads:
            self.reads[node.id] = node.lineno + self.offset
        elif isinstance(node.ctx, ast.Store):
            self.bound.add(node.id)

    def visit_Assign(self, node: ast.Assign) -> None:
        self.visit(node.value)
        for target in node.targets:
            self._bind_target(target)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        if isinstance(node.target, ast.Name):  # `x += 1` reads x first
            self.visit_Name(ast.Name(node.target.id, ast.Load(), lineno=node.lineno))
        self.visit(node.value)
        self._bind_target(node.target)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        if node.value is not None:
            self.visit(node.value)
            self._bind_target(node.target)

    def visit_NamedExpr(self, node: ast.NamedExpr) -> None:
        self.visit(node.value)
        self._bind_target(node.target)

    def visit_For(self, node: ast.For | ast.AsyncFor) -> None:
        self.visit(node.iter)
        self._bind_target(node.target)
        for statement in [*node.body, *node.orelse]:
            self.visit(statement)

    visit_AsyncFor = visit_For

    def visit_With(self, node: ast.With | ast.AsyncWith) -> None:
        for item in node.items:
            self.visit(item.context_expr)
            if item.optional_vars is not None:
                self._bind_target(item.optional_vars)
        for statement in node.body:
            self.visit(statement)

    visit_AsyncWith = visit_With

    def visit_ExceptHandler(self, node: ast.ExceptHandler) -> None:
        if node.type is not None:
            self.visit(node.type)
        if node.name:
            self.bound.add(node.name)
        for statement in node.body:
            self.visit(statement)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self.bound.add(alias.asname or alias.name.split(".")[0])

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        for alias in node.names:
            self.bound.add(alias.asname or alias.name)

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        for expression in [*node.decorator_list, *node.args.defaults, *node.args.kw_defaults]:
            if expression is not None:
                self.visit(expression)
        self.bound.add(node.name)
        for child in ast.walk(node):  # `global x` in the body binds x when called: not a read here
            if isinstance(child, ast.Global):
                self.bound.update(child.names)

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Lambda(self, node: ast.Lambda) -> None:
        for expression in [*node.args.defaults, *node.args.kw_defaults]:
            if expression is not None:
                self.visit(expression)

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        for expression in [*node.decorator_list, *node.bases, *(keyword.value for keyword in node.keywords)]:
            self.visit(expression)
        outer = set(self.bound)
        for statement in node.body:  # the body runs now; the names it binds are the class's
            self.visit(statement)
        self.bound = outer | {node.name}

    def _comprehension(self, node: ast.AST, results: list[ast.AST]) -> None:
        generators = node.generators  # type: ignore[attr-defined]
        self.visit(generators[0].iter)  # the first iterable is read in the enclosing scope
        outer = set(self.bound)
        for number, generator in enumerate(generators):
            if number:
                self.visit(generator.iter)
            self._bind_target(generator.target)
            for condition in generator.ifs:
                self.visit(condition)
        for result in results:
            self.visit(result)
        walrus = {
            child.target.id
            for child in ast.walk(node)
            if isinstance(child, ast.NamedExpr) and isinstance(child.target, ast.Name)
        }
        self.bound = outer | walrus  # the loop variables stay inside; `:=` leaks out, as in Python

    def visit_ListComp(self, node: ast.ListComp) -> None:
        self._comprehension(node, [node.elt])

    visit_SetComp = visit_ListComp
    visit_GeneratorExp = visit_ListComp  # type: ignore[assignment]

    def visit_DictComp(self, node: ast.DictComp) -> None:
        self._comprehension(node, [node.key, node.value])
