"""Which installed packages register seeders (`ipyrepro.seeders` entry points), found without reading them all.

The answer needs every package's entry_points.txt opened: 3 ms for 200 packages on a small
machine, the largest part of `%repro on` in a fresh kernel. It changes only when a package is
installed, upgraded or removed, which adds or removes a `*.dist-info` folder and so changes the
modification time of the sys.path folder that holds it. So each sys.path folder's answer is
cached, keyed by that time; a `*.egg-info` folder (which setuptools rewrites in place) is keyed
by its own times too. A changed folder without packages (a notebook's folder, first on a
kernel's path, changes with every save) is never cached: it costs one directory listing, and
writing it would rewrite the file for every kernel started from a new folder.

The cache is one JSON file per Python environment in `$IPYREPRO_CACHE_DIR`, else
`$XDG_CACHE_HOME/ipyrepro`, else `~/.cache/ipyrepro`; `IPYREPRO_CACHE_DIR=""` turns it off.
A cache that cannot be read or written is ignored: the answer is then scanned, as without it.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

GROUP = "ipyrepro.seeders"
CACHE_VAR = "IPYREPRO_CACHE_DIR"
CACHE_VERSION = 1
SETTLED_NS = 2_000_000_000  # see _settled

Scan = dict[str, Any]  # {"mtime": ns, "projects": [name, ...], "seeders": {project: dist folder}, "eggs": {...}}


def cache_path() -> str | None:
    """The cache file, or None when `IPYREPRO_CACHE_DIR` is set empty (no cache)."""
    folder = os.environ.get(CACHE_VAR)
    if folder is None:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        folder = os.path.join(base, "ipyrepro")
    if not folder:
        return None
    import hashlib

    environment = hashlib.blake2b(sys.prefix.encode("utf-8", "surrogatepass"), digest_size=8).hexdigest()
    return os.path.join(folder, f"seeder-plugins-{environment}.json")


def registering_distributions() -> list[str]:
    """The `*.dist-info`/`*.egg-info` folders that register seeders, in sys.path order.

    The same answer and order as scanning every package (`scan_folder` on each sys.path entry):
    a project found in an earlier folder hides its copies in later ones, as in importlib.metadata.
    """
    path = cache_path()
    cache = _read(path) if path else {}
    write = False
    found: list[str] = []
    seen: set[str] = set()
    for entry in sys.path:
        folder = entry or "."
        key = os.path.abspath(folder)
        try:
            mtime = os.stat(folder).st_mtime_ns
        except OSError:
            continue
        scan = cache.get(key)
        if scan is None or not _still_valid(scan, folder, mtime):
            fresh = scan_folder(folder, mtime)
            # A folder without packages (a notebook's folder, new to every kernel started from it) costs one
            # listing either way: it is never worth a write, which would also drop another kernel's folders.
            if _settled(fresh) and (fresh["projects"] or (scan is not None and scan["projects"])):
                write = True
                cache[key] = fresh
            scan = fresh
        for project in scan["projects"]:
            if project not in seen:
                seen.add(project)
                if project in scan["seeders"]:
                    found.append(os.path.join(folder, scan["seeders"][project]))
    if write and path:
        _write(path, {key: scan for key, scan in cache.items() if scan["projects"]})
    return found


def scan_folder(folder: str, mtime: int) -> Scan:
    """Every project in one sys.path folder (sorted by folder name, the first copy of each) and the
    ones whose entry points name the group."""
    try:
        names = sorted(entry.name for entry in os.scandir(folder))
    except OSError:
        names = []
    scan: Scan = {"mtime": mtime, "projects": [], "seeders": {}, "eggs": {}}
    for name in names:
        stem, _, suffix = name.rpartition(".")
        if suffix not in ("dist-info", "egg-info"):
            continue
        project = re.sub(r"[-_.]+", "_", stem.split("-")[0]).lower()
        if project in scan["seeders"] or project in scan["projects"]:
            continue
        scan["projects"].append(project)
        distribution = os.path.join(folder, name)
        if suffix == "egg-info":
            scan["eggs"][name] = _egg_times(distribution)
        try:
            with open(os.path.join(distribution, "entry_points.txt"), encoding="utf-8") as file:
                if GROUP in file.read():
                    scan["seeders"][project] = name
        except OSError:
            continue
    return scan


def _egg_times(distribution: str) -> list[int | None]:
    times: list[int | None] = []
    for path in (distribution, os.path.join(distribution, "entry_points.txt")):
        try:
            times.append(os.stat(path).st_mtime_ns)
        except OSError:
            times.append(None)
    return times


def _settled(scan: Scan) -> bool:
    """Whether the times a scan is keyed by are old enough to trust: a file system stamps times from a
    clock that ticks every few milliseconds, so a folder changed again within the tick of a scan
    would keep its time and hide the change (git's "racy" index entries). A scan of a folder changed
    in the last seconds is used but not kept."""
    now = time.time_ns()
    times = [scan["mtime"], *(stamp for stamps in scan["eggs"].values() for stamp in stamps if stamp is not None)]
    return all(now - stamp > SETTLED_NS for stamp in times)


def _still_valid(scan: Scan, folder: str, mtime: int) -> bool:
    try:
        if scan["mtime"] != mtime:
            return False
        return all(_egg_times(os.path.join(folder, name)) == times for name, times in scan["eggs"].items())
    except (KeyError, TypeError, AttributeError):
        return False


def _read(path: str) -> dict[str, Scan]:
    try:
        with open(path, encoding="utf-8") as file:
            document = json.load(file)
    except (OSError, ValueError):
        return {}
    if not isinstance(document, dict) or document.get("version") != CACHE_VERSION:
        return {}
    folders = document.get("folders")
    if not isinstance(folders, dict):
        return {}
    return {key: scan for key, scan in folders.items() if _well_formed(scan)}


_SCAN_TYPES = {"mtime": int, "projects": list, "seeders": dict, "eggs": dict}


def _well_formed(scan: Any) -> bool:
    return (
        isinstance(scan, dict)
        and all(isinstance(scan.get(name), kind) for name, kind in _SCAN_TYPES.items())
        and all(isinstance(project, str) for project in scan["projects"])
        and all(isinstance(name, str) for name in scan["seeders"].values())
        and all(isinstance(times, list) for times in scan["eggs"].values())
    )


def _write(path: str, cache: dict[str, Scan]) -> None:
    """Atomically, so a kernel starting alongside reads the old file or the new one; never raises."""
    from .userfiles import replacing

    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with replacing(Path(path)) as file:
            json.dump({"version": CACHE_VERSION, "folders": cache}, file)
    except OSError:
        pass
