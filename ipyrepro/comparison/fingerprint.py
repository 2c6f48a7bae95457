"""The JSON files `--save` writes and `--check` reads: a run's digests and the environment they were taken in.

The file is data only: it is read with `json` and validated field by field, never unpickled or evaluated.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import os
import platform
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..core import userfiles
from ..core.flags import Flags
from ..core.torchinfo import cuda_initialized, cudnn_version, gpu_names, precision_flags
from .digests import COUNT_KEYS, LEAF_KINDS, STAT_KEYS, STATS_SLACK
from .values import Tolerance

FORMAT = "ipyrepro.fingerprint"
VERSION = 1
MAX_FILE_BYTES = 64 << 20
_DIGEST = re.compile(r"xxh3_128:[0-9a-f]{32}")  # matched with fullmatch: no trailing newline


class FingerprintFileError(ValueError):
    """A saved file that cannot be used: missing, corrupt, truncated, from another version, or malformed."""


# -- environment -----------------------------------------------------------------


def environment(seed: int | None) -> dict[str, Any]:
    """What can change results between machines, read without initialising CUDA."""
    import sys

    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "byteorder": sys.byteorder,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "cuda": torch.version.cuda,
        "cudnn": cudnn_version(),
        "cuda_initialized": cuda_initialized(),
        "gpus": gpu_names(),
        "flags": Flags.read()._asdict(),
        "precision": precision_flags(),
        "seed": seed,
        "torch_threads": torch.get_num_threads(),
    }


def environment_differences(saved: dict[str, Any], now: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """(field, saved, now) for each environment field that differs; nested dicts by dotted name."""
    out: list[tuple[str, Any, Any]] = []
    for key in sorted(set(saved) | set(now)):
        old, new = saved.get(key), now.get(key)
        if isinstance(old, dict) and isinstance(new, dict):
            out.extend((f"{key}.{name}", a, b) for name, a, b in environment_differences(old, new))
        elif old != new and key != "cuda_initialized":
            out.append((key, old, new))
    return out


# -- files -----------------------------------------------------------------------


@dataclass
class Saved:
    """A validated saved file."""

    path: str
    seed: int | None
    runs: int
    values: dict[str, dict[str, Any]]
    environment: dict[str, Any]
    created: str = ""
    reproducible: bool | None = None


def save(
    path: str | os.PathLike,
    records: dict[str, dict[str, Any]],
    *,
    seed: int | None,
    runs: int,
    reproducible: bool,
) -> str:
    """Write atomically: a temporary file in the same folder, fsynced, then renamed over the target."""
    target = userfiles.validate_target(path, "fingerprint file")
    document = {
        "format": FORMAT,
        "version": VERSION,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "seed": seed,
        "runs": runs,
        "reproducible": reproducible,
        "environment": environment(seed),
        "values": records,
    }
    text = json.dumps(document, indent=1, sort_keys=False, allow_nan=False, default=str)
    with userfiles.replacing(target, durable=True) as stream:
        stream.write(text)
    return str(target)


def check_writable(path: str | os.PathLike) -> None:
    """Fail before anything runs when `--save` could not write its file (temporary name included)."""
    try:
        userfiles.validate_target(path, "fingerprint file")
    except userfiles.PathProblem as error:
        raise FingerprintFileError(str(error)) from None


def load(path: str | os.PathLike) -> Saved:
    """Read and validate a saved file; any problem is a FingerprintFileError that names it."""
    try:
        source = userfiles.expand(path, "fingerprint file")
    except userfiles.PathProblem as error:
        raise FingerprintFileError(str(error)) from None
    where = f"fingerprint file {str(source)!r}"
    if userfiles.is_missing(source):
        raise FingerprintFileError(f"{where} does not exist; write one first with `%%repro --save FILE`")
    try:
        raw = userfiles.read_regular_file(source, MAX_FILE_BYTES, "fingerprint file")
    except userfiles.PathProblem as error:
        raise FingerprintFileError(str(error)) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise FingerprintFileError(
            f"{where} is not UTF-8 text (byte {error.start}): not a file ipyrepro wrote"
        ) from None
    try:
        document = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constants)
    except json.JSONDecodeError as error:
        cut = error.pos >= len(text.rstrip()) or error.msg.startswith("Unterminated string")
        truncated = " (it looks truncated)" if cut and text.strip() else ""
        raise FingerprintFileError(
            f"{where} is not valid JSON{truncated}: {error.msg} at line {error.lineno} column {error.colno}"
        ) from None
    except (RecursionError, ValueError) as error:
        raise FingerprintFileError(f"{where} is malformed: {error}") from None
    return _validate(document, where, str(source))


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key!r}")
        result[key] = value
    return result


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not allowed (ipyrepro never writes it)")


def _validate(document: Any, where: str, path: str) -> Saved:
    def fail(problem: str) -> FingerprintFileError:
        return FingerprintFileError(f"{where}: {problem}")

    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise fail(f'not an ipyrepro fingerprint (no "format": "{FORMAT}")')
    version = document.get("version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise fail('missing or invalid "version"')
    if version > VERSION:
        raise fail(
            f"format version {version} was written by a newer ipyrepro; this one reads version {VERSION}. Upgrade."
        )
    if version < 1:
        raise fail(f"unknown format version {version}")
    seed = document.get("seed")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**32):
        raise fail(f"invalid seed {seed!r}")
    runs = document.get("runs")
    if not isinstance(runs, int) or isinstance(runs, bool) or runs < 1:
        raise fail(f"invalid runs {runs!r}")
    env = document.get("environment")
    if not isinstance(env, dict):
        raise fail('missing "environment" object')
    values = document.get("values")
    if not isinstance(values, dict):
        raise fail('missing "values" object')
    for name, record in values.items():
        _validate_record(name, record, fail)
    reproducible = document.get("reproducible")
    created = document.get("created", "")
    return Saved(
        path=path,
        seed=seed,
        runs=runs,
        values=values,
        environment=env,
        created=created if isinstance(created, str) else "",
        reproducible=reproducible if isinstance(reproducible, bool) else None,
    )


def _validate_record(name: str, record: Any, fail: Any) -> None:
    if not isinstance(record, dict):
        raise fail(f"value {name!r} is not an object")
    kind = record.get("kind")
    if kind not in LEAF_KINDS:
        raise fail(f"value {name!r} has unknown kind {kind!r}")
    if kind in ("unsupported", "unreadable"):
        if not isinstance(record.get("why", ""), str):
            raise fail(f'value {name!r}: "why" must be text')
        return
    if not isinstance(record.get("digest"), str) or not _DIGEST.fullmatch(record["digest"]):
        raise fail(f"value {name!r} has no valid digest (expected xxh3_128: and 32 hex digits)")
    if kind in ("tensor", "array"):
        shape = record.get("shape")
        if not isinstance(shape, list) or not all(
            isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape
        ):
            raise fail(f"value {name!r} has an invalid shape {shape!r}")
        if not isinstance(record.get("dtype"), str):
            raise fail(f"value {name!r} has no dtype")
        stats = record.get("stats")
        if stats is not None:
            if not isinstance(stats, dict):
                raise fail(f"value {name!r}: stats must be an object")
            for key in COUNT_KEYS:
                if not isinstance(stats.get(key), int) or isinstance(stats.get(key), bool) or stats[key] < 0:
                    raise fail(f"value {name!r}: stats.{key} must be a count")
            numbers = [stats.get(key) for key in STAT_KEYS]
            if any(item is not None for item in numbers):  # all None: no finite element to summarise
                for key, item in zip(STAT_KEYS, numbers):
                    if not _finite_number(item):
                        raise fail(f"value {name!r}: stats.{key} must be a finite number a float can hold")
    elif kind == "float":
        try:
            float.fromhex(_text(record.get("value")))
        except (TypeError, ValueError):
            raise fail(f"value {name!r}: float value must be float.hex() text") from None
        except OverflowError:
            raise fail(f"value {name!r}: float value {record['value'][:40]!r} is too large for a float") from None
    elif kind == "int":
        text = record.get("value")
        if not isinstance(text, str) or not re.fullmatch(r"-?\d{1,4000}", text):
            raise fail(f"value {name!r}: int value must be decimal text")
    elif kind == "bool" and not isinstance(record.get("value"), bool):
        raise fail(f"value {name!r}: bool value must be true or false")
    elif kind in ("str", "complex") and not isinstance(record.get("value", ""), str):
        raise fail(f"value {name!r}: value must be text")


def _finite_number(item: Any) -> bool:
    """A JSON number that converts to a finite float (a huge integer overflows instead)."""
    if not isinstance(item, (int, float)) or isinstance(item, bool):
        return False
    try:
        return math.isfinite(float(item))
    except OverflowError:
        return False


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError
    return value


# -- checking --------------------------------------------------------------------


@dataclass
class CheckEntry:
    path: str
    status: str  # "matches" | "within tolerance" | "differs" | "not in the file" | "missing in this run" | "skipped"
    detail: str = ""

    @property
    def failed(self) -> bool:
        return self.status in ("differs", "missing in this run")


@dataclass
class CheckResult:
    """How this run's values compare with a saved file."""

    path: str
    tolerance: Tolerance
    entries: list[CheckEntry] = field(default_factory=list)
    environment_changes: list[tuple[str, Any, Any]] = field(default_factory=list)
    saved_seed: int | None = None

    @property
    def ok(self) -> bool:
        return not any(entry.failed for entry in self.entries)

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "ok": self.ok,
            "tolerance": str(self.tolerance),
            "entries": [dataclasses.asdict(entry) for entry in self.entries],
            "environment_changes": [
                {"field": name, "saved": old, "now": new} for name, old, new in self.environment_changes
            ],
        }


def check(saved: Saved, records: dict[str, dict[str, Any]], tol: Tolerance, env_now: dict[str, Any]) -> CheckResult:
    """Exact digests, or (with a tolerance) the saved statistics, for every leaf; environment changes as causes."""
    result = CheckResult(saved.path, tol, saved_seed=saved.seed)
    for path, old in saved.values.items():
        new = records.get(path)
        if new is None:
            result.entries.append(CheckEntry(path, "missing in this run", "saved in the file but not produced now"))
        else:
            result.entries.append(_check_record(path, old, new, tol))
    for path in records:
        if path not in saved.values:
            result.entries.append(CheckEntry(path, "not in the file", "new since the file was saved; not checked"))
    if not result.ok:
        result.environment_changes = environment_differences(saved.environment, env_now)
    return result


def _check_record(path: str, old: dict[str, Any], new: dict[str, Any], tol: Tolerance) -> CheckEntry:
    if {old["kind"], new["kind"]} & {"unsupported", "unreadable"}:
        return CheckEntry(path, "skipped", old.get("why") or new.get("why", ""))
    if old["kind"] != new["kind"]:
        return CheckEntry(path, "differs", f"kind {old['kind']} saved, {new['kind']} now")
    for key in ("dtype", "shape"):
        if key in old and old.get(key) != new.get(key):
            return CheckEntry(path, "differs", f"{key} {old[key]} saved, {new[key]} now")
    if old["digest"] == new["digest"]:
        return CheckEntry(path, "matches")
    if tol.exact:
        return CheckEntry(path, "differs", _exact_difference(old, new))
    if old["kind"] in ("tensor", "array"):
        return check_stats(path, old.get("stats"), new.get("stats"), tol)
    if old["kind"] == "float":
        a, b = float.fromhex(new["value"]), float.fromhex(old["value"])
        if math.isfinite(a) and math.isfinite(b) and abs(a - b) <= tol.atol + tol.rtol * abs(b):
            return CheckEntry(path, "within tolerance", f"{a!r} now, {b!r} saved")
    return CheckEntry(path, "differs", _exact_difference(old, new))


def _exact_difference(old: dict[str, Any], new: dict[str, Any]) -> str:
    if old["kind"] == "float":
        return f"{float.fromhex(new['value'])!r} now, {float.fromhex(old['value'])!r} saved"
    if "value" in old and "value" in new:
        return f"{new['value']!r} now, {old['value']!r} saved"
    old_stats, new_stats = old.get("stats") or {}, new.get("stats") or {}
    shown = [
        f"{key} {new_stats[key]:.6g} now, {old_stats[key]:.6g} saved"
        for key in ("mean", "min", "max")
        if isinstance(old_stats.get(key), (int, float))
        and isinstance(new_stats.get(key), (int, float))
        and old_stats[key] != new_stats[key]
    ]
    return "digest differs" + (f" ({'; '.join(shown)})" if shown else " (same summary statistics)")


def check_stats(path: str, old: Any, new: Any, tol: Tolerance) -> CheckEntry:
    """A necessary condition for elementwise closeness: every statistic within what the tolerance allows."""
    if not isinstance(old, dict) or not isinstance(new, dict):
        return CheckEntry(path, "differs", "digest differs and no statistics were saved to check a tolerance")
    for key in COUNT_KEYS:
        if old.get(key) != new.get(key):
            return CheckEntry(path, "differs", f"{key} count {new.get(key)} now, {old.get(key)} saved")
    if old.get("mean") is None or new.get("mean") is None:
        return CheckEntry(path, "differs", "digest differs")
    scale = max(abs(old["min"]), abs(old["max"]))
    bounds = {
        "min": tol.atol + tol.rtol * scale,
        "max": tol.atol + tol.rtol * scale,
        "mean": tol.atol + tol.rtol * old["abs_mean"],
        "abs_mean": tol.atol + tol.rtol * old["abs_mean"],
    }
    for key, bound in bounds.items():
        # Statistics accumulate in float32: allow for another summation order on another machine.
        slack = STATS_SLACK * max(abs(old[key]), abs(new[key]), old["abs_mean"])
        if abs(new[key] - old[key]) > bound + slack:
            return CheckEntry(
                path, "differs", f"{key} {new[key]:.6g} now, {old[key]:.6g} saved (allowed difference {bound:.3g})"
            )
    return CheckEntry(path, "within tolerance", "digest differs; every saved statistic is within the tolerance")
