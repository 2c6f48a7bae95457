"""GPU facts read through NVML (the driver's management library), which never creates a CUDA context.

Loaded with ctypes, so there is no extra dependency; without a driver (a CPU
machine, a container without the GPU mounted) every read returns None.
"""

from __future__ import annotations

import contextlib
import ctypes
import sys
from dataclasses import dataclass

DEFAULT_LIBRARY = "nvml.dll" if sys.platform == "win32" else "libnvidia-ml.so.1"
_NAME_BUFFER = 96  # NVML_DEVICE_NAME_V2_BUFFER_SIZE
_VERSION_BUFFER = 80  # NVML_SYSTEM_DRIVER_VERSION_BUFFER_SIZE


@dataclass(frozen=True)
class NvmlInfo:
    """What NVML says about the machine; it lists every GPU, whatever CUDA_VISIBLE_DEVICES hides."""

    driver: str
    cuda_driver: str | None  # the newest CUDA version the driver supports, e.g. "12.4"
    names: list[str]


class NvmlError(RuntimeError):
    """An NVML call returned an error code."""


def read(library: str = DEFAULT_LIBRARY) -> NvmlInfo | None:
    """Driver version and GPU names, or None when NVML cannot be loaded or answers with an error."""
    try:
        nvml = ctypes.CDLL(library)
    except OSError:
        return None
    try:
        _call(nvml, "nvmlInit_v2")
    except (NvmlError, AttributeError):
        return None
    try:
        return _read(nvml)
    except (NvmlError, AttributeError):
        return None
    finally:
        with contextlib.suppress(NvmlError, AttributeError):
            _call(nvml, "nvmlShutdown")


def _read(nvml: ctypes.CDLL) -> NvmlInfo:
    version = ctypes.create_string_buffer(_VERSION_BUFFER)
    _call(nvml, "nvmlSystemGetDriverVersion", version, ctypes.c_uint(_VERSION_BUFFER))
    cuda_driver: str | None = None
    try:
        number = ctypes.c_int()
        _call(nvml, "nvmlSystemGetCudaDriverVersion_v2", ctypes.byref(number))
        cuda_driver = f"{number.value // 1000}.{number.value % 1000 // 10}"
    except (NvmlError, AttributeError):
        pass
    count = ctypes.c_uint()
    _call(nvml, "nvmlDeviceGetCount_v2", ctypes.byref(count))
    names = []
    for index in range(count.value):
        handle = ctypes.c_void_p()
        _call(nvml, "nvmlDeviceGetHandleByIndex_v2", ctypes.c_uint(index), ctypes.byref(handle))
        name = ctypes.create_string_buffer(_NAME_BUFFER)
        _call(nvml, "nvmlDeviceGetName", handle, name, ctypes.c_uint(_NAME_BUFFER))
        names.append(name.value.decode(errors="replace"))
    return NvmlInfo(driver=version.value.decode(errors="replace"), cuda_driver=cuda_driver, names=names)


def _call(nvml: ctypes.CDLL, function: str, *args: object) -> None:
    code = getattr(nvml, function)(*args)
    if code != 0:
        raise NvmlError(f"{function} returned NVML error {code}")
