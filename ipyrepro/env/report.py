"""The environment report: everything that decides whether a result reproduces on another machine.

Versions, CUDA and GPU, CPU and threads, precision and determinism flags, and
the environment variables that only work at process start. Reading it never
initialises CUDA: GPU facts come from NVML until the process has a CUDA context.
"""

from __future__ import annotations

import html
import json
import os
import platform
from dataclasses import dataclass, field
from importlib import metadata
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..core.flags import Flags
from ..core.rendering import TextReport
from ..core.torchinfo import cuda_available, cuda_initialized, cudnn_version, gpu_names, precision_flags, torch_version
from . import nvml
from .numerics import cpu_model

if TYPE_CHECKING:
    from ..core.state import ReproState

ENV_VARS = ("CUBLAS_WORKSPACE_CONFIG", "CUDA_LAUNCH_BLOCKING", "PYTHONHASHSEED", "CUDA_VISIBLE_DEVICES")
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_CBWR")
SECTION_TITLES = {
    "versions": "Versions",
    "cuda": "CUDA",
    "gpu": "GPU",
    "cpu": "CPU and threads",
    "precision": "Precision (TF32 / fp32)",
    "determinism": "Determinism",
    "environment": "Environment variables",
}


@dataclass(repr=False)
class EnvReport(TextReport):
    """One reading of the environment, by section; renders as text, HTML, JSON and Markdown."""

    sections: dict[str, dict[str, Any]]
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {**self.sections, "notes": list(self.notes)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, allow_nan=False)

    def rows(self) -> list[tuple[str, list[tuple[str, str]]]]:
        """(section title, [(setting, shown value)]): the table every rendering shows."""
        return [
            (SECTION_TITLES[name], [(key, _show(name, value)) for key, value in values.items()])
            for name, values in self.sections.items()
        ]

    def __str__(self) -> str:
        width = max(len(key) for _, entries in self.rows() for key, _ in entries)
        lines = ["Environment report (ipyrepro)"]
        for title, entries in self.rows():
            lines.append(f"{title}:")
            lines += [f"  {key:<{width}}  {value}" for key, value in entries]
        lines += [f"Note: {text}" for text in self.notes]
        return "\n".join(lines)

    def to_markdown(self) -> str:
        """A table to paste into a paper's appendix or a bug report."""
        lines = ["| Setting | Value |", "| --- | --- |"]
        for title, entries in self.rows():
            lines.append(f"| **{_md(title)}** | |")
            lines += [f"| {_md(key)} | `{_md(value)}` |" for key, value in entries]
        lines += ["", *(f"- {_md(text)}" for text in self.notes)]
        return "\n".join(lines).rstrip() + "\n"

    def _repr_html_(self) -> str:
        body = []
        for title, entries in self.rows():
            body.append(f"<tr><th colspan='2' style='text-align:left'>{html.escape(title)}</th></tr>")
            body += [
                f"<tr><td style='text-align:left'>{html.escape(key)}</td>"
                f"<td style='text-align:left'><code>{html.escape(value)}</code></td></tr>"
                for key, value in entries
            ]
        notes = "".join(
            f"<div style='border-left:4px solid #5bc0de;padding:2px 8px;margin:4px 0'><b>Note:</b> "
            f"{html.escape(text)}</div>"
            for text in self.notes
        )
        return f"<div class='ipyrepro-env'><b>Environment report</b><table>{''.join(body)}</table>{notes}</div>"


def collect(state: ReproState | None = None, *, nvml_library: str = nvml.DEFAULT_LIBRARY) -> EnvReport:
    """Read the environment now; `state` adds what ipyrepro has in force (seed, re-seed mode)."""
    notes: list[str] = []
    sections = {
        "versions": _versions(),
        "cuda": _cuda(notes),
        "gpu": _gpu(notes, nvml_library),
        "cpu": _cpu(),
        "precision": precision_flags(),
        "determinism": _determinism(state),
        "environment": {name: os.environ.get(name) for name in ENV_VARS},
    }
    if sections["environment"]["PYTHONHASHSEED"] is None:
        notes.append(
            "PYTHONHASHSEED is unset, so the order of sets of strings differs between processes; "
            "`ipyrepro kernel install` makes a kernel that sets it at start."
        )
    return EnvReport(sections, notes)


def _package_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _versions() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "os": platform.platform(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "ipython": _package_version("ipython"),
        "ipykernel": _package_version("ipykernel"),
        "ipyrepro": _package_version("ipyrepro"),
    }


def _cuda(notes: list[str]) -> dict[str, Any]:
    cudnn = cudnn_version()
    if cudnn is None and torch.backends.cudnn.is_available():
        notes.append(
            f"The cuDNN version is not read before CUDA is initialised: on torch "
            f"{'.'.join(map(str, torch_version()))} reading it would initialise CUDA. It shows once CUDA is in use."
        )
    return {
        "torch_cuda": torch.version.cuda,
        "torch_hip": torch.version.hip,
        "cudnn": cudnn,
        "cuda_available": cuda_available(),
        "cuda_initialized": cuda_initialized(),
    }


def _gpu(notes: list[str], nvml_library: str) -> dict[str, Any]:
    """Names, count, driver: from torch once CUDA is initialised (what this process uses), else NVML."""
    info = nvml.read(nvml_library)
    driver = info.driver if info else None
    cuda_driver = info.cuda_driver if info else None
    names = gpu_names()
    if names is not None:
        capability = [".".join(map(str, torch.cuda.get_device_capability(i))) for i in range(len(names))]
        return {
            "source": "torch",
            "count": len(names),
            "names": names,
            "capability": capability,
            "driver": driver,
            "cuda_driver": cuda_driver,
        }
    if info is None:
        if cuda_available():
            notes.append(
                "NVML (the driver's libnvidia-ml) could not be loaded, so GPU names and the driver version "
                "are unknown until CUDA is initialised in this process."
            )
        count = None if cuda_available() else 0
        return {"source": None, "count": count, "names": None, "driver": None, "cuda_driver": None}
    if os.environ.get("CUDA_VISIBLE_DEVICES") is not None:
        notes.append(
            "GPUs are listed from NVML, which shows every GPU on the machine; CUDA_VISIBLE_DEVICES limits "
            "which ones torch will use."
        )
    return {
        "source": "nvml",
        "count": len(info.names),
        "names": info.names,
        "driver": driver,
        "cuda_driver": cuda_driver,
    }


def _cpu() -> dict[str, Any]:
    try:
        usable: int | None = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = None
    return {
        "model": cpu_model(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": usable,
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        **{name: os.environ.get(name) for name in THREAD_VARS},
    }


def _determinism(state: ReproState | None) -> dict[str, Any]:
    flags = Flags.read()
    values: dict[str, Any] = {}
    if state is not None:
        values.update(ipyrepro="on" if state.enabled else "off", seed=state.seed, reseed=state.reseed)
    from ..core.portable import describe

    values["portable_profile"] = describe(bool(state is not None and state.portable))[0]
    values.update(
        cudnn_benchmark=flags.cudnn_benchmark,
        cudnn_deterministic=flags.cudnn_deterministic,
        deterministic_algorithms=flags.deterministic_algorithms,
    )
    try:
        import torch.utils.deterministic as deterministic

        values["fill_uninitialized_memory"] = bool(deterministic.fill_uninitialized_memory)
    except (ImportError, AttributeError):
        pass
    return values


_MISSING = {
    "environment": "unset",
    "cpu": "unset",
    "cuda": "none",
    "determinism": "not set",
}


def _show(section: str, value: Any) -> str:
    if value is None:
        return _MISSING.get(section, "unknown")
    if isinstance(value, list):
        return ", ".join(map(str, value)) if value else "none"
    return str(value)


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("`", "'")
