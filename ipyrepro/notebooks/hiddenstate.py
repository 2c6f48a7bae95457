"""Hidden state, named: a cell that raised because the name it needs is bound only by a *later* cell.

When a notebook saved with outputs fails top to bottom with `NameError: name 'P' is not defined`
and a cell further down assigns `P`, the notebook only ever worked because its cells ran out of
order (or a cell that bound `P` was deleted). The check says which cell binds the name, at which
line, and what the saved execution counts tell about how the notebook was saved.

Everything here reads code (Python's `ast`, after IPython turns magics into calls) and saved
execution counts; nothing runs. The cells are the check's own (`index`, `source`,
`execution_count` as saved, `label()`), so the labels are the report's.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

KIND = "hidden-state"  # the kind of the Cause in report.causes
NAME_ERRORS = ("NameError", "UnboundLocalError")
ATTRIBUTE_ERRORS = ("AttributeError",)
IMPORT_ERRORS = ("ImportError", "ModuleNotFoundError")
NAMESPACE_MAGICS = ("time", "capture", "prun")  # cell magics whose body runs in the user's namespace

_NAME = re.compile(r"name '([^']+)' is not defined")
_LOCAL = re.compile(r"(?:cannot access local variable|local variable) '([^']+)'")
_ATTRIBUTE = re.compile(r"has no attribute '([^']+)'")
_IMPORT_NAME = re.compile(r"cannot import name '([^']+)' from '([^']+)'")
_MODULE = re.compile(r"No module named '([^']+)'")
_CELL_FRAME = re.compile(r"(?:Cell In\s*\[[^\]]*\]|<ipython-input-[^>]*>|Input In \[[^\]]*\]),? (?:line|in) (\d+)")
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class NotebookCell(Protocol):
    """What this module reads of a code cell."""

    index: int
    source: str
    execution_count: int | None

    def label(self) -> str: ...


@dataclass(frozen=True)
class Binding:
    line: int  # 1-based, in the cell's source
    how: str  # "assigned", "defined", "imported", "set as an attribute", "written as a module"


@dataclass
class Bindings:
    """What one cell binds: global names, attribute names, and modules it writes (`%%writefile m.py`)."""

    names: dict[str, Binding] = field(default_factory=dict)
    attributes: dict[str, Binding] = field(default_factory=dict)
    modules: dict[str, tuple[Binding, Bindings]] = field(default_factory=dict)

    def add(self, table: dict[str, Binding], name: str, line: int, how: str) -> None:
        table.setdefault(name, Binding(line, how))  # the first binding in the cell is the one named


@dataclass(frozen=True)
class Missing:
    """What an error says is missing: a global `name`, an `attribute`, a `module`, or a name `from module`."""

    kind: str  # "name", "attribute", "module", "import"
    name: str
    module: str = ""


def missing_from(ename: str, evalue: str) -> Missing | None:
    """The missing name an error message names, for the errors hidden state can cause; else None."""
    if ename in NAME_ERRORS:
        match = _NAME.search(evalue) or _LOCAL.search(evalue)
        return Missing("name", match.group(1)) if match else None
    if ename in ATTRIBUTE_ERRORS:
        match = _ATTRIBUTE.search(evalue)
        return Missing("attribute", match.group(1)) if match else None
    if ename in IMPORT_ERRORS:
        match = _IMPORT_NAME.search(evalue)
        if match:
            return Missing("import", match.group(1), match.group(2).split(".")[0])
        match = _MODULE.search(evalue)
        return Missing("module", match.group(1).split(".")[0]) if match else None
    return None


def cell_bindings(source: str) -> Bindings:
    """The names `source` binds at the top level of the namespace; empty when it does not parse."""
    found = Bindings()
    lines = source.splitlines()
    first = lines[0].strip() if lines else ""
    if first.startswith("%%"):
        magic, _, arguments = first[2:].partition(" ")
        body = "\n".join(lines[1:])
        if magic == "writefile":
            target = [word for word in arguments.split() if not word.startswith("-")]
            if target and target[-1].endswith(".py"):
                module = target[-1].replace("\\", "/").rsplit("/", 1)[-1][: -len(".py")]
                found.modules[module] = (Binding(1, "written as a module"), _python_bindings(body, offset=1))
            return found
        if magic in NAMESPACE_MAGICS:
            return _python_bindings(body, offset=1)
        return found
    return _python_bindings(source)


def _python_bindings(source: str, offset: int = 0) -> Bindings:
    tree = parse_python(source)
    if tree is None:  # not Python (or not this Python's): it binds nothing we can see
        return Bindings()
    collector = _Collector(offset)
    for statement in tree.body:
        collector.visit(statement)
    return collector.found


_IPYTHON_SYNTAX = re.compile(r"^\s*[%!]|=\s*[%!]|\?\s*$", re.MULTILINE)  # magics, shell escapes, help
_ESCAPED = re.compile(r"^(\s*)(?:([A-Za-z_][\w.]*(?:\s*,\s*[A-Za-z_][\w.]*)*)\s*=\s*)?([%!])(?![%!])(.*)$")


def parse_python(source: str) -> ast.Module | None:
    """The syntax tree of a cell as the kernel runs it (IPython turns magics into calls first), or None.

    Plain Python is parsed directly, and lines that are one line magic or shell escape (`%time x = f()`,
    `files = !ls`) are turned into the calls IPython makes of them; IPython's own transformer (and IPython's
    import, a good part of a second in a fresh process) is only needed for the rest, which is how
    `ipyrepro lint` stays fast."""
    quick = _escapes_as_calls(source) if _IPYTHON_SYNTAX.search(source) else source
    if quick is not None:
        try:
            return ast.parse(quick)
        except (SyntaxError, ValueError):
            pass  # IPython syntax the quick path does not know (`%%time` is handled by the callers)
    from IPython.core.inputtransformer2 import TransformerManager

    try:
        return ast.parse(TransformerManager().transform_cell(source))
    except (SyntaxError, ValueError, IndexError):
        return None


def _escapes_as_calls(source: str) -> str | None:
    """`source` with each `%magic args` / `!command` line (alone or assigned) as IPython's call, or None when
    a line needs IPython's own transformer (help `?`, `%%`, a continued magic)."""
    lines = []
    for line in source.splitlines():
        match = _ESCAPED.match(line)
        if match is None:
            if line.rstrip().endswith("?") and not line.lstrip().startswith("#"):  # `obj?`: help
                return None
            lines.append(line)
            continue
        indent, target, escape, rest = match.groups()
        if rest.rstrip().endswith("\\"):
            return None
        if escape == "%":
            name, _, arguments = rest.partition(" ")
            call = f"get_ipython().run_line_magic({name!r}, {arguments.strip()!r})"
        else:
            call = f"get_ipython().{'getoutput' if target else 'system'}({rest.strip()!r})"
        lines.append(f"{indent}{target} = {call}" if target else f"{indent}{call}")
    return "\n".join(lines)


class _Collector(ast.NodeVisitor):
    """Walks the top level (and the blocks in it); inside functions only `global` names count."""

    def __init__(self, offset: int) -> None:
        self.found = Bindings()
        self.offset = offset
        self.globals: set[str] | None = None  # inside a function: its `global` names

    def _line(self, node: ast.AST) -> int:
        return getattr(node, "lineno", 1) + self.offset

    def _name(self, name: str, node: ast.AST, how: str) -> None:
        if self.globals is None or name in self.globals:
            self.found.add(self.found.names, name, self._line(node), how)

    def _target(self, target: ast.AST, how: str) -> None:
        if isinstance(target, ast.Name):
            self._name(target.id, target, how)
        elif isinstance(target, (ast.Tuple, ast.List)):
            for element in target.elts:
                self._target(element, how)
        elif isinstance(target, ast.Starred):
            self._target(target.value, how)
        elif isinstance(target, ast.Attribute):
            self.found.add(self.found.attributes, target.attr, self._line(target), "set as an attribute")

    def visit_Assign(self, node: ast.Assign) -> None:
        for target in node.targets:
            self._target(target, "assigned")
        self.generic_visit(node)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        self._target(node.target, "assigned")
        self.generic_visit(node)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        if node.value is not None:
            self._target(node.target, "assigned")
        self.generic_visit(node)

    def visit_NamedExpr(self, node: ast.NamedExpr) -> None:
        self._target(node.target, "assigned")
        self.generic_visit(node)

    def visit_For(self, node: ast.For | ast.AsyncFor) -> None:
        self._target(node.target, "assigned")
        self.generic_visit(node)

    visit_AsyncFor = visit_For

    def visit_withitem(self, node: ast.withitem) -> None:
        if node.optional_vars is not None:
            self._target(node.optional_vars, "assigned")
        self.generic_visit(node)

    def visit_ExceptHandler(self, node: ast.ExceptHandler) -> None:
        if node.name:
            self._name(node.name, node, "assigned")
        self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._name(alias.asname or alias.name.split(".")[0], node, "imported")

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        for alias in node.names:
            if alias.name != "*":
                self._name(alias.asname or alias.name, node, "imported")

    def visit_Call(self, node: ast.Call) -> None:  # setattr(obj, "name", value); `%time x = f()`
        if _is_time_magic(node) and self.globals is None:
            inner = _python_bindings(node.args[1].value, offset=self._line(node) - 1)  # type: ignore[attr-defined]
            for name, binding in inner.names.items():
                self.found.add(self.found.names, name, binding.line, binding.how)
        elif isinstance(node.func, ast.Name) and node.func.id == "setattr" and len(node.args) >= 2:
            name = node.args[1]
            if isinstance(name, ast.Constant) and isinstance(name.value, str):
                self.found.add(self.found.attributes, name.value, self._line(node), "set as an attribute")
        self.generic_visit(node)

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self._name(node.name, node, "defined")
        declared = {name for child in ast.walk(node) if isinstance(child, ast.Global) for name in child.names}
        if declared:  # `global x` then `x = ...` in the body binds the global when the function is called
            outer, self.globals = self.globals, declared
            for statement in node.body:
                self.visit(statement)
            self.globals = outer

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Lambda(self, node: ast.Lambda) -> None:
        return None  # its parameters bind nothing outside it

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self._name(node.name, node, "defined")
        if self.globals is not None:
            return
        for statement in node.body:  # its methods and class attributes: what `obj.name` finds
            if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                self.found.add(self.found.attributes, statement.name, self._line(statement), "defined")
            elif isinstance(statement, (ast.Assign, ast.AnnAssign)):
                targets = statement.targets if isinstance(statement, ast.Assign) else [statement.target]
                for target in targets:
                    if isinstance(target, ast.Name):
                        self.found.add(self.found.attributes, target.id, self._line(target), "assigned")


def _is_time_magic(node: ast.Call) -> bool:
    """`get_ipython().run_line_magic('time', 'code')`, what IPython makes of `%time code`."""
    return (
        isinstance(node.func, ast.Attribute)
        and node.func.attr == "run_line_magic"
        and len(node.args) == 2
        and all(isinstance(argument, ast.Constant) and isinstance(argument.value, str) for argument in node.args)
        and node.args[0].value == "time"  # type: ignore[attr-defined]
    )


@dataclass(frozen=True)
class HiddenState:
    """A cell raised for lack of `name`, which a later cell (`binder`, at `binding.line`) binds."""

    cell: Any  # NotebookCell: the cell that raised
    ename: str
    evalue: str
    name: str
    missing: str  # "name", "attribute", "module" or "import"
    binder: Any  # NotebookCell: the first later cell that binds it
    binding: Binding
    error_line: int | None = None  # the line of the raising cell the traceback points at

    def what(self) -> str:
        if self.missing == "attribute":
            return f"the attribute `{self.name}`"
        if self.missing == "module":
            return f"the module `{self.name}`"
        return f"`{self.name}`"

    def saved_counts(self) -> str:
        """What the saved execution counts say about how the notebook came to work when it was saved."""
        mine, theirs = self.cell.execution_count, self.binder.execution_count
        if mine is None and theirs is None:
            return "neither cell has a saved execution count"
        if theirs is None:
            return f"that cell has no saved execution count; this cell was saved as In [{mine}]"
        if mine is None:
            return f"that cell was saved as In [{theirs}]; this cell has no saved execution count"
        if theirs > mine:
            return (
                f"that cell was saved as In [{theirs}]; this cell was saved as In [{mine}], so when the notebook "
                f"was saved {self.what()} came from an earlier run of a cell or from a deleted one"
            )
        return (
            f"that cell was saved as In [{theirs}], before this cell's In [{mine}]: when the notebook was "
            "saved it had been run out of order"
        )

    def text(self) -> str:
        """One sentence for the report: the error, the cell that binds the name, the saved counts."""
        return (
            f"{self.what()} is {self.binding.how} in {self.binder.label()}, line {self.binding.line}, "
            f"after this cell: run top to bottom it does not exist yet here ({self.saved_counts()})."
        )

    def fix(self) -> str:
        return (
            f"move line {self.binding.line} of {self.binder.label()}, which binds {self.what()}, above this cell; "
            "then restart the kernel and run all cells to confirm"
        )

    def to_cause(self) -> Any:
        from ..comparison.findings import Cause

        code = ""
        lines = self.cell.source.splitlines()
        if self.error_line is not None and 0 < self.error_line <= len(lines):
            code = lines[self.error_line - 1].strip()
        return Cause(KIND, self.error_line, None, code, f"{self.ename}: {self.evalue}; {self.text()}", self.fix())

    def to_dict(self, cell_ref: Any) -> dict[str, Any]:
        """`cell_ref(cell)` gives a cell's JSON reference (index, position, code_index, id, execution_count)."""
        return {
            "cell": cell_ref(self.cell),
            "ename": self.ename,
            "evalue": self.evalue,
            "name": self.name,
            "missing": self.missing,
            "line": self.error_line,
            "bound_in": cell_ref(self.binder),
            "bound_at_line": self.binding.line,
            "how": self.binding.how,
            "text": self.text(),
            "fix": self.fix(),
        }


def find_hidden_state(cells: Sequence[Any], errors: Mapping[int, Mapping[str, Any]]) -> list[HiddenState]:
    """For each cell that raised (`errors`: cell index -> its error output, as nbformat stores it), the
    later cell that binds what the error says is missing; cells whose error has no such cell are left out."""
    order = list(cells)
    parsed: dict[int, Bindings] = {}

    def bindings_of(cell: Any) -> Bindings:
        if cell.index not in parsed:
            parsed[cell.index] = cell_bindings(cell.source)
        return parsed[cell.index]

    found = []
    for position, cell in enumerate(order):
        error = errors.get(cell.index)
        if not error:
            continue
        ename, evalue = str(error.get("ename", "")), str(error.get("evalue", ""))
        missing = missing_from(ename, evalue)
        if missing is None:
            continue
        for later in order[position + 1 :]:
            binding = _binding_for(missing, bindings_of(later))
            if binding is not None:
                line = error_line(error.get("traceback"))
                found.append(HiddenState(cell, ename, evalue, missing.name, missing.kind, later, binding, line))
                break
    return found


def _binding_for(missing: Missing, bindings: Bindings) -> Binding | None:
    if missing.kind == "name":
        return bindings.names.get(missing.name)
    if missing.kind == "attribute":
        return bindings.attributes.get(missing.name)
    module = bindings.modules.get(missing.module or missing.name)
    if module is None:
        return None
    if missing.kind == "module":
        return module[0]
    return module[1].names.get(missing.name)


def error_line(traceback: Any) -> int | None:
    """The line of the cell the traceback's first frame in a cell points at (IPython's `Cell In[3], line 2`)."""
    if not isinstance(traceback, list):
        return None
    for entry in traceback:
        match = _CELL_FRAME.search(_ANSI.sub("", str(entry)))
        if match:
            return int(match.group(1))
    return None


def saved_counts(cells: Iterable[Any]) -> list[tuple[Any, int]]:
    """The code cells that have a saved execution count, with it, top to bottom."""
    return [(cell, cell.execution_count) for cell in cells if isinstance(cell.execution_count, int)]


def out_of_order(cells: Iterable[Any]) -> tuple[Any, Any] | None:
    """The first two cells whose saved execution counts do not rise top to bottom (earlier, later), or None."""
    counted = saved_counts(cells)
    for (before, count_before), (after, count_after) in zip(counted, counted[1:]):
        if count_after <= count_before:
            return before, after
    return None


def out_of_order_text(cells: Iterable[Any]) -> str:
    """'this notebook was saved after running its cells out of order (...)', or '' when the counts rise."""
    pair = out_of_order(cells)
    if pair is None:
        return ""
    before, after = pair
    return (
        "this notebook was saved after running its cells out of order: "
        f"{before.label()} was saved as In [{before.execution_count}], above "
        f"{after.label()}, saved as In [{after.execution_count}]"
    )
