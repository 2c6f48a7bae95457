"""The numerics environment: every fact about a process that can change the bits a computation gives.

Software versions as loaded (torch, CUDA, cuDNN, cuBLAS), the GPU and its compute
capability, the CPU and the instruction set torch actually dispatches to, the BLAS
and oneDNN builds, the variables that pin or move CPU kernels, thread counts,
precision and determinism flags, and ipyrepro's seed. It is what a notebook
fingerprint records and what `ipyrepro explain` compares.

Reading it never initialises CUDA: GPU facts come from NVML, and cuDNN/cuBLAS
versions from the libraries already mapped into the process (never loaded here).
"""

from __future__ import annotations

import ctypes
import os
import platform
import re
from typing import TYPE_CHECKING, Any

import torch

from ..core.portable import capability  # what ATen's CPU kernels dispatch to: AVX512, AVX2, NEON...
from ..core.torchinfo import cuda_available, gpu_names, precision_flags
from . import nvml

if TYPE_CHECKING:
    from ..core.state import ReproState

SCHEMA = 1

# Variables that decide which CPU kernels run, or how BLAS rounds; most are read once, at process start.
CPU_KERNEL_VARS = (
    "ATEN_CPU_CAPABILITY",
    "ONEDNN_MAX_CPU_ISA",
    "DNNL_MAX_CPU_ISA",
    "MKL_CBWR",
    "MKL_ENABLE_INSTRUCTIONS",
    "OPENBLAS_CORETYPE",
)
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
GPU_VARS = (
    "CUBLAS_WORKSPACE_CONFIG",
    "NVIDIA_TF32_OVERRIDE",
    "TORCH_ALLOW_TF32_CUBLAS_OVERRIDE",
    "CUDA_LAUNCH_BLOCKING",
    "CUDA_VISIBLE_DEVICES",
)
OTHER_VARS = ("PYTHONHASHSEED",)


def numerics_environment(
    state: ReproState | None = None, *, nvml_library: str = nvml.DEFAULT_LIBRARY
) -> dict[str, Any]:
    """One JSON-ready reading, by section; `state` adds ipyrepro's seed, re-seed mode and portable profile."""
    return {
        "schema": SCHEMA,
        "software": software_versions(),
        "gpu": gpu_facts(nvml_library),
        "cpu": cpu_facts(),
        "threads": {"intra_op": torch.get_num_threads(), "inter_op": torch.get_num_interop_threads()},
        "variables": {name: os.environ.get(name) for name in (*CPU_KERNEL_VARS, *THREAD_VARS, *GPU_VARS, *OTHER_VARS)},
        "precision": precision_flags(),
        "determinism": determinism_flags(),
        "ipyrepro": _ipyrepro(state),
    }


def software_versions() -> dict[str, Any]:
    """Versions as loaded in this process; cuDNN and cuBLAS only when their library is already mapped."""
    import numpy as np

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "cuda": torch.version.cuda,
        "hip": torch.version.hip,
        "cudnn": loaded_cudnn_version(),
        "cublas": loaded_cublas_version(),
    }


def cpu_facts() -> dict[str, Any]:
    """The CPU, the ISA torch dispatches to (after ATEN_CPU_CAPABILITY), and the BLAS / oneDNN builds."""
    config = torch.__config__.show()
    return {
        "model": cpu_model(),
        "machine": platform.machine(),
        "capability": capability(),
        "blas": _config_line(config, r"BLAS_INFO=(\w+)") or None,
        "mkl": _config_line(config, r"(Intel\(R\) (?:oneAPI )?Math Kernel Library Version [^\n]*?)(?: for |\n)"),
        "onednn": _config_line(config, r"(?:MKL-DNN|oneDNN) (v[\d.]+)"),
        "openmp": _config_line(config, r"OpenMP (\d+)"),
    }


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as cpuinfo:
            for line in cpuinfo:
                if line.startswith(("model name", "Model", "Hardware")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def gpu_facts(nvml_library: str = nvml.DEFAULT_LIBRARY) -> dict[str, Any]:
    """Names, compute capabilities and driver: from torch once CUDA is initialised, else from NVML."""
    info = nvml.read(nvml_library)
    names = gpu_names()
    if names is not None:
        capability = [".".join(map(str, torch.cuda.get_device_capability(i))) for i in range(len(names))]
        source = "torch"
    elif info is not None:
        names, capability, source = info.names, _nvml_capabilities(nvml_library, len(info.names)), "nvml"
    else:
        names, capability, source = ([] if not cuda_available() else None), None, None
    return {
        "names": names,
        "capability": capability,
        "driver": info.driver if info else None,
        "cuda_driver": info.cuda_driver if info else None,
        "source": source,
    }


def determinism_flags() -> dict[str, Any]:
    from ..core.torchinfo import deterministic_algorithms_mode

    values: dict[str, Any] = {
        "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
        "cudnn_deterministic": bool(torch.backends.cudnn.deterministic),
        "deterministic_algorithms": deterministic_algorithms_mode(),
    }
    try:
        import torch.utils.deterministic as deterministic

        values["fill_uninitialized_memory"] = bool(deterministic.fill_uninitialized_memory)
    except (ImportError, AttributeError):
        pass
    return values


def _ipyrepro(state: ReproState | None) -> dict[str, Any]:
    if state is None:
        return {"enabled": None, "seed": None, "reseed": None, "portable": None}
    return {
        "enabled": bool(state.enabled),
        "seed": state.seed if state.enabled else None,
        "reseed": state.reseed if state.enabled else None,
        "portable": bool(getattr(state, "portable", False)),
    }


def _config_line(config: str, pattern: str) -> str | None:
    match = re.search(pattern, config)
    return match.group(1).strip() if match else None


# -- libraries already in the process ------------------------------------------------


def _mapped_library(stem: str) -> str | None:
    """The path of a shared library this process has already loaded (Linux), or None."""
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            for line in maps:
                path = line.rstrip("\n").split(maxsplit=5)[-1]
                if os.path.basename(path).startswith(f"{stem}.so"):
                    return path
    except OSError:
        pass
    return None


def loaded_cudnn_version() -> int | None:
    """cudnnGetVersion() of the cuDNN torch loaded; it creates no CUDA context. None when none is loaded."""
    path = _mapped_library("libcudnn")
    if path is None:
        return None
    try:
        library = ctypes.CDLL(path, mode=os.RTLD_NOLOAD if hasattr(os, "RTLD_NOLOAD") else 0)
        library.cudnnGetVersion.restype = ctypes.c_size_t
        return int(library.cudnnGetVersion())
    except (OSError, AttributeError):
        return None


def loaded_cublas_version() -> str | None:
    """cuBLAS's major.minor.patch through cublasGetProperty (no handle, no context), when it is loaded."""
    path = _mapped_library("libcublas")
    if path is None:
        return None
    try:
        library = ctypes.CDLL(path, mode=os.RTLD_NOLOAD if hasattr(os, "RTLD_NOLOAD") else 0)
        parts = []
        for property_type in (0, 1, 2):  # MAJOR_VERSION, MINOR_VERSION, PATCH_LEVEL
            value = ctypes.c_int()
            if library.cublasGetProperty(property_type, ctypes.byref(value)) != 0:
                return None
            parts.append(str(value.value))
        return ".".join(parts)
    except (OSError, AttributeError):
        return None


def _nvml_capabilities(library: str, count: int) -> list[str] | None:
    """Compute capabilities from NVML (nvmlDeviceGetCudaComputeCapability), without a CUDA context."""
    try:
        handle_library = ctypes.CDLL(library)
        if handle_library.nvmlInit_v2() != 0:
            return None
    except (OSError, AttributeError):
        return None
    try:
        found = []
        for index in range(count):
            handle = ctypes.c_void_p()
            major, minor = ctypes.c_int(), ctypes.c_int()
            if handle_library.nvmlDeviceGetHandleByIndex_v2(ctypes.c_uint(index), ctypes.byref(handle)) != 0:
                return None
            if handle_library.nvmlDeviceGetCudaComputeCapability(handle, ctypes.byref(major), ctypes.byref(minor)):
                return None
            found.append(f"{major.value}.{minor.value}")
        return found
    except AttributeError:
        return None
    finally:
        handle_library.nvmlShutdown()
