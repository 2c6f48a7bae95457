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
from typing import Any

import torch
import xxhash
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from .opcompare import CellTrace, OpRecord

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


# -- recording ---------------------------------------------------------------------


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
