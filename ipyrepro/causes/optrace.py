"""`--trace-ops`: a digest of every torch op's inputs and outputs, to name the first op two machines disagree on.

A TorchDispatchMode sees each aten op after autograd (forward and backward). For
each it records the op's name, a digest of every tensor input (taken before the op,
so in-place ops are seen as they were) and output, the device, and the user's file
and line that led to it. Digests are computed where the tensor lives: CPU tensors
are hashed in place (xxh3 over their bytes, no copy), accelerator tensors with a
modular hash reduced on the device, so only a few integers cross to the host.

Bounded: views and metadata ops are skipped, and at most `cap` ops per cell are
recorded; past it the record says so. Comparing two traces walks them in order and
stops at the first op whose output differs: with the same inputs it is the op
itself (its kernel, its precision, or the machine's ISA) that differs.
"""

from __future__ import annotations

import linecache
import os
import re
import sys
import sysconfig
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import xxhash
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

DEFAULT_CAP = 20_000  # ops per cell: about 3 MB of JSON; a CNN training step is a few hundred ops
_DEVICE_CHUNK = 1 << 24  # words hashed per pass on an accelerator
_PRIME = 2_147_483_647  # 2**31 - 1: products of two residues fit in int64, sums of 2**32 of them too
_LANES = ((1_000_003, 7), (998_244_353, 13), (1_234_567_891, 29), (2_013_265_921, 31))
_SKIPPED = {"aten::detach", "aten::alias", "aten::lift_fresh", "aten::_local_scalar_dense", "prim::device"}


# -- digests ---------------------------------------------------------------------


def op_digest(tensor: torch.Tensor) -> str:
    """A digest of dtype, shape and exact bytes, computed on the tensor's own device."""
    if tensor.layout != torch.strided or tensor.is_quantized or tensor.device.type == "meta":
        return f"<{tensor.layout}:{tensor.device.type}>"
    data = tensor.detach().resolve_conj().resolve_neg().contiguous()
    header = f"{data.dtype}:{list(data.shape)}"
    if data.numel() == 0:
        return f"{header}:empty"
    raw = data.reshape(-1).view(torch.uint8)
    if raw.device.type == "cpu":
        return f"{header}:{xxhash.xxh3_64_hexdigest(raw.numpy())}"
    return f"{header}:{device_hash(raw)}"


def device_hash(raw: torch.Tensor) -> str:
    """A 4 x 31-bit position-dependent modular hash of a uint8 tensor, reduced on its device (exact integer sums)."""
    words = raw.view(torch.int32) if raw.numel() % 4 == 0 else raw
    lanes = [0] * len(_LANES)
    for start in range(0, words.numel(), _DEVICE_CHUNK):
        chunk = words[start : start + _DEVICE_CHUNK].to(torch.int64) % _PRIME
        position = torch.arange(start, start + chunk.numel(), device=chunk.device, dtype=torch.int64)
        sums = []
        for multiplier, offset in _LANES:
            coefficient = (position * multiplier + offset) % _PRIME + 1
            sums.append(((chunk * coefficient) % _PRIME).sum())
        for index, value in enumerate(torch.stack(sums).tolist()):  # the only host copy: four integers
            lanes[index] = (lanes[index] + value) % _PRIME
    return "".join(f"{lane:08x}" for lane in lanes)


# -- recording -------------------------------------------------------------------


@dataclass
class OpRecord:
    op: str
    device: str
    inputs: list[str]
    outputs: list[str]
    file: str
    line: int
    code: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "op": self.op,
            "device": self.device,
            "inputs": self.inputs,
            "outputs": self.outputs,
            "file": self.file,
            "line": self.line,
            "code": self.code,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> OpRecord:
        return cls(
            str(data["op"]),
            str(data.get("device", "")),
            [str(item) for item in data.get("inputs", [])],
            [str(item) for item in data.get("outputs", [])],
            str(data.get("file", "")),
            int(data.get("line", 0)),
            str(data.get("code", "")),
        )


@dataclass
class CellTrace:
    """The ops of one cell, in order; `truncated` counts those past the cap (not recorded)."""

    cell: str  # a label the caller chooses: the cell's index in a notebook, or "cell" for %%repro
    ops: list[OpRecord] = field(default_factory=list)
    truncated: int = 0
    cap: int = DEFAULT_CAP

    def note(self) -> str | None:
        if not self.truncated:
            return None
        return (
            f"cell {self.cell}: the op trace stopped at {self.cap} ops ({self.truncated} more were not recorded); "
            "a divergence after that point is not found. Raise the cap (IPYREPRO_TRACE_CAP) or trace fewer cells"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "cell": self.cell,
            "cap": self.cap,
            "truncated": self.truncated,
            "ops": [op.to_dict() for op in self.ops],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CellTrace:
        return cls(
            str(data["cell"]),
            [OpRecord.from_dict(op) for op in data.get("ops", [])],
            int(data.get("truncated", 0)),
            int(data.get("cap", DEFAULT_CAP)),
        )


def _library_folders() -> tuple[str, ...]:
    folders = {os.path.dirname(torch.__file__), os.path.dirname(os.path.dirname(__file__))}
    for name in ("stdlib", "platstdlib"):
        path = sysconfig.get_paths().get(name)
        if path:
            folders.add(path)
    return tuple(os.path.join(folder, "") for folder in folders)


class OpTracer(TorchDispatchMode):
    """Records every aten op of the code run inside it into `trace` (views and metadata ops skipped)."""

    def __init__(self, trace: CellTrace) -> None:
        super().__init__()
        self.trace = trace
        self._libraries = _library_folders()

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        name = func._schema.name
        if getattr(func, "is_view", False) or name in _SKIPPED:
            return func(*args, **kwargs)
        if len(self.trace.ops) >= self.trace.cap:
            self.trace.truncated += 1
            return func(*args, **kwargs)
        inputs = [op_digest(item) for item in tree_leaves((args, kwargs)) if isinstance(item, torch.Tensor)]
        result = func(*args, **kwargs)
        tensors = [item for item in tree_leaves(result) if isinstance(item, torch.Tensor)]
        if not tensors:
            return result
        file, line, code = self._user_line()
        self.trace.ops.append(
            OpRecord(name, tensors[0].device.type, inputs, [op_digest(t) for t in tensors], file, line, code)
        )
        return result

    def _user_line(self) -> tuple[str, int, str]:
        """The innermost frame outside torch, ipyrepro and the standard library: the user's code."""
        frame = sys._getframe(2)
        while frame is not None:
            filename = frame.f_code.co_filename
            if not filename.startswith(self._libraries) and not filename.startswith("<frozen"):
                code = linecache.getline(filename, frame.f_lineno).strip()
                return _stable_name(filename), frame.f_lineno, code
            frame = frame.f_back
        return "", 0, ""


# A cell's code as ipykernel (/tmp/ipykernel_<pid>/<hash>.py) or IPython (<ipython-input-N-...>) names it.
_CELL_FILE = re.compile(r"(.*[/\\]ipykernel_\d+[/\\]\d+\.py|<ipython-input-.*>)$")


def _stable_name(filename: str) -> str:
    """A cell's file name changes with the kernel's process id; traces of two runs must compare equal."""
    return "<cell>" if _CELL_FILE.match(filename) else filename


def trace_cap() -> int:
    """The cap on ops per cell: DEFAULT_CAP, or IPYREPRO_TRACE_CAP when it holds a positive integer."""
    text = os.environ.get("IPYREPRO_TRACE_CAP", "")
    return int(text) if text.isdigit() and int(text) > 0 else DEFAULT_CAP


# -- comparing -------------------------------------------------------------------


@dataclass(frozen=True)
class Divergence:
    """The first op whose output differs between two traces, and whether its inputs agreed."""

    cell: str
    position: int  # of the op within its cell, from 1
    here: OpRecord
    there: OpRecord
    same_inputs: bool
    kind: str  # "output" (the op computed other bits) or "sequence" (other ops ran: control flow)
    cause: str = ""  # the environment difference that explains it, or the kernel's nondeterminism

    def text(self, cell_label: str | None = None) -> str:
        where = cell_label or f"cell {self.cell}"
        of = "" if self.here.file in ("", "<cell>") else f" of {os.path.basename(self.here.file)}"
        line = f"line {self.here.line}{of}" + (f" ({self.here.code})" if self.here.code else "")
        if self.kind == "sequence":
            head = (
                f"{where}, op {self.position}: {self.here.op} here, {self.there.op} there at {line}: "
                "other ops ran (control flow depends on values that already differed)"
            )
        else:
            what = (
                "same inputs, different outputs"
                if self.same_inputs
                else "its inputs already differ (they come from outside torch ops, e.g. a Python or numpy value)"
            )
            head = f"{self.here.op} at {where}, {line}: {what}"
        return head + (f"; {self.cause}" if self.cause else "")

    def to_dict(self) -> dict[str, Any]:
        return {
            "cell": self.cell,
            "position": self.position,
            "op": self.here.op,
            "device": self.here.device,
            "file": self.here.file,
            "line": self.here.line,
            "code": self.here.code,
            "same_inputs": self.same_inputs,
            "kind": self.kind,
            "cause": self.cause,
        }


def first_divergence(here: list[CellTrace], there: list[CellTrace]) -> Divergence | None:
    """Walk both traces cell by cell (cells present in both, in `here`'s order) and return the first difference."""
    theirs = {trace.cell: trace for trace in there}
    for mine in here:
        other = theirs.get(mine.cell)
        if other is None:
            continue
        for position, (a, b) in enumerate(zip(mine.ops, other.ops), 1):
            if a.op != b.op:
                return Divergence(mine.cell, position, a, b, a.inputs == b.inputs, "sequence")
            if a.outputs != b.outputs:
                return Divergence(mine.cell, position, a, b, a.inputs == b.inputs, "output")
    return None


def tie_to_environment(divergence: Divergence, kinds: list[str], values: dict[str, tuple[Any, Any]]) -> Divergence:
    """Name the environment difference that explains the op (see env.explain kinds), else the kernel itself."""
    from dataclasses import replace

    device = divergence.here.device
    op = divergence.here.op
    matmul_like = any(word in op for word in ("mm", "conv", "linear", "addmm", "bmm", "matmul", "baddbmm"))
    reduction_like = any(word in op for word in ("sum", "mean", "norm", "var", "std", "softmax", "mm", "conv"))
    checks: list[tuple[bool, str]] = [
        ("seed" in kinds, "the seeds differ"),
        (device == "cpu" and "cpu_capability" in kinds, _cause("CPU capability", values.get("cpu_capability"))),
        (device == "cpu" and "cpu_isa" in kinds, _cause("oneDNN / MKL instruction set", values.get("cpu_isa"))),
        (device != "cpu" and matmul_like and "tf32" in kinds, _cause("TF32 / fp32 precision", values.get("tf32"))),
        (device != "cpu" and "gpu" in kinds, _cause("GPU", values.get("gpu"))),
        (device != "cpu" and "cuda_libraries" in kinds, _cause("cuDNN / cuBLAS version", values.get("cuda_libraries"))),
        (reduction_like and "threads" in kinds, _cause("thread count", values.get("threads"))),
        ("torch" in kinds, _cause("torch version", values.get("torch"))),
        (device == "cpu" and "tf32" in kinds and matmul_like, _cause("fp32 precision", values.get("tf32"))),
    ]
    for applies, cause in checks:
        if applies:
            return replace(divergence, cause=f"explained by the {cause}" if "seeds" not in cause else cause)
    if divergence.kind == "output" and divergence.same_inputs:
        return replace(
            divergence,
            cause=f"no environment difference explains it: {op} is nondeterministic on {device} "
            "(use `torch.use_deterministic_algorithms(True)`, which `%repro on` sets)",
        )
    return divergence


def _cause(name: str, pair: tuple[Any, Any] | None) -> str:
    if pair is None:
        return name
    return f"{name} ({pair[0]} here, {pair[1]} there)"


def traces_from(data: Any) -> Iterator[CellTrace]:
    for item in data or []:
        yield CellTrace.from_dict(item)
