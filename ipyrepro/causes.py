"""Name the line that drew the randomness: the causes of a difference, found in one traced diagnostic run.

Only after two runs differed, the cell (or callable) runs once more under a
profiler (`sys.setprofile`, which also sees calls of C functions, with
`threading.setprofile` for threads the code starts). It records the sources of
nondeterminism that actually ran, each with the user's frame that made the call:
the line in the cell, or `file:line` in the user's own code (frames inside the
standard library, site-packages and ipyrepro are skipped).

Seeded and unseeded calls are told apart by what they do, not by their names:
NumPy's generators, `SeedSequence` and the legacy `np.random.seed()` read OS
entropy (through `secrets.randbits`) only when no seed was given; `random.seed`
and `random.Random()` are seen with their argument; `torch.Generator.seed()`
and `torch.seed()` always draw from the OS. The call expression at the user's
line (exact on Python 3.11+, from `co_positions`) names what was called.
`sys.setprofile` is used on every Python version: `sys.monitoring` (3.12+)
offers nothing more for this and the profiler keeps one code path.
"""

from __future__ import annotations

import ast
import datetime
import dis
import linecache
import os
import random
import re
import sys
import sysconfig
import tempfile
import threading
import time
import types
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

KINDS = (
    "unseeded-generator",
    "entropy",
    "nondeterministic-op",
    "setting",
    "concurrency",
    "hash-order",
    "clock",
)  # strongest first: the order causes are listed in

_NO_DETERMINISTIC = re.compile(r"^(.+?) does not have a deterministic implementation")
_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


@dataclass
class Cause:
    """One source of nondeterminism that ran: what, where, why, and the fix.

    `line` is the 1-based line in the cell (None outside a cell); `location` is
    `file:line` when the call is in the user's code outside the cell (a function
    from an earlier cell or a module); `code` is the source line of the call.
    """

    kind: str
    line: int | None
    location: str | None
    code: str
    detail: str
    fix: str
    count: int = 1

    def where(self) -> str:
        if self.line is not None and self.location:
            return f"{self.location} (called from line {self.line})"
        if self.line is not None:
            return f"line {self.line}"
        return self.location or "an unknown place"

    def text(self) -> str:
        times = f" (x{self.count})" if self.count > 1 else ""
        code = f" `{self.code}`" if self.code else ""
        return f"{self.kind} at {self.where()}:{code}{times}: {self.detail} Fix: {self.fix}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "line": self.line,
            "location": self.location,
            "code": self.code,
            "detail": self.detail,
            "fix": self.fix,
            "count": self.count,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Cause:
        return cls(**{name: data[name] for name in cls.__dataclass_fields__ if name in data})


def ranked(causes: list[Cause]) -> list[Cause]:
    """Strongest kind first; within a kind, in the order they ran."""
    return sorted(causes, key=lambda cause: KINDS.index(cause.kind))


def hash_seed_fixed() -> bool:
    """Whether string hashing (and so the order of sets of strings) is the same in every process."""
    return os.environ.get("PYTHONHASHSEED", "random") != "random"


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


# -- the tracer ---------------------------------------------------------------------------


@dataclass
class Tracer:
    """Records the causes that run while it is active. Use through `trace()`."""

    cell_code: str | None = None
    cell_source: str | None = None  # the cell as written (before IPython's transforms), to show its lines
    hash_order: bool = field(default_factory=lambda: not hash_seed_fixed())
    causes: dict[tuple[Any, ...], Cause] = field(default_factory=dict)
    _outer: set[int] = field(default_factory=set)  # ids of the frames already running when the trace began
    _outer_frames: list[types.FrameType] = field(default_factory=list)  # held, so their ids are not reused
    _files: dict[str, str] = field(default_factory=dict)  # filename -> "cell" | "user" | "magic" | "library"
    _calls: dict[types.CodeType, Any] = field(default_factory=dict)
    _clocks: dict[Any, str] = field(default_factory=dict)
    _urandom: Any = None
    _hash_candidates: dict[types.CodeType, list[tuple[int, ast.expr]]] = field(default_factory=dict)
    _file_candidates: dict[str, list[ast.expr]] = field(default_factory=dict)
    _alive: list[bool] = field(default_factory=lambda: [True])  # emptied when the trace ends
    _lines: bool = False  # hash order is judged from line events (sys.settrace): only lines that ran
    _pid: int = field(default_factory=os.getpid)
    _spool: str | None = None  # a folder where forked worker processes write the causes they saw
    watch: Any = None  # the GlobalRngWatch when armed (`ipyrepro check --as-is`): draws from unseeded global RNGs
    _draws: dict[str, Any] = field(default_factory=dict)  # what counts as a draw, per global RNG (when watched)
    _drawn: set[str] = field(default_factory=set)  # the global RNGs already named in this trace (first draw only)

    # -- frames ---------------------------------------------------------------------

    def _file_kind(self, filename: str) -> str:
        kind = self._files.get(filename)
        if kind is None:
            if self.cell_code is not None and self._is_cell(filename):
                kind = "cell"
            elif filename in ("<timed exec>", "<timed eval>") or filename.startswith("<magic-"):
                kind = "magic"  # the user's code as a line magic (%time, %timeit) compiled it: placed at the cell line
            elif _is_library_file(filename):
                kind = "library"
            else:
                kind = "user"
            self._files[filename] = kind
        return kind

    def _is_cell(self, filename: str) -> bool:
        lines = linecache.getlines(filename)
        return bool(lines) and "".join(lines).strip() == (self.cell_code or "").strip()

    def _locate(self, frame: types.FrameType | None, line: int | None = None) -> tuple[Any, ...] | None:
        """(cell line, location, the innermost user frame, its line) from `frame` outwards; None when the
        call came from no user code (a library on its own, or ipyrepro itself)."""
        inner: types.FrameType | None = None
        inner_line: int | None = None
        current = frame
        while current is not None and id(current) not in self._outer:
            kind = self._file_kind(current.f_code.co_filename)
            if kind not in ("library", "magic") and inner is None:
                inner = current
                inner_line = line if (line is not None and current is frame) else current.f_lineno
            if kind == "cell":
                if inner is current:
                    return inner_line, None, current, inner_line
                return current.f_lineno, _location(inner, inner_line), inner, inner_line
            current = current.f_back
        if inner is None:
            return None
        return None, _location(inner, inner_line), inner, inner_line

    def _record(self, kind: str, frame: types.FrameType | None, describe: Any, line: int | None = None) -> None:
        """Record a cause at the innermost user frame from `frame`; `describe(expression)` gives
        (detail, fix, kind), where the kind may be refined by what was called."""
        found = self._locate(frame, line)
        if found is None:
            return
        cell_line, location, user_frame, at = found
        key = (kind, cell_line, location)
        if key in self.causes:
            self.causes[key].count += 1
            return
        expression = _call_source(user_frame) if line is None else ""
        written = self._source_line(user_frame.f_code.co_filename, at)
        if expression and written != linecache.getline(user_frame.f_code.co_filename, at).strip():
            expression = written  # a line IPython transformed (`%time ...`): name the call as written
        described = describe(expression) if line is not None else describe(_Expression(expression, user_frame))
        if described is None:  # a seeded look-alike after all
            return
        detail, fix, kind = described
        code = written
        if os.getpid() != self._pid:
            detail += " It ran in a worker process the code started (forked while tracing)."
        self.causes[key] = cause = Cause(kind, cell_line, location, code, detail, fix)
        if os.getpid() != self._pid:
            self._ship(cause)

    def _source_line(self, filename: str, line: int) -> str:
        """A line as the user wrote it: in the cell, from its source when IPython's transforms (a line magic
        such as `%time`, the captured last expression) kept the lines in place."""
        if self.cell_source is not None and self._file_kind(filename) == "cell":
            written = self.cell_source.splitlines()
            if len(written) == len(linecache.getlines(filename)) and 0 < line <= len(written):
                return written[line - 1].strip()
        return _unwrap_last_expression(linecache.getline(filename, line).strip())

    def _ship(self, cause: Cause) -> None:
        """In a forked worker (a DataLoader's, a multiprocessing Pool's): hand the cause to the parent."""
        if self._spool is None:
            return
        import json

        try:
            with open(os.path.join(self._spool, f"{os.getpid()}.jsonl"), "a", encoding="utf-8") as spool:
                spool.write(json.dumps(cause.to_dict()) + "\n")
        except OSError:  # the parent's trace ended (the folder is gone): stop profiling this worker
            self._alive.clear()

    def _collect_spool(self) -> None:
        """Merge what forked workers saw; the same cause from several workers is counted once per worker."""
        import json
        import shutil

        if self._spool is None:
            return
        try:
            for name in sorted(os.listdir(self._spool)):
                with open(os.path.join(self._spool, name), encoding="utf-8") as spool:
                    for line in spool:
                        try:
                            cause = Cause.from_dict(json.loads(line))
                        except (ValueError, TypeError):
                            continue  # a line a worker was still writing
                        key = (cause.kind, cause.line, cause.location)
                        if key in self.causes:
                            self.causes[key].count += cause.count
                        else:
                            self.causes[key] = cause
        finally:
            shutil.rmtree(self._spool, ignore_errors=True)
            self._spool = None

    # -- installing -------------------------------------------------------------------

    def _install_table(self) -> None:
        calls: dict[types.CodeType, Any] = {random.Random.seed.__code__: self._on_random_seed}
        import uuid

        calls[uuid.uuid1.__code__] = self._on_uuid1
        calls[threading.Thread.start.__code__] = self._on_thread
        try:
            import multiprocessing.process

            calls[multiprocessing.process.BaseProcess.start.__code__] = self._on_process
        except ImportError:  # pragma: no cover - multiprocessing is missing on a few platforms
            pass
        import concurrent.futures.process
        import concurrent.futures.thread

        calls[concurrent.futures.thread.ThreadPoolExecutor.submit.__code__] = self._on_executor
        calls[concurrent.futures.process.ProcessPoolExecutor.submit.__code__] = self._on_executor
        torch = sys.modules.get("torch")
        if torch is not None:
            import torch.backends
            import torch.cuda.random
            import torch.utils.data

            calls[torch.cuda.random.seed.__code__] = self._on_cuda_seed
            calls[torch.cuda.random.seed_all.__code__] = self._on_cuda_seed
            calls[torch.backends.ContextProp.__set__.__code__] = self._on_context_prop
            calls[torch.use_deterministic_algorithms.__code__] = self._on_deterministic
            calls[torch.utils.data.DataLoader.__iter__.__code__] = self._on_dataloader
        self._calls = calls
        clocks = {}
        for name in (
            "time",
            "time_ns",
            "perf_counter",
            "perf_counter_ns",
            "monotonic",
            "monotonic_ns",
            "process_time",
            "process_time_ns",
        ):
            clocks[getattr(time, name)] = f"time.{name}()"
        self._clocks = clocks
        self._urandom = os.urandom
        if self.watch is not None:
            from .globalrng import NUMPY_DRAW_CODE

            self._draws = _global_draws()
            calls[NUMPY_DRAW_CODE] = self._on_numpy_draw

    def _make_profile(self) -> Any:
        """The profile function: a closure over local tables, because it runs on every call while tracing."""
        calls, clocks, urandom = self._calls, self._clocks, self._urandom
        on_c_call = self._on_c_call
        rare_names = {"seed", "now", "utcnow", "today", *self._draws.get("names", ())}
        alive = self._alive

        def profile(frame: types.FrameType, event: str, arg: Any) -> None:
            if not alive:  # a thread started during the trace outlived it: stop profiling it
                sys.setprofile(None)
                return
            try:
                if event == "c_call":
                    if arg is urandom or arg in clocks or getattr(arg, "__name__", None) in rare_names:
                        on_c_call(frame, arg)
                elif event == "call":
                    handler = calls.get(frame.f_code)
                    if handler is not None:
                        handler(frame)
            except Exception:  # the tracer must never break the user's code
                pass

        return profile

    def _on_c_call(self, frame: types.FrameType, arg: Any) -> None:
        if arg is self._urandom:
            self._on_urandom(frame)
        elif arg in self._clocks:
            if self._file_kind(frame.f_code.co_filename) != "library":
                self._record("clock", frame, lambda _e, name=self._clocks[arg]: _clock(name))
            return
        name = getattr(arg, "__name__", None)
        owner = getattr(arg, "__self__", None)
        if self._draws and name in self._draws["names"]:
            self._on_global_draw(frame, arg, name, owner)
        if name == "seed":
            torch = sys.modules.get("torch")
            if (
                torch is not None
                and isinstance(owner, torch.Generator)
                and self._only_through(frame, ("torch/random.py",))  # torch.cuda.seed: its own handler
            ):
                self._record("unseeded-generator", frame, _torch_seed)
        elif name in ("now", "utcnow", "today"):
            user = self._file_kind(frame.f_code.co_filename) != "library"
            if user and isinstance(owner, type) and issubclass(owner, datetime.date):
                label = f"{owner.__name__}.{name}()"
                self._record("clock", frame, lambda _e, label=label: _clock(label))

    # -- handlers --------------------------------------------------------------------------

    def _on_global_draw(self, frame: types.FrameType, arg: Any, name: str, owner: Any) -> None:
        """A draw from Python's, NumPy's or torch's global RNG: named (at its first draw) when nothing seeded it."""
        from .globalrng import PYTHON, TORCH

        draws = self._draws
        if owner is random._inst:  # type: ignore[attr-defined]
            rng = PYTHON if name in draws[PYTHON] else None
        elif arg in draws[TORCH] or (name in draws["torch_methods"] and _is_cpu_tensor(owner, draws)):
            rng = TORCH if _default_torch_generator(frame, name, self._file_kind(frame.f_code.co_filename)) else None
        else:
            rng = None
        self._global_draw(frame, rng)

    def _on_numpy_draw(self, frame: types.FrameType) -> None:
        from .globalrng import NUMPY

        self._global_draw(frame, NUMPY)

    def _global_draw(self, frame: types.FrameType, rng: str | None) -> None:
        if rng is None or rng in self._drawn or self.watch.seeded(rng):
            return
        self._drawn.add(rng)
        self._record("unseeded-generator", frame, lambda expression, rng=rng: _global_draw(expression, rng))

    def _only_through(self, frame: types.FrameType | None, suffixes: tuple[str, ...]) -> bool:
        """Whether the library frames from `frame` out to the user's code all lie in files ending with
        `suffixes`: the user called that source itself, not a library that uses it internally."""
        while frame is not None and id(frame) not in self._outer:
            filename = frame.f_code.co_filename
            if self._file_kind(filename) != "library":
                return True
            if not filename.replace(os.sep, "/").endswith(suffixes):
                return False
            frame = frame.f_back
        return False

    def _on_urandom(self, frame: types.FrameType) -> None:
        if self._only_through(frame, _ENTROPY_FILES):
            self._record("entropy", frame, lambda expression: _entropy(expression, _from_c(frame)))
        elif frame.f_code.co_name == "getrandbits" and _from_c(frame):
            # a generator created without a seed inside a library call (C code asking secrets.randbits)
            self._record("entropy", frame, lambda expression: _entropy(expression, True))

    def _on_random_seed(self, frame: types.FrameType) -> None:
        owner = frame.f_locals.get("self")
        unseeded = frame.f_locals.get("a") is None and not isinstance(owner, random.SystemRandom)
        if unseeded and self._only_through(frame, ("/random.py",)):
            self._record("unseeded-generator", frame, _random_seed)

    def _on_uuid1(self, frame: types.FrameType) -> None:
        self._record(
            "entropy",
            frame.f_back,
            lambda _e: (
                "uuid.uuid1() is made from the clock, the machine's address and a random sequence number, so "
                "it is new every run.",
                _ENTROPY_FIX,
                "entropy",
            ),
        )

    def _on_cuda_seed(self, frame: types.FrameType) -> None:
        self._record(
            "unseeded-generator",
            frame.f_back,
            lambda _e: (
                f"torch.cuda.{frame.f_code.co_name}() seeds the CUDA generators from the OS, so every run draws "
                "different numbers on the GPU.",
                "seed them: `torch.cuda.manual_seed_all(seed)` (or `%repro seed N`).",
                "unseeded-generator",
            ),
        )

    def _on_thread(self, frame: types.FrameType) -> None:
        thread = frame.f_locals.get("self")
        target = getattr(getattr(thread, "_target", None), "__qualname__", None)
        what = f"a thread running {target}()" if target else "a thread"
        self._record("concurrency", frame.f_back, lambda _e: _concurrency(what))

    def _on_process(self, frame: types.FrameType) -> None:
        self._record("concurrency", frame.f_back, lambda _e: _concurrency("a process"))

    def _on_executor(self, frame: types.FrameType) -> None:
        executor = type(frame.f_locals.get("self")).__name__
        self._record("concurrency", frame.f_back, lambda _e: _concurrency(f"work on a {executor}"))

    def _on_dataloader(self, frame: types.FrameType) -> None:
        loader = frame.f_locals.get("self")
        workers = getattr(loader, "num_workers", 0)
        if not workers:
            return
        persistent = bool(getattr(loader, "persistent_workers", False))
        survived = persistent and getattr(loader, "_iterator", None) is not None
        has_init = getattr(loader, "worker_init_fn", None) is not None
        self._record("concurrency", frame.f_back, lambda _e: _dataloader(workers, persistent, survived, has_init))

    def _on_context_prop(self, frame: types.FrameType) -> None:
        prop, value = frame.f_locals.get("self"), frame.f_locals.get("val")
        setter = getattr(getattr(prop, "setter", None), "__name__", "")
        if setter == "_set_cudnn_benchmark" and value:
            self._record("setting", frame.f_back, lambda _e: _setting("torch.backends.cudnn.benchmark = True"))
        elif setter == "_set_cudnn_deterministic" and not value:
            self._record("setting", frame.f_back, lambda _e: _setting("torch.backends.cudnn.deterministic = False"))

    def _on_deterministic(self, frame: types.FrameType) -> None:
        mode, warn_only = frame.f_locals.get("mode"), frame.f_locals.get("warn_only")
        if not mode:
            self._record("setting", frame.f_back, lambda _e: _setting("torch.use_deterministic_algorithms(False)"))
        elif warn_only:
            label = "torch.use_deterministic_algorithms(True, warn_only=True)"
            self._record("setting", frame.f_back, lambda _e: _setting(label))

    def _showwarning(self, message: Any, category: Any, filename: str, lineno: int, file: Any = None, line: Any = None):
        match = _NO_DETERMINISTIC.match(str(message))
        if match:
            op = match.group(1).strip()
            self._record("nondeterministic-op", sys._getframe(1), lambda _e: _op(op))
        forward = getattr(warnings, "_showwarnmsg_impl", None)
        if forward is not None:
            forward(warnings.WarningMessage(message, category, filename, lineno, file, line))

    # -- string hash order -----------------------------------------------------------------

    def _candidates_for(self, code: types.CodeType) -> list[tuple[int, ast.expr]]:
        candidates = self._hash_candidates.get(code)
        if candidates is None:
            candidates = self._candidates_of(code)
            self._hash_candidates[code] = candidates
        return candidates

    def _check_hash_order(self, frame: types.FrameType, candidates: list[tuple[int, ast.expr]]) -> None:
        for lineno, expr in candidates:
            what = _hash_ordered(expr, frame)
            if what:
                self._record("hash-order", frame, lambda _e, what=what: _hash_order(what), line=lineno)

    def _make_line_tracer(self) -> Any:
        """A `sys.settrace` function that follows lines only in frames whose code iterates something that may be
        a set of strings, and judges those that ran when the frame returns: only code that ran is accused."""
        alive = self._alive

        def local_for(candidates: list[tuple[int, ast.expr]]) -> Any:
            wanted = {line for line, _ in candidates}
            ran: set[int] = set()

            def local(frame: types.FrameType, event: str, arg: Any) -> Any:
                try:
                    if event == "line":
                        if frame.f_lineno in wanted:
                            ran.add(frame.f_lineno)
                    elif event == "return" and ran:
                        self._check_hash_order(frame, [item for item in candidates if item[0] in ran])
                except Exception:  # never break the user's code
                    pass
                return local

            return local

        def global_trace(frame: types.FrameType, event: str, arg: Any) -> Any:
            if not alive:
                sys.settrace(None)
                return None
            try:
                candidates = self._candidates_for(frame.f_code)
            except Exception:
                return None
            return local_for(candidates) if candidates else None

        return global_trace

    def _candidates_of(self, code: types.CodeType) -> list[tuple[int, ast.expr]]:
        filename = code.co_filename
        if self._file_kind(filename) == "library":
            return []
        if filename not in self._file_candidates:  # parsed once per file, then picked per code object
            try:
                tree = ast.parse("".join(linecache.getlines(filename)))
            except (SyntaxError, ValueError):
                tree = None
            self._file_candidates[filename] = hash_order_candidates(tree) if tree is not None else []
        lines = {line for _, line in dis.findlinestarts(code) if line is not None}
        return [(node.lineno, node) for node in self._file_candidates[filename] if node.lineno in lines]


_ENTROPY_FILES = ("/random.py", "/secrets.py", "/uuid.py")
_LAST_EXPRESSION = re.compile(r"^_ipyrepro_last_value_ = \((.*?)(\))?$")  # how rerun.py captures a last expression


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


# -- the words for each cause -------------------------------------------------------------------


def _entropy(expression: str, from_c: bool) -> tuple[str, str, str] | None:
    dotted, last, nargs = _callee(expression)
    shown = _focus(expression) or dotted
    if last == "RandomState" and not _first_argument_is_none(expression):
        return None  # RandomState(seed) seeds a fresh MT19937 from the OS, then re-seeds it from `seed`
    if last in _GENERATOR_FIXES or last in _BIT_GENERATORS:
        fix = _GENERATOR_FIXES.get(last) or f"pass a seed: `np.random.{last}(seed)`"
        return (
            f"`{shown}` draws its seed from the OS, so every run starts from a different state.",
            fix,
            ("unseeded-generator"),
        )
    if last == "seed" and "random" in dotted:
        return (
            f"`{shown}` re-seeds NumPy's global generator from the OS, undoing the seeding.",
            "pass a seed: `np.random.seed(seed)`, or leave seeding to `%repro on`.",
            "unseeded-generator",
        )
    if from_c and last not in ("randbits", "getrandbits", "urandom"):
        return (
            f"`{shown}` created a random generator without a seed: it read OS entropy for its seed.",
            "pass a seed to the generator it creates (e.g. `seed=`/`random_state=`).",
            "unseeded-generator",
        )
    return f"`{shown}` reads entropy from the OS (os.urandom), different every run.", _ENTROPY_FIX, "entropy"


def _random_seed(expression: str) -> tuple[str, str, str]:
    dotted, last, _ = _callee(expression)
    shown = _focus(expression) or dotted
    if last == "seed":
        return (
            f"`{shown}` re-seeds Python's generator from the OS, undoing the seeding.",
            "pass a seed: `random.seed(seed)`, or leave seeding to `%repro on`.",
            "unseeded-generator",
        )
    return (
        f"`{shown or 'random.Random()'}` creates a generator seeded from the OS, so every run draws different numbers.",
        "pass a seed: `random.Random(seed)`, or draw it from the seeded global RNG: "
        "`random.Random(random.getrandbits(64))`.",
        "unseeded-generator",
    )


def _global_draw(expression: str, rng: str) -> tuple[str, str, str]:
    from .globalrng import NAMES, SEEDS

    shown = _focus(expression) or "the call"
    others = ", ".join(f"`{SEEDS[name]}`" for name in SEEDS if name != rng)
    return (
        f"`{shown}` draws from {NAMES[rng]}, which nothing in this notebook seeded: it starts from an OS seed in "
        "every process.",
        f"seed it once at the top: `{SEEDS[rng]}` (and {others}), or run the notebook under ipyrepro "
        "(`%repro on`, or `ipyrepro kernel install`).",
        "unseeded-generator",
    )


def _torch_seed(expression: str) -> tuple[str, str, str]:
    dotted, _, _ = _callee(expression)
    shown = _focus(expression) or dotted or "Generator.seed()"
    fix = (
        "seed it: `torch.manual_seed(seed)` (or `%repro seed N`)."
        if dotted in ("torch.seed", "seed")
        else "seed it: `generator.manual_seed(seed)`."
    )
    return f"`{shown}` seeds a torch generator from the OS (non-deterministic by design).", fix, "unseeded-generator"


def _clock(name: str) -> tuple[str, str, str]:
    return (
        f"{name} reads the clock, which differs every run; a suspect if its value flows into results "
        "(timings alone are harmless).",
        "keep clock readings out of compared values (log them instead), or pass a fixed timestamp.",
        "clock",
    )


def _concurrency(what: str) -> tuple[str, str, str]:
    return (
        f"the cell started {what}: the order in which threads or processes run, and any unseeded draws inside "
        "them, can change results run to run.",
        "make the work order-independent (collect results by index, not completion order), seed inside each "
        "worker, or run it sequentially to check.",
        "concurrency",
    )


def _dataloader(workers: int, persistent: bool, survived: bool, has_init: bool) -> tuple[str, str, str]:
    detail = (
        f"a DataLoader with num_workers={workers} runs the dataset in worker processes; torch seeds torch and "
        "`random` in each worker, but unseeded sources there (np.random.default_rng(), os.urandom"
        + (", your worker_init_fn" if has_init else "")
        + ") differ run to run."
    )
    if survived:
        detail += " Its persistent_workers=True iterator survived from an earlier cell, so the workers continue "
        detail += "from the RNG state that cell left."
    fix = "seed per worker in worker_init_fn from `torch.initial_seed()`, pass a seeded `generator=` to the DataLoader"
    fix += ", and create the DataLoader in the same cell (or use persistent_workers=False)." if persistent else "."
    return detail, fix, "concurrency"


def _setting(what: str) -> tuple[str, str, str]:
    return (
        f"`{what}` lets torch choose nondeterministic algorithms from here on.",
        "remove it (or run `%repro on` after it): ipyrepro's recipe keeps these deterministic.",
        "setting",
    )


def _op(op: str) -> tuple[str, str, str]:
    return (
        f"{op} has no deterministic implementation (reported by torch in the rerun with "
        "`use_deterministic_algorithms(True, warn_only=True)`).",
        "use a deterministic alternative for this op (e.g. sort-based or scatter without accumulation), run it on "
        "the CPU, or compare with --rtol/--atol; `%repro on` makes torch raise here.",
        "nondeterministic-op",
    )


def _hash_order(what: str) -> tuple[str, str, str]:
    return (
        f"{what}: its order depends on string hashing, which changes with every process unless PYTHONHASHSEED is "
        "set (runs in one process agree; a fresh kernel does not).",
        "iterate in a fixed order, `sorted(...)`, or start the kernel with PYTHONHASHSEED fixed "
        "(`ipyrepro kernel install`).",
        "hash-order",
    )


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


# -- running the tracer -------------------------------------------------------------------------


@contextmanager
def trace(
    cell_code: str | None = None, *, cell_source: str | None = None, hash_order: bool | None = None
) -> Iterator[Tracer]:
    """Trace what runs in the block; `tracer.result()` gives the causes. Settings the block changes
    (cuDNN flags, deterministic algorithms) are put back afterwards."""
    from .core.flags import Flags
    from .core.numpyrandom import NUMPY_RANDOM

    NUMPY_RANDOM.settle()  # its import's own entropy read, which ipyrepro's pending seed overrides, is no cause
    from .globalrng import GLOBAL_RNGS

    tracer = Tracer(cell_code=cell_code, cell_source=cell_source, watch=GLOBAL_RNGS if GLOBAL_RNGS.armed else None)
    if hash_order is not None:
        tracer.hash_order = hash_order
    tracer._install_table()
    frame: types.FrameType | None = sys._getframe()
    while frame is not None:
        tracer._outer.add(id(frame))
        tracer._outer_frames.append(frame)
        frame = frame.f_back
    flags = Flags.read()
    previous_profile = sys.getprofile()
    previous_thread_profile = getattr(threading, "getprofile", lambda: getattr(threading, "_profile_hook", None))()
    previous_showwarning = warnings.showwarning
    warnings.showwarning = tracer._showwarning
    tracer._spool = tempfile.mkdtemp(prefix="ipyrepro-causes-")
    # Hash order needs line events; a debugger's tracer is left alone (then hash order is not judged here,
    # rather than accusing lines that may not have run).
    tracer._lines = tracer.hash_order and sys.gettrace() is None
    previous_thread_trace = getattr(threading, "gettrace", lambda: getattr(threading, "_trace_hook", None))()
    if tracer._lines:
        line_tracer = tracer._make_line_tracer()
        threading.settrace(line_tracer)
        sys.settrace(line_tracer)
    profile = tracer._make_profile()
    threading.setprofile(profile)
    sys.setprofile(profile)
    try:
        yield tracer
    finally:
        sys.setprofile(previous_profile)
        if tracer._lines:
            sys.settrace(None)
            threading.settrace(previous_thread_trace)  # type: ignore[arg-type]
        tracer._alive.clear()
        tracer._collect_spool()
        threading.setprofile(previous_thread_profile)  # type: ignore[arg-type]
        warnings.showwarning = previous_showwarning
        tracer._outer_frames.clear()
        _restore_flags(flags)


def _restore_flags(flags: Any) -> None:
    import torch

    from .core.flags import set_deterministic_algorithms
    from .core.torchinfo import deterministic_algorithms_mode

    if bool(torch.backends.cudnn.benchmark) != flags.cudnn_benchmark:
        torch.backends.cudnn.benchmark = flags.cudnn_benchmark
    if bool(torch.backends.cudnn.deterministic) != flags.cudnn_deterministic:
        torch.backends.cudnn.deterministic = flags.cudnn_deterministic
    if deterministic_algorithms_mode() != flags.deterministic_algorithms:
        set_deterministic_algorithms(flags.deterministic_algorithms)


def result(tracer: Tracer) -> list[Cause]:
    return ranked(list(tracer.causes.values()))


# -- one cell in a shell (what `ipyrepro check` runs inside its diagnostic kernel) --------------------

KERNEL_MARKER = "ipyrepro-causes:"
_ABSENT = object()


def cell_causes(shell: Any, cell: str, *, hash_order: bool | None = None) -> list[Cause]:
    """Run `cell` once more in `shell` under the tracer and return its causes; afterwards the namespace,
    the RNG states and the determinism settings are as before. The run works on copies of the names the
    cell touches, so the user's own objects are not changed."""
    from IPython.utils.capture import capture_output

    from .diagnosis import deterministic_warn_only
    from .rerun import _rng_state, _set_rng_state
    from .snapshot import Snapshot, cell_names

    code = shell.transform_cell(cell)
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return []
    namespace = shell.user_ns
    names = cell_names(tree, namespace)
    snapshot = Snapshot.take(namespace, names)
    kept = {name: namespace.get(name, _ABSENT) for name in (*names.bound, *names.read)}
    existing = set(namespace)
    rng = _rng_state()
    snapshot.restore(namespace)
    try:
        with (
            deterministic_warn_only(),
            trace(code, cell_source=cell, hash_order=hash_order) as tracer,
            capture_output(),
        ):
            shell.run_cell(code, store_history=False, silent=True)
    finally:
        for name in set(namespace) - existing:
            namespace.pop(name, None)
        for name, value in kept.items():
            if value is _ABSENT:
                namespace.pop(name, None)
            else:
                namespace[name] = value
        _set_rng_state(rng)
    return result(tracer)


def hash_order_in(shell: Any, cell: str) -> list[Cause]:
    """The places in `cell` that iterate or show a set of strings, judged with the values the namespace
    holds now (after the cell ran); used where a differential run proved the cell depends on hash order."""
    code = shell.transform_cell(cell)
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return []
    import builtins

    frame = types.SimpleNamespace(f_locals=shell.user_ns, f_globals=shell.user_ns, f_builtins=vars(builtins))
    found: dict[int, Cause] = {}
    lines = code.splitlines()
    for node in hash_order_candidates(tree):
        what = _hash_ordered(node, frame)  # type: ignore[arg-type]
        if what and node.lineno not in found:
            detail, fix, kind = _hash_order(what)
            found[node.lineno] = Cause(kind, node.lineno, None, lines[node.lineno - 1].strip(), detail, fix)
    return [found[line] for line in sorted(found)]


def _seed_as_the_cell(cell: str) -> None:
    """Re-seed as the hook seeds `cell` itself: it seeded this helper, whose code differs (in `source`
    mode, and `cell` mode without a cell id). Nothing to do (nor any torch to import) without ipyrepro."""
    import sys

    state = getattr(sys.modules.get("ipyrepro.core.state"), "STATE", None)
    if state is not None and state.shell_hooks:
        last = state.last_cell
        state.before_cell(last.cell_id if last is not None else None, cell)


def _import_numpy_random_if_watched() -> None:
    """NumPy 2 imports `numpy.random` on first use, and its global RandomState reads OS entropy then: in the
    watched kernel (nothing seeds it) import it before the trace, so a first draw in the cell is named as a
    draw from the unseeded global RNG, not as that import's entropy read."""
    from .globalrng import GLOBAL_RNGS

    if GLOBAL_RNGS.armed and "numpy" in sys.modules and "numpy.random" not in sys.modules:
        import importlib

        importlib.import_module("numpy.random")


def print_for_kernel(kind: str, cell: str, hash_order: bool = False) -> None:
    """The kernel side of `ipyrepro check`'s diagnostic run: print one marked JSON line of causes."""
    import json

    from IPython import get_ipython

    shell = get_ipython()
    try:
        if kind == "trace":
            _seed_as_the_cell(cell)
            _import_numpy_random_if_watched()
        causes = cell_causes(shell, cell, hash_order=hash_order) if kind == "trace" else hash_order_in(shell, cell)
        payload: Any = [cause.to_dict() for cause in causes]
    except Exception as error:  # report, never break the notebook's run
        payload = {"error": f"{type(error).__name__}: {error}"}
    print(KERNEL_MARKER + json.dumps(payload))
