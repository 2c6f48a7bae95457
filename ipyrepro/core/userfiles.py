"""Files named by the user (`%%repro --save/--check`, `ipyrepro check NOTEBOOK`): read and write them safely.

One place decides what a usable path is, so every face words the same mistake
the same way: only regular files are read (a FIFO, `/dev/zero` or a folder
would hang, exhaust memory or crash), every read is bounded, and every OS error
about the path (through a file, too long, a symlink loop, `~nosuchuser`)
becomes a `PathProblem` that names the path and the problem.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any

_WHY = {
    errno.ENOENT: "it does not exist",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.ENAMETOOLONG: "the name is too long for the file system",
    errno.ELOOP: "it is a symlink loop (or has too many levels of symlinks)",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.EISDIR: "it is a folder",
}


class PathProblem(ValueError):
    """A path that cannot be used as asked; the message names the path and what is wrong with it."""


def describe(error: OSError) -> str:
    """The OS error in the words a user needs: what is wrong, without a traceback."""
    return _WHY.get(error.errno or 0) or (error.strerror or str(error))


def expand(path: str | os.PathLike[str], what: str) -> Path:
    """`~` and `~user` expanded; an unknown user or a NUL byte is a PathProblem, not a traceback."""
    text = os.fspath(path)
    if not isinstance(text, str):
        raise PathProblem(f"{what} {text!r}: give the path as text")
    if not text:
        raise PathProblem(f"{what}: the path is empty (an unset variable?); give a file name")
    if "\0" in text:
        raise PathProblem(f"{what} {text!r}: the path contains a NUL character")
    if text.startswith("~"):
        expanded = os.path.expanduser(text)
        if expanded.startswith("~"):
            user = text[1:].split(os.sep, 1)[0]
            raise PathProblem(f"{what} {text!r}: there is no user {user!r} to expand ~{user} for")
        text = expanded
    return Path(text)


def is_missing(path: Path) -> bool:
    """True only when nothing is at `path` (ENOENT); other path errors are left for the read to name."""
    try:
        os.lstat(path)
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return False


def read_regular_file(path: str | os.PathLike[str], limit: int, what: str = "file") -> bytes:
    """The bytes of a regular file (after resolving symlinks), at most `limit` of them.

    The file is opened non-blocking and checked again after opening, so a FIFO or
    device swapped in between the check and the open is refused, not read.
    """
    source = expand(path, what)
    where = f"{what} {str(source)!r}"
    try:
        mode = source.stat().st_mode  # follows symlinks: the file they lead to counts
    except OSError as error:
        raise PathProblem(f"{where}: {describe(error)}") from None
    _require_regular(mode, where)
    try:
        descriptor = os.open(source, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    except OSError as error:
        raise PathProblem(f"{where}: cannot open it ({describe(error)})") from None
    with os.fdopen(descriptor, "rb") as stream:
        _require_regular(os.fstat(descriptor).st_mode, where)
        try:
            data = stream.read(limit + 1)
        except OSError as error:
            raise PathProblem(f"{where}: cannot read it ({describe(error)})") from None
    if len(data) > limit:
        raise PathProblem(f"{where} has more than the {limit:,} allowed bytes")
    return data


def validate_source(path: str | os.PathLike[str], what: str = "file") -> Path:
    """Fail now, before any work or heavy import, when `path` exists but is not a regular file (a FIFO would
    block the read, `/dev/zero` never end) or cannot be reached; a missing file is left to the reader, which
    says how to make one. Only `stat`: nothing is opened."""
    source = expand(path, what)
    where = f"{what} {str(source)!r}"
    try:
        mode = source.stat().st_mode
    except FileNotFoundError:
        return source
    except OSError as error:
        raise PathProblem(f"{where}: {describe(error)}") from None
    _require_regular(mode, where)
    return source


def _require_regular(mode: int, where: str) -> None:
    if not stat.S_ISREG(mode):
        raise PathProblem(f"{where} is {_kind(mode)}; give a regular file")


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def temporary_prefix(target: Path) -> str:
    """The prefix of the temporary file an atomic write creates next to `target`."""
    return f".{target.name}."


TEMPORARY_SUFFIX = ".tmp"


@contextlib.contextmanager
def replacing(
    target: Path,
    *,
    binary: bool = False,
    durable: bool = False,
    shared: bool = False,
    keep_mode: bool = False,
    suffix: str = TEMPORARY_SUFFIX,
) -> Iterator[IO[Any]]:
    """A file whose content replaces `target` at once when the block ends, or is removed if it raises.

    Written as a temporary file in the same folder, then renamed over `target`, so a reader (another
    kernel, a later run) sees the old file or the new one, never half of one. `durable`: the file
    fsynced before the rename and the folder after it, for a file that must survive a crash (a
    checkpoint). `shared`: the usual permissions (0666 less the umask) instead of the temporary
    file's private 0600. `keep_mode`: an existing target's permissions stay its own; a new one gets the
    usual ones, as with `shared`.
    """
    folder = target.parent  # Path("name").parent is Path(".")
    handle, temporary = tempfile.mkstemp(prefix=temporary_prefix(target), suffix=suffix, dir=folder)
    try:
        with os.fdopen(handle, "wb" if binary else "w", encoding=None if binary else "utf-8") as stream:
            yield stream
            if durable:
                stream.flush()
                os.fsync(stream.fileno())
        kept = _mode_of(target) if keep_mode else None
        if kept is not None:
            os.chmod(temporary, kept)
        elif shared or keep_mode:
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(temporary, 0o666 & ~umask)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    if durable:
        with contextlib.suppress(OSError):  # the rename itself (not every file system can fsync a folder)
            directory = os.open(folder, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)


def _mode_of(target: Path) -> int | None:
    """The permission bits of an existing regular file at `target`; None when there is none."""
    try:
        mode = target.stat().st_mode
    except OSError:
        return None
    return stat.S_IMODE(mode) if stat.S_ISREG(mode) else None


def validate_target(path: str | os.PathLike[str], what: str = "file") -> Path:
    """Fail now, before any work, when `path` could not be written atomically later.

    Checks the target (absent or a regular file), its folder (exists, writable) and
    that the temporary file of the atomic write can be created there: it is created
    and removed, so a name too long for the file system fails here, not after the runs.
    """
    target = expand(path, what)
    where = f"cannot save to {str(target)!r}"
    try:
        mode = target.stat().st_mode
    except FileNotFoundError:
        mode = None
    except OSError as error:
        raise PathProblem(f"{where}: {describe(error)}") from None
    if mode is not None and stat.S_ISDIR(mode):
        raise PathProblem(f"{where}: it is a folder; give a file name")
    if mode is not None and not stat.S_ISREG(mode):
        raise PathProblem(f"{where}: it is {_kind(mode)}, not a regular file")
    folder = target.parent
    try:
        folder_mode = folder.stat().st_mode
    except FileNotFoundError:
        raise PathProblem(f"{where}: the folder {str(folder)!r} does not exist") from None
    except OSError as error:
        raise PathProblem(f"{where}: the folder {str(folder)!r}: {describe(error)}") from None
    if not stat.S_ISDIR(folder_mode):
        raise PathProblem(f"{where}: {str(folder)!r} is not a folder")
    try:
        handle, temporary = tempfile.mkstemp(prefix=temporary_prefix(target), suffix=TEMPORARY_SUFFIX, dir=folder)
    except OSError as error:
        if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise PathProblem(f"{where}: the folder {str(folder)!r} is not writable") from None
        raise PathProblem(f"{where}: cannot create a file there ({describe(error)})") from None
    os.close(handle)
    os.unlink(temporary)
    return target


def same_file(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    """Whether two paths name one file: equal after resolving symlinks, or one inode (a hard link)."""
    try:
        if os.path.realpath(a) == os.path.realpath(b):
            return True
        return os.path.exists(a) and os.path.exists(b) and os.path.samefile(a, b)
    except (OSError, ValueError):
        return False


def validate_outputs(
    outputs: Mapping[str, str | os.PathLike[str] | None], inputs: Mapping[str, str | os.PathLike[str] | None]
) -> dict[str, Path]:
    """Check every file a command will write and read before any work: `option -> path` (None: not given).

    An empty path is an error (an unset `$BASELINE` in CI must fail loudly, not be ignored); an output
    that is an input (the notebook, the `--against` file), after resolving links, or another output,
    is refused, so nothing the user owns is overwritten; each output must be writable atomically.
    Returns the outputs given, expanded.
    """
    given_inputs: dict[str, Path] = {}
    for option, path in inputs.items():
        if path is not None:
            given_inputs[option] = expand(path, option)
    targets: dict[str, Path] = {}
    for option, path in outputs.items():
        if path is None:
            continue
        target = expand(path, option)
        for other, source in [*given_inputs.items(), *targets.items()]:
            if same_file(target, source):
                raise PathProblem(
                    f"{option} {str(target)!r} is {_naming(other, source)} (after resolving links): writing it "
                    "would overwrite it; give another file"
                )
        try:
            targets[option] = validate_target(target, option)
        except PathProblem as error:
            raise PathProblem(f"{option}: {error}") from None
    return targets


def _naming(option: str, path: Path) -> str:
    return option if option.startswith("the ") else f"the {option} file {str(path)!r}"
