"""Name the line that drew the randomness: one traced diagnostic run records every source of nondeterminism.

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
import tempfile
import threading
import time
import types
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from ..comparison.findings import Cause, ranked
from ..core.importhook import after_import
from .frames import (
    _ENTROPY_FILES,
    _ENTROPY_FIX,
    _call_source,
    _default_torch_generator,
    _Expression,
    _from_c,
    _global_draws,
    _is_cpu_tensor,
    _is_library_file,
    _location,
    _unwrap_last_expression,
)
from .hashorder import _hash_ordered, hash_order_candidates, hash_seed_fixed
from .wording import (
    _clock,
    _concurrency,
    _dataloader,
    _entropy,
    _global_draw,
    _hash_order,
    _op,
    _random_seed,
    _setting,
    _torch_seed,
)

_NO_DETERMINISTIC = re.compile(r"^(.+?) does not have a deterministic implementation")
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
    _rare: set[str] = field(default_factory=set)  # the C functions' names the profile looks at

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
        if "torch" in sys.modules:
            calls.update(self._torch_calls())
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

    def _torch_calls(self) -> dict[types.CodeType, Any]:
        import torch.backends
        import torch.cuda.random
        import torch.utils.data

        return {
            torch.cuda.random.seed.__code__: self._on_cuda_seed,
            torch.cuda.random.seed_all.__code__: self._on_cuda_seed,
            torch.backends.ContextProp.__set__.__code__: self._on_context_prop,
            torch.use_deterministic_algorithms.__code__: self._on_deterministic,
            torch.utils.data.DataLoader.__iter__.__code__: self._on_dataloader,
        }

    def _torch_imported(self, module: Any) -> None:
        """torch was imported by the traced code itself (`import torch` and `w = torch.randn(3)` in one cell, the
        most common first cell): watch its draws and settings from here on, in the tables the profile holds."""
        if not self._alive:
            return
        self._calls.update(self._torch_calls())
        if self.watch is not None:
            self._draws = _global_draws()
            self._rare.update(self._draws["names"])

    def _make_profile(self) -> Any:
        """The profile function: a closure over local tables, because it runs on every call while tracing
        (`calls` and `rare_names` are updated in place when the traced code imports torch)."""
        calls, clocks, urandom = self._calls, self._clocks, self._urandom
        on_c_call = self._on_c_call
        rare_names = self._rare = {"seed", "now", "utcnow", "today", *self._draws.get("names", ())}
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


# -- running the tracer -------------------------------------------------------------------------


@contextmanager
def trace(
    cell_code: str | None = None, *, cell_source: str | None = None, hash_order: bool | None = None
) -> Iterator[Tracer]:
    """Trace what runs in the block; `tracer.result()` gives the causes. Settings the block changes
    (cuDNN flags, deterministic algorithms) are put back afterwards."""
    from ..core.flags import Flags
    from ..core.numpyrandom import NUMPY_RANDOM

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
    torch_hook = None if "torch" in sys.modules else after_import("torch", tracer._torch_imported)
    threading.setprofile(profile)
    sys.setprofile(profile)
    try:
        yield tracer
    finally:
        sys.setprofile(previous_profile)
        if torch_hook is not None:
            torch_hook.remove()
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
    """Put back the torch flags the traced code changed; never imports torch (before its import they wait)."""
    from ..core.flags import Flags, set_cudnn, set_deterministic_algorithms

    now = Flags.read()
    if now.cudnn_benchmark != flags.cudnn_benchmark:
        set_cudnn(benchmark=flags.cudnn_benchmark)
    if now.cudnn_deterministic != flags.cudnn_deterministic:
        set_cudnn(deterministic=flags.cudnn_deterministic)
    if now.deterministic_algorithms != flags.deterministic_algorithms:
        set_deterministic_algorithms(flags.deterministic_algorithms)


def result(tracer: Tracer) -> list[Cause]:
    return ranked(list(tracer.causes.values()))
