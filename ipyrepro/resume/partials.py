"""The partial files of a checkpoint's atomic save: named after their writer, locked while written, and
removed by a later save or load of the same checkpoint once their writer is gone.

A save writes `.run.pt.<random>.<pid>.partial` beside `run.pt` and renames it over the target; a process
killed mid-save (SIGKILL, an out-of-memory kill, a dead machine) leaves that hidden file behind. Its writer
holds an exclusive `flock` on it while writing, and its process id is in its name: a partial is removed only
when its lock can be taken *and* no process with that id is alive, so another live writer's file is never
touched (not in the instant between its creation and its lock, not from another machine on a shared folder).
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path
from typing import IO, Any

try:
    import fcntl
except ImportError:  # Windows: the process id alone decides
    fcntl = None  # type: ignore[assignment]

SUFFIX = ".partial"


def partial_suffix() -> str:
    """The suffix of this process's partial files: `.<pid>.partial`."""
    return f".{os.getpid()}{SUFFIX}"


def lock(stream: IO[Any]) -> None:
    """Hold an exclusive lock on the partial file being written, until it is closed."""
    if fcntl is not None:
        with contextlib.suppress(OSError):  # a file system without locks: the process id still protects it
            fcntl.flock(stream.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # it exists, as another user's process
    return True


def _unlocked(path: Path) -> bool:
    """True when nobody holds the file's lock (and it could be opened)."""
    if fcntl is None:
        return True
    try:
        descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return False
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    finally:
        os.close(descriptor)  # closing releases the lock taken
    return True


def remove_abandoned(target: str | os.PathLike[str]) -> list[Path]:
    """Remove the partial files of `target` whose writer is gone; returns those removed. Never raises."""
    target = Path(target)
    pattern = re.compile(rf"^\.{re.escape(target.name)}\.[^.]+\.(\d+){re.escape(SUFFIX)}$")
    removed = []
    try:
        names = os.listdir(target.parent)
    except OSError:
        return removed
    for name in names:
        match = pattern.match(name)
        if match is None or _alive(int(match.group(1))):
            continue
        path = target.parent / name
        if _unlocked(path):
            with contextlib.suppress(OSError):
                path.unlink()
                removed.append(path)
    return removed
