"""`save_checkpoint` / `load_checkpoint`: state dicts, every RNG and the DataLoader's place in one file.

The file is written to a temporary name beside the target and renamed over it (an interrupted save leaves
the previous checkpoint as it was, and the next save or load removes its partial file: partials.py), read
back with `torch.load(weights_only=True)` (no pickle of arbitrary objects; a refusal says why: refusal.py),
and carries a digest of everything it holds: torch's zip reader does not notice a flipped byte in
a tensor, so the digest does, before any object is touched. Its manifest names what it holds, so a load
given fewer or other objects says so.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..core import userfiles
from .digest import digest
from .loader import ResumableLoader
from .loadershape import describe_differences, loader_shape
from .partials import lock, partial_suffix, remove_abandoned
from .refusal import is_refusal, refusal_message
from .rngstate import RngRestore, encode_generator, rng_state, set_rng_state

FORMAT = "ipyrepro-checkpoint/1"


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not fit the objects given; nothing was changed."""


@dataclass
class LoadReport:
    """What `load_checkpoint` restored, and what the checkpoint held that was not given."""

    path: str
    loaded: list[str] = field(default_factory=list)
    not_loaded: list[str] = field(default_factory=list)
    rng: RngRestore = field(default_factory=RngRestore)
    cell: dict[str, Any] | None = None  # the cell that was running at the save (re-seeding waits for it)
    notes: list[str] = field(default_factory=list)  # e.g. a loader that starts the next epoch (strict=False)

    def __str__(self) -> str:
        lines = [f"Loaded {', '.join(self.loaded) or 'no objects'} and the RNG states from {self.path}."]
        if self.not_loaded:
            lines.append(f"In the checkpoint but not given, so not loaded: {', '.join(self.not_loaded)}.")
        lines += [f"Not restored: {text}" for text in self.rng.not_restored]
        lines += [f"Note: {text}" for text in [*self.notes, *self.rng.notes]]
        if self.cell is not None:
            lines.append(
                f"The cell that was running at the save (seed {self.cell['seed']}) will not be re-seeded when it "
                "runs next: it continues from these states."
            )
        return "\n".join(lines)


def _kind(obj: Any) -> str:
    kind = type(obj)
    return f"{kind.__module__}.{kind.__qualname__}"


def _classify(objects: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(objects with state_dict, generators); raises TypeError naming the first that is neither."""
    from torch.utils.data import DataLoader

    stateful, generators = {}, {}
    for name, obj in objects.items():
        if isinstance(obj, DataLoader):
            raise TypeError(
                f"{name} is a plain DataLoader, which does not know its place in an epoch. "
                f"Fix: wrap it once with `{name} = ipyrepro.resumable({name})`, iterate that, and pass it here."
            )
        if callable(getattr(obj, "state_dict", None)) and callable(getattr(obj, "load_state_dict", None)):
            stateful[name] = obj
            continue
        try:
            encode_generator(obj, name)
        except TypeError:
            raise TypeError(
                f"{name} is a {type(obj).__qualname__}: it has no state_dict/load_state_dict and is not a generator. "
                "Fix: pass models, optimizers, schedulers, GradScalers, ipyrepro.resumable loaders or generators."
            ) from None
        generators[name] = obj
    return stateful, generators


def save_checkpoint(path: str | os.PathLike[str], **objects: Any) -> Path:
    """Save every object's state_dict, every RNG state and the loaders' places to `path`, atomically."""
    if not objects:
        raise TypeError("save_checkpoint needs the objects to save as keywords, e.g. model=model, optimizer=opt")
    stateful, generators = _classify(objects)
    body = {
        "manifest": {name: _kind(obj) for name, obj in objects.items()},
        "objects": {name: obj.state_dict() for name, obj in stateful.items()},
        "generators": list(generators),
        "rng": rng_state(*generators.values()),
    }
    payload = {"format": FORMAT, "digest": digest(body), "body": body}
    target = validate_checkpoint_target(path)
    remove_abandoned(target)
    with userfiles.replacing(target, binary=True, durable=True, keep_mode=True, suffix=partial_suffix()) as file:
        lock(file)
        torch.save(payload, file)
    return target


def validate_checkpoint_target(path: str | os.PathLike[str]) -> Path:
    """The checkpoint's path, checked before anything is written: the message names it, with a fix."""
    try:
        return userfiles.validate_target(path, "checkpoint")
    except userfiles.PathProblem as problem:
        text = str(problem)
        target = userfiles.expand(path, "checkpoint")
        prefix = f"cannot save to {str(target)!r}: "
        reason = text[len(prefix) :] if text.startswith(prefix) else text
        if "does not exist" in text:
            fix = f"create the folder first (os.makedirs({str(target.parent)!r}, exist_ok=True)), or save elsewhere."
        elif "not writable" in text or "permission denied" in text:
            fix = "save to a folder you can write to, or change the folder's permissions."
        else:
            fix = "give the path of a file in a folder that exists and that you can write to."
        raise userfiles.PathProblem(
            f"Cannot save the checkpoint {str(path)!r}: {reason}. Nothing was written.\nFix: {fix}"
        ) from None


def read_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The checkpoint's body, checked whole; raises CheckpointError (or FileNotFoundError) otherwise."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"No checkpoint at {path}. Fix: check the path, or save one with save_checkpoint.")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        if is_refusal(error):
            raise CheckpointError(refusal_message(path, str(error))) from None  # torch's text advises the unsafe load
        raise CheckpointError(
            f"Cannot read the checkpoint {path}: it is truncated or corrupted ({type(error).__name__}: "
            f"{str(error).strip()[:300]}). Nothing was changed. Fix: load an earlier checkpoint, or save a new one."
        ) from error
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} is not an ipyrepro checkpoint (written by something other than ipyrepro.save_checkpoint). "
            "Nothing was changed. Fix: load it with the code that saved it."
        )
    body = payload.get("body")
    if not isinstance(body, dict) or digest(body) != payload.get("digest"):
        raise CheckpointError(
            f"The checkpoint {path} is corrupted: what it holds does not match the digest written with it. "
            "Nothing was changed. Fix: load an earlier checkpoint, or save a new one."
        )
    return body


def load_checkpoint(path: str | os.PathLike[str], *, strict: bool = True, **objects: Any) -> LoadReport:
    """Load the state dicts, the loaders' places and every RNG state saved in `path` into `objects`.

    Reads and checks the whole file, and checks the objects against its manifest and each loader against
    the one it was saved from (batch size, dataset, sampler, workers), before changing anything. A name
    that was not saved raises; a saved name not given is left out and warned about. `strict=False` lets a
    loader built otherwise start the next epoch instead of raising, and says so.
    The cell that was running at the save is not re-seeded when it runs next ([resume][page-resume]).
    """
    if not isinstance(strict, bool):
        raise TypeError(f"strict must be True or False; got {strict!r}")
    return load_into(path, objects, pending=True, strict=strict)


def load_into(
    path: str | os.PathLike[str], objects: dict[str, Any], *, pending: bool, strict: bool = True
) -> LoadReport:
    """load_checkpoint's work; `pending=False` (verify_resume's own loads) leaves per-cell re-seeding alone."""
    stateful, generators = _classify(objects)
    remove_abandoned(path)
    body = read_checkpoint(path)
    manifest: dict[str, str] = body["manifest"]
    unknown = [name for name in objects if name not in manifest]
    if unknown:
        raise CheckpointError(
            f"The checkpoint {path} holds no {', '.join(unknown)}; it holds {', '.join(manifest)}. "
            "Nothing was changed. Fix: pass the objects under the names they were saved with."
        )
    for name, obj in objects.items():
        if manifest[name] != _kind(obj):
            raise CheckpointError(
                f"{name} was saved from a {manifest[name]}, and this is a {_kind(obj)}. Nothing was changed. "
                f"Fix: build {name} the way the saved run did."
            )
    for name, obj in stateful.items():
        _check_fits(name, obj, body["objects"][name], strict)
    skipped = {name: obj for name, obj in stateful.items() if isinstance(obj, ResumableLoader)}
    skipped = {name: obj for name, obj in skipped.items() if obj.differences(body["objects"][name])}
    saved_generators: list[str] = body["generators"]
    order = [name for name in saved_generators if name in generators]
    report = LoadReport(str(path), not_loaded=[name for name in manifest if name not in objects])
    rng = dict(body["rng"])
    rng["generators"] = [rng["generators"][saved_generators.index(name)] for name in order]
    for name, obj in stateful.items():
        try:
            if name in skipped:
                obj.load_state_dict(body["objects"][name], strict=False)
            else:
                obj.load_state_dict(body["objects"][name])
        except Exception as error:
            done = f" ({', '.join(report.loaded)} were loaded already)" if report.loaded else ""
            with contextlib.suppress(AttributeError, TypeError):
                error.add_note(f"(ipyrepro.load_checkpoint: loading {name} from {path} failed{done})")
            raise
        report.loaded.append(name)
    report.rng = set_rng_state(rng, *(generators[name] for name in order), pending=pending)
    report.loaded += order
    report.cell = rng.get("ipyrepro", {}).get("cell") if pending else None
    for name, obj in skipped.items():
        report.notes.append(_skipped_note(name, obj, body["objects"][name]))
    from ..core.state import ReproWarning

    for note in report.notes:
        warnings.warn(note, ReproWarning, stacklevel=3)
    if report.not_loaded:
        warnings.warn(
            f"The checkpoint {path} also holds {', '.join(report.not_loaded)}, which were not given and stay as "
            "they are. Fix: pass them to load_checkpoint too, if the run needs them.",
            ReproWarning,
            stacklevel=3,
        )
    return report


def _skipped_note(name: str, loader: ResumableLoader, saved: dict[str, Any]) -> str:
    differences = describe_differences(saved["shape"], loader_shape(loader.loader), loader.differences(saved))
    return (
        f"{name} is not built like the saved loader ({differences}); with strict=False it starts epoch "
        f"{loader.next_epoch(saved)} from its first batch"
        + (", skipping the rest of the saved epoch" if saved["indices"] is not None else "")
        + ": the run differs from the uninterrupted one."
    )


def _check_fits(name: str, obj: Any, saved: Any, strict: bool = True) -> None:
    """For modules, optimizers and resumable loaders: the saved state fits, so loading cannot half-fail."""
    if isinstance(obj, ResumableLoader):
        try:
            obj.check_state_dict(saved, strict=strict)
        except ValueError as error:
            raise CheckpointError(f"{name}: {error} Nothing was changed.") from None
    elif callable(getattr(obj, "check_state_dict", None)):
        try:
            obj.check_state_dict(saved)
        except ValueError as error:
            raise CheckpointError(f"{name}: {error} Nothing was changed.") from None
    elif isinstance(obj, torch.nn.Module):
        current = obj.state_dict()
        missing = [key for key in current if key not in saved]
        extra = [key for key in saved if key not in current]
        shapes = [
            key
            for key, value in current.items()
            if key in saved and isinstance(value, torch.Tensor) and tuple(value.shape) != tuple(saved[key].shape)
        ]
        if missing or extra or shapes:
            details = "; ".join(
                f"{label}: {', '.join(keys[:5])}"
                for label, keys in (("missing", missing), ("unexpected", extra), ("other shape", shapes))
                if keys
            )
            raise CheckpointError(
                f"{name}'s saved state does not fit this {type(obj).__qualname__} ({details}). Nothing was changed. "
                f"Fix: build {name} with the architecture the saved run used."
            )
    elif isinstance(obj, torch.optim.Optimizer):
        groups = [len(group["params"]) for group in obj.param_groups]
        saved_groups = [len(group["params"]) for group in saved.get("param_groups", [])]
        if groups != saved_groups:
            raise CheckpointError(
                f"{name}'s saved state has parameter groups of sizes {saved_groups}, this optimizer {groups}. "
                f"Nothing was changed. Fix: build {name} over the same parameters as the saved run."
            )
