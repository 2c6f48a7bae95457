"""A Jupyter kernel that is reproducible from its first line.

Some settings only work at process start: PYTHONHASHSEED, and
CUBLAS_WORKSPACE_CONFIG before the first cuBLAS call. The kernelspec written
here sets them in the kernel's environment and starts IPython with the
extension loaded and `%repro on --seed N` applied, so no cell runs uncovered.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import stat
import sys
import tempfile
from pathlib import Path
from typing import Any

from ..core.userfiles import PathProblem, describe, expand, read_regular_file
from ..core.validation import RESEED_VAR, SEED_VAR, validate_cublas_value, validate_reseed_mode, validate_seed

DEFAULT_NAME = "ipyrepro"
_NAME = re.compile(r"^[a-z0-9._-]+$", re.IGNORECASE)  # what jupyter_client accepts as a kernel name
_PROTECTED = ("python3",)  # replacing it would change every notebook's default kernel


def startup_lines(seed: int, reseed: str | None = None, portable: bool = False) -> list[str]:
    """What the kernel runs before the first cell (and what `ipyrepro check` runs by default).

    It loads `ipyrepro.preload`, not `ipyrepro`, so that a notebook's own
    `%load_ext ipyrepro` prints nothing here, as in any other kernel.
    `reseed=None`: `%repro on`'s default (the mode in force if already on, else cell).
    """
    reseed_option = "" if reseed is None else f" --reseed {reseed}"
    portable_option = " --portable" if portable else ""
    return ["%load_ext ipyrepro.preload", f"%repro on --seed {seed}{reseed_option}{portable_option}"]


def startup_env(seed: int, cublas: str, reseed: str | None = None) -> dict[str, str]:
    """The variables that only take effect when set before the process (or cuBLAS) starts, and the
    kernel's own settings (IPYREPRO_SEED, IPYREPRO_RESEED), which a notebook's `%repro on` follows
    even after `%repro off` (see core/defaults.py)."""
    env = {"PYTHONHASHSEED": str(seed), "CUBLAS_WORKSPACE_CONFIG": cublas, SEED_VAR: str(seed)}
    if reseed is not None:
        env[RESEED_VAR] = reseed
    return env


def kernel_json(
    seed: int = 0,
    cublas: str = ":4096:8",
    display_name: str | None = None,
    reseed: str = "cell",
    portable: bool = False,
) -> dict[str, Any]:
    """The kernel.json of a reproducible kernel running this Python; `portable` adds the portable profile
    (its start-only variables in the environment, `%repro on --portable` before the first cell)."""
    from ..core import __version__
    from ..core.portable import start_variables

    seed = validate_seed(seed)
    cublas = _validate_cublas(cublas)
    reseed = validate_reseed_mode(reseed)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    if not isinstance(portable, bool):
        raise ValueError(f"portable must be True or False; got {portable!r}")
    lines = startup_lines(seed, None if reseed == "cell" else reseed, portable)
    argv += [f"--IPKernelApp.exec_lines={line}" for line in lines]
    mode = ("" if reseed == "cell" else f", re-seed {reseed}") + (", portable" if portable else "")
    return {
        "argv": argv,
        "display_name": display_name or f"Python 3 (ipyrepro, seed {seed}{mode})",
        "language": "python",
        "env": {**startup_env(seed, cublas, reseed), **(start_variables() if portable else {})},
        "interrupt_mode": "signal",
        "metadata": {
            "debugger": True,
            "ipyrepro": {
                "seed": seed,
                "cublas": cublas,
                "reseed": reseed,
                "portable": portable,
                "version": __version__,
            },
        },
    }


def kernels_dir(*, user: bool = False, prefix: str | os.PathLike[str] | None = None) -> Path:
    """Where kernelspecs go: the user's Jupyter data dir (the default), PREFIX/share/jupyter/kernels."""
    if prefix is not None and not user:
        return _validate_prefix(prefix) / "share" / "jupyter" / "kernels"
    from jupyter_core.paths import jupyter_data_dir

    return Path(jupyter_data_dir()) / "kernels"


def install(
    name: str = DEFAULT_NAME,
    *,
    display_name: str | None = None,
    seed: int = 0,
    cublas: str = ":4096:8",
    reseed: str = "cell",
    user: bool = False,
    prefix: str | os.PathLike[str] | None = None,
    force: bool = False,
    portable: bool = False,
) -> Path:
    """Write the kernelspec and return its folder; an existing one is replaced only with `force`."""
    if user and prefix is not None:
        raise ValueError("choose --user or --prefix DIR, not both")
    _validate_name(name, force)
    spec = kernel_json(seed, cublas, display_name, reseed, portable)  # validates all before anything is written
    destination = kernels_dir(user=user, prefix=prefix) / name.lower()  # the folder name Jupyter uses
    if destination.exists() and not force:
        raise FileExistsError(
            f"a kernelspec named {name!r} already exists in {destination}; pass --force to replace it, "
            "or choose another --name"
        )
    # Written here rather than through jupyter_client's KernelSpecManager (the same copy into the
    # same folder), so that `ipyrepro kernel install` does not import jupyter_client and IPython.
    try:
        destination.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="ipyrepro-kernel-", dir=destination.parent) as folder:
            source = Path(folder) / name
            source.mkdir()
            (source / "kernel.json").write_text(json.dumps(spec, indent=1, allow_nan=False) + "\n", encoding="utf-8")
            _copy_logos(source)
            if destination.exists():
                shutil.rmtree(destination)
            source.rename(destination)
    except OSError as error:  # e.g. a folder on the way is a file, or not writable
        raise ValueError(f"cannot install into {str(destination.parent)!r}: {describe(error)}") from None
    compile_package()
    return destination


def compile_package() -> bool:
    """Write ipyrepro's bytecode now, so that no kernel compiles its sources (about 20 ms each start).

    pip compiles a wheel when it installs it, but an editable install is compiled by its first import,
    and not at all where PYTHONDONTWRITEBYTECODE is set (containers often set it): the kernel this
    kernelspec starts would then compile ipyrepro at every start. Files already up to date are left
    as they are; a folder that cannot be written is no error (False: some bytecode is missing).
    """
    import compileall

    package = Path(__file__).resolve().parent.parent
    return bool(compileall.compile_dir(package, quiet=2, workers=1))


def uninstall(name: str, *, prefix: str | os.PathLike[str] | None = None) -> Path:
    """Remove a kernelspec that `install` wrote; refuses any other (use `jupyter kernelspec remove`)."""
    _validate_name(name, force=True)  # the same names as install: never a path such as ../../victim
    folder = _find(name, prefix)
    try:  # bounded, regular files only: a kernel.json that is a FIFO or a device must not hang us
        spec = json.loads(read_regular_file(folder / "kernel.json", 1 << 20, "kernel.json").decode("utf-8"))
    except (OSError, ValueError, RecursionError):
        spec = {}
    if not isinstance(spec, dict):
        spec = {}
    if "ipyrepro" not in (spec.get("metadata") or {}):
        raise ValueError(
            f"the kernelspec {name!r} in {folder} was not installed by ipyrepro, so it is left alone; "
            f"remove it with `jupyter kernelspec remove {name}` if you mean to"
        )
    shutil.rmtree(folder)
    return folder


def _find(name: str, prefix: str | os.PathLike[str] | None) -> Path:
    name = name.lower()  # Jupyter lowercases kernel names
    if prefix is not None:
        folder = kernels_dir(prefix=prefix) / name
        if not folder.is_dir():
            raise LookupError(f"no kernelspec named {name!r} in {folder.parent}")
        return folder
    from jupyter_client.kernelspec import KernelSpecManager

    found = KernelSpecManager().find_kernel_specs()
    if name not in found:
        raise LookupError(
            f"no kernelspec named {name!r} on the Jupyter path (installed: {', '.join(sorted(found)) or 'none'}); "
            "for one installed with --prefix DIR, pass the same --prefix"
        )
    return Path(found[name])


def _validate_prefix(prefix: str | os.PathLike[str]) -> Path:
    """--prefix DIR: a folder (or a path that can become one); '' would mean the system-wide folder."""
    try:
        folder = expand(prefix, "--prefix")
    except PathProblem as error:
        raise ValueError(f"{error}; give the folder to install into, e.g. a virtualenv") from None
    try:
        mode = folder.stat().st_mode
    except FileNotFoundError:
        return folder.absolute()
    except OSError as error:
        raise ValueError(f"--prefix {str(folder)!r}: {describe(error)}") from None
    if not stat.S_ISDIR(mode):
        raise ValueError(f"--prefix {str(folder)!r} is not a folder; give the folder to install into")
    return folder.absolute()


def _validate_name(name: str, force: bool) -> None:
    if not isinstance(name, str) or not _NAME.fullmatch(name) or not name.strip("."):
        raise ValueError(f"invalid kernel name {name!r}: use letters, digits, '.', '_' and '-' only")
    if name.lower() in _PROTECTED and not force:
        raise ValueError(
            f"{name!r} is Jupyter's default kernel; replacing it changes every notebook's kernel. "
            "Choose another --name (or pass --force if you really mean it)"
        )


def _validate_cublas(cublas: str) -> str:
    if cublas is None:
        raise ValueError("CUBLAS_WORKSPACE_CONFIG must be :4096:8 or :16:8 for a reproducible kernel")
    return validate_cublas_value(cublas)


def _copy_logos(destination: Path) -> None:
    """Reuse ipykernel's Python logos so the launcher shows the familiar icon."""
    spec = importlib.util.find_spec("ipykernel")  # found, not imported: importing it imports IPython
    if spec is None or not spec.submodule_search_locations:
        return
    for logo in (Path(next(iter(spec.submodule_search_locations))) / "resources").glob("logo-*"):
        shutil.copy(logo, destination / logo.name)
