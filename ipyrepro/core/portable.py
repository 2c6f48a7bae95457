"""The portable profile: settings under which two machines of one architecture compute the same bits.

Most of what moves CPU numbers between machines is read once, when the process
starts (the ISA ATen dispatches to, oneDNN's and MKL's instruction sets, OpenMP's
thread count), so the profile has two halves: variables a kernelspec or
`ipyrepro check` puts in the kernel's environment before it starts, and settings
applied in a running process (intra-op threads, TF32 off, fp32 precision IEEE).
`%repro on --portable` applies the second half and says which of the first is
missing, so the user knows to restart with `ipyrepro kernel install --portable`.
"""

from __future__ import annotations

import os
import platform
import sys
from typing import Any

from .records import Record

PORTABLE_THREADS = 4  # the same everywhere: the chunking of parallel reductions follows the thread count

# x86-64: AVX2 is what every x86-64 CPU since 2013-2015 (Haswell, Zen) has; AVX-512 machines would otherwise
# run other kernels (softmax, conv2d, gelu differ bitwise, measured with torch 2.13).
X86_START_VARIABLES = {
    "ATEN_CPU_CAPABILITY": "avx2",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "MKL_ENABLE_INSTRUCTIONS": "AVX2",
    "MKL_CBWR": "AVX2",
}
# arm64: no MKL; ATen has NEON (DEFAULT) and, on SVE CPUs (Graviton3, Grace), SVE256 kernels. DEFAULT is common to all.
ARM_START_VARIABLES = {"ATEN_CPU_CAPABILITY": "default"}
THREAD_START_VARIABLES = {"OMP_NUM_THREADS": str(PORTABLE_THREADS), "MKL_NUM_THREADS": str(PORTABLE_THREADS)}


# fp32 precision switches of every backend this torch may have (torch >= 2.9); each is set only when present.
FP32_PRECISION_PATHS = (
    "fp32_precision",
    "cuda.matmul.fp32_precision",
    "cudnn.fp32_precision",
    "cudnn.conv.fp32_precision",
    "cudnn.rnn.fp32_precision",
    "mkldnn.fp32_precision",
    "mkldnn.matmul.fp32_precision",
    "mkldnn.conv.fp32_precision",
    "mkldnn.rnn.fp32_precision",
)

# What the docs and `%repro on --portable` say about arm64.
ARM_NOTE = (
    "on arm64 the profile pins ATen to its DEFAULT (NEON) kernels, so SVE machines (Graviton3, Grace) and NEON "
    "ones agree; there is no MKL or oneDNN ISA to pin. Results still differ between arm64 and x86-64"
)


def architecture(machine: str | None = None) -> str:
    """'x86' or 'arm' (or 'other'), from platform.machine()."""
    machine = (machine or platform.machine()).lower()
    if machine in ("x86_64", "amd64", "i686", "i386", "x86"):
        return "x86"
    if machine in ("aarch64", "arm64") or machine.startswith("arm"):
        return "arm"
    return "other"


def start_variables(machine: str | None = None) -> dict[str, str]:
    """The variables that must be in a process's environment before it starts (kernelspec, check)."""
    arch = architecture(machine)
    pinned = X86_START_VARIABLES if arch == "x86" else ARM_START_VARIABLES if arch == "arm" else {}
    return {**pinned, **THREAD_START_VARIABLES}


class PortableReport(Record):
    """What `apply_runtime` did, and the start-only variables this process lacks (restart to get them)."""

    applied: list[str]
    missing: dict[str, tuple[str | None, str]]  # variable -> (value now, value wanted)
    capability: str | None

    @property
    def in_force(self) -> bool:
        return not self.missing

    def text(self) -> str:
        lines = [f"Portable profile: {', '.join(self.applied)}."]
        if self.missing:
            shown = ", ".join(
                f"{name}={wanted} (now {'unset' if now is None else now})"
                for name, (now, wanted) in self.missing.items()
            )
            lines.append(
                f"Not in force until the kernel restarts: {shown}. These are read only when the process starts; "
                "run `ipyrepro kernel install --portable` and pick that kernel (or `ipyrepro check --portable`)."
            )
        if architecture() == "arm":
            lines.append(f"Note: {ARM_NOTE}.")
        return "\n".join(lines)


def missing_start_variables(environ: dict[str, str] | None = None) -> dict[str, tuple[str | None, str]]:
    """Start-only variables of the profile this process was not started with: name -> (now, wanted)."""
    environ = dict(os.environ) if environ is None else environ
    missing = {}
    for name, wanted in start_variables().items():
        now = environ.get(name)
        if (now or "").lower() != wanted.lower():
            missing[name] = (now, wanted)
    return missing


def apply_runtime(threads: int = PORTABLE_THREADS) -> PortableReport:
    """Set what a running process can still change: intra-op threads, TF32 off, IEEE fp32 on every backend."""
    import torch

    applied = [f"{threads} intra-op threads"]
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(threads)
        applied.append(f"{threads} inter-op threads")
    except RuntimeError:  # only before the first inter-op parallel work; the kernelspec sets it at start
        pass
    for path in FP32_PRECISION_PATHS:
        owner, name = _owner(torch.backends, path)
        if owner is not None and isinstance(getattr(owner, name, None), str):
            setattr(owner, name, "ieee")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    applied.append("TF32 off and fp32 precision IEEE on every backend")
    return PortableReport(applied, missing_start_variables(), capability())


def in_force() -> bool:
    """True when this process runs under the whole profile: start variables, threads, and IEEE fp32."""
    return not missing_start_variables() and runtime_in_force()


def runtime_in_force() -> bool:
    """Whether threads, TF32 and fp32 precision are the profile's; False before torch is imported (never imports it)."""
    torch = sys.modules.get("torch")
    if torch is None:
        return False
    if torch.get_num_threads() != PORTABLE_THREADS:
        return False
    if torch.backends.cuda.matmul.allow_tf32 or torch.backends.cudnn.allow_tf32:
        return False
    return torch.get_float32_matmul_precision() == "highest"


def describe(applied: bool) -> tuple[str, list[str]]:
    """("in force" | "partly" | "off", what is missing), for status, the panel and the environment report.

    `applied`: whether this process applied the run-time half (`%repro on --portable`)."""
    missing = missing_start_variables()
    live = runtime_in_force()
    if not missing and live:
        return "in force", []
    gaps = [f"{name}={wanted} (now {'unset' if now is None else now})" for name, (now, wanted) in missing.items()]
    if not live:
        gaps.append("threads / TF32 / fp32 precision (run `%repro on --portable`)")
    if applied or len(missing) < len(start_variables()):
        return "partly", gaps
    return "off", gaps


def capability() -> str | None:
    """The ISA torch dispatches CPU kernels to; None before torch is imported (reading it never imports torch)."""
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    try:
        return str(torch.backends.cpu.get_cpu_capability())
    except (AttributeError, RuntimeError):
        return None


def _owner(root: Any, path: str) -> tuple[Any, str]:
    *parents, name = path.split(".")
    obj = root
    for part in parents:
        obj = getattr(obj, part, None)
        if obj is None:
            return None, name
    return obj, name
