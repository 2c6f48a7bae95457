"""The documented Python face of `ipyrepro kernel install`: `ipyrepro.kernelspec.install(...)` and `uninstall(name)`.

The kernelspec code lives in `ipyrepro.notebooks.kernelspec`; this module only keeps the documented import path.
"""

from __future__ import annotations

from .notebooks.kernelspec import install, kernel_json, kernels_dir, uninstall

__all__ = ["install", "kernel_json", "kernels_dir", "uninstall"]
