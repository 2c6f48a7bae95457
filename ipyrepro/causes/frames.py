"""Which frame is the user's code, and what the call at its line was."""

from __future__ import annotations

import ast
import linecache
import os
import re
import sys
import sysconfig
import types
from typing import Any

from .hashorder import _UNRESOLVED, _value

_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # ipyrepro itself
# -- what counts as the user's code ----------------------------------------------------


def _library_roots() -> tuple[str, ...]:
    roots = {_PACKAGE_DIR}
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        path = sysconfig.get_paths().get(key)
        if path:
            roots.add(os.path.abspath(path))
    for prefix in {sys.prefix, sys.base_prefix, sys.exec_prefix}:
        roots.add(os.path.join(os.path.abspath(prefix), "lib"))
    return tuple(sorted(roots))


_LIBRARY_ROOTS = _library_roots()


def _is_library_file(filename: str) -> bool:
    if filename.startswith("<"):
        return not filename.startswith("<ipython-input-")  # <frozen ...>, <string> (dataclass __init__s)
    if "site-packages" in filename or "dist-packages" in filename:
        return True
    path = os.path.abspath(filename)
    return any(path == root or path.startswith(root + os.sep) for root in _LIBRARY_ROOTS)


# -- the call expression at a line ------------------------------------------------------

_GENERATOR_FIXES = {  # what was called -> how to seed it
    "default_rng": "pass a seed: `np.random.default_rng(seed)`, or draw one from the seeded global RNG: "
    "`np.random.default_rng(np.random.randint(2**32))`",
    "SeedSequence": "pass the entropy: `np.random.SeedSequence(seed)`",
    "RandomState": "pass a seed: `np.random.RandomState(seed)`",
    "Random": "pass a seed: `random.Random(seed)`",
}
_BIT_GENERATORS = ("PCG64", "PCG64DXSM", "MT19937", "Philox", "SFC64")
_ENTROPY_FIX = (
    "draw from a seeded generator instead (`random.Random(seed)`, `np.random.default_rng(seed)`, or the global "
    "RNGs that `%repro` seeds); for ids, `uuid.UUID(int=rng.getrandbits(128))`"
)


def _call_source(frame: types.FrameType) -> str:
    """The call expression the frame is executing (Python 3.11+), else its whole source line."""
    code = frame.f_code
    positions = getattr(code, "co_positions", None)
    if positions is not None and frame.f_lasti >= 0:
        try:
            start, end, begin, finish = list(positions())[frame.f_lasti // 2]
        except (IndexError, ValueError):
            start = None
        if start is not None and end is not None and begin is not None and finish is not None:
            lines = linecache.getlines(code.co_filename)[start - 1 : end]
            if lines:
                data = [line.encode() for line in lines]
                if len(data) == 1:
                    return data[0][begin:finish].decode(errors="replace")
                data[0], data[-1] = data[0][begin:], data[-1][:finish]
                return b"".join(data).decode(errors="replace")
    return linecache.getline(code.co_filename, frame.f_lineno).strip()


_KNOWN_CALL = re.compile(
    r"[\w.]*\b(default_rng|SeedSequence|RandomState|Random|PCG64DXSM|PCG64|MT19937|Philox|SFC64|seed|urandom|"
    r"token_\w+|randbits|getrandbits|uuid1|uuid4|SystemRandom\(\)\.\w+)\s*\([^()]*\)"
)


def _focus(expression: str) -> str:
    """The call to name: `expression` itself when it is one call (Python 3.11+ gives exactly that); in a
    whole line (older Pythons, a line magic), the first call of a known source, else the line."""
    text = expression.strip()
    try:
        if isinstance(ast.parse(text, mode="eval").body, ast.Call):
            return text
    except SyntaxError:
        pass
    match = _KNOWN_CALL.search(text)
    return match.group(0) if match else text


def _callee(expression: str) -> tuple[str, str, int]:
    """(dotted name, last name, number of arguments) of the outermost call in `expression`."""
    expression = _focus(expression)
    try:
        node = ast.parse(expression.strip(), mode="eval").body
    except SyntaxError:
        match = re.search(r"([\w.]+)\s*\(", expression)
        name = match.group(1) if match else ""
        return name, name.rsplit(".", 1)[-1], -1
    if not isinstance(node, ast.Call):
        return "", "", -1
    try:
        dotted = ast.unparse(node.func)
    except Exception:  # unparse of odd nodes
        dotted = ""
    last = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
    return dotted, last, len(node.args) + len(node.keywords)


_ENTROPY_FILES = ("/random.py", "/secrets.py", "/uuid.py")
_LAST_EXPRESSION = re.compile(r"^_ipyrepro_last_value_ = \((.*?)(\))?$")  # how rerun/cell.py captures a last expression


def _unwrap_last_expression(line: str) -> str:
    """The cell's own text for a line that `%%repro` rewrote to capture the cell's last expression."""
    match = _LAST_EXPRESSION.match(line)
    return match.group(1) if match else line


class _Expression(str):
    """The call expression at the user's frame, with the frame, to read plain-name arguments."""

    def __new__(cls, text: str, frame: types.FrameType) -> _Expression:
        made = super().__new__(cls, text)
        made.frame = frame  # type: ignore[attr-defined]
        return made


def _from_c(frame: types.FrameType) -> bool:
    """`frame` is random.getrandbits called from C code (NumPy seeding itself through secrets.randbits),
    not from a Python call of getrandbits/randbits."""
    caller = frame.f_back
    if frame.f_code.co_name != "getrandbits" or caller is None:
        return False
    _, last, _ = _callee(_call_source(caller))
    return last not in ("getrandbits", "randbits")


def _first_argument_is_none(expression: str) -> bool:
    """For `RandomState(x)`: whether x is absent or None (read from the user's frame when a plain name)."""
    try:
        node = ast.parse(expression.strip(), mode="eval").body
    except SyntaxError:
        return False
    if not isinstance(node, ast.Call):
        return False
    argument = node.args[0] if node.args else next((k.value for k in node.keywords if k.arg == "seed"), None)
    if argument is None:
        return True
    frame = getattr(expression, "frame", None)
    value = _value(argument, frame) if frame is not None else _UNRESOLVED
    return value is None


def _global_draws() -> dict[str, Any]:
    """The draws watched for each global RNG (see globalrng.py), from the modules imported now."""
    from .globalrng import PYTHON, PYTHON_DRAWS, TORCH, TORCH_FUNCTIONS, TORCH_METHODS

    names: set[str] = set(PYTHON_DRAWS)
    draws: dict[str, Any] = {PYTHON: frozenset(PYTHON_DRAWS)}  # NumPy's: through globalrng's wrappers
    torch = sys.modules.get("torch")
    functions = torch._C._VariableFunctions if torch is not None else None
    draws[TORCH] = frozenset(getattr(functions, name) for name in TORCH_FUNCTIONS if hasattr(functions, name))
    draws["torch_methods"] = frozenset(TORCH_METHODS) if torch is not None else frozenset()
    draws["tensor"] = torch.Tensor if torch is not None else None
    if torch is not None:
        names.update(TORCH_FUNCTIONS, TORCH_METHODS)
    draws["names"] = frozenset(names)
    return draws


def _is_cpu_tensor(owner: Any, draws: dict[str, Any]) -> bool:
    tensor = draws.get("tensor")
    return tensor is not None and isinstance(owner, tensor) and owner.device.type == "cpu"


def _default_torch_generator(frame: types.FrameType, name: str, file_kind: str) -> bool:
    """Whether a torch draw uses the default generator: no `generator=` given (read from the call in your code,
    or from the library function's locals, as `nn.init` passes its own), and dropout only while training."""
    if file_kind == "library":
        local = frame.f_locals
        if local.get("generator") is not None:
            return False
        dropout_off = "dropout" in name and (not local.get("training", True) or local.get("p", 1) == 0)
        return not dropout_off
    try:
        node = ast.parse(_focus(_call_source(frame)).strip(), mode="eval").body
    except SyntaxError:
        return True
    if not isinstance(node, ast.Call):
        return True
    for keyword in node.keywords:
        if keyword.arg == "generator":
            value = keyword.value
            return isinstance(value, ast.Constant) and value.value is None
        if keyword.arg == "device":
            value = _value(keyword.value, frame)
            text = str(value) if value is not _UNRESOLVED else ast.unparse(keyword.value)
            if "cuda" in text or "mps" in text or "xpu" in text:
                return False  # another device's generator
    return True


def _location(frame: types.FrameType, line: int | None) -> str:
    return f"{frame.f_code.co_filename}:{line if line is not None else frame.f_lineno}"
