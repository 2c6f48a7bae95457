"""`verify_resume`: does a run that is saved, loaded into fresh objects and continued equal one that never stopped?

It runs `steps` steps uninterrupted, then `at` steps, a save, a load into freshly built objects (in this
process or a fresh one) and the rest, both from the same RNG states. It compares the training state after
every step (the first divergent step) and, to say *why*, every RNG state, the loader's place and every
state dict right after the load with those right at the save.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from .digest import digest
from .loader import ResumableLoader, StatefulResumable, loader_generators, resumable
from .rngstate import RngRestore, encode_generator, global_rng_state, plan_global_restore

Objects = dict[str, Any]

RNG_LABELS = {
    "python": ("Python random", "random.random(), random.shuffle and augmentations that use them"),
    "numpy": ("NumPy global RNG", "np.random draws, e.g. augmentations"),
    "torch_cpu": ("torch CPU RNG", "dropout masks, shuffling, torch.rand* and random augmentations"),
    "cuda": ("CUDA RNG", "dropout masks and random ops on the GPU"),
}


@dataclass(repr=False)
class ResumeReport:
    """The verdict: identical or not, the first divergent step (from 1), and what the load did not restore."""

    identical: bool
    first_divergent_step: int | None
    missing: list[str] = field(default_factory=list)
    details: dict[str, str] = field(default_factory=dict)
    steps: int = 0  # the steps the uninterrupted run took
    resumed_steps: int = 0  # the steps the saved-and-resumed run took, before and after the load
    at: int = 0
    fresh_process: bool = False

    def __bool__(self) -> bool:
        return self.identical

    def __repr__(self) -> str:
        return f"<ResumeReport identical={self.identical} first_divergent_step={self.first_divergent_step}>"

    def __str__(self) -> str:
        where = "in a fresh process" if self.fresh_process else "in this process"
        plan = f"{self.steps} steps; saved after step {self.at} and loaded into fresh objects {where}"
        if self.identical:
            head = f"Resume verified: the resumed run equals the uninterrupted one at every step ({plan})."
        else:
            head = f"Resume differs: the resumed run diverges from step {self.first_divergent_step} ({plan})."
        lines = [head]
        if self.resumed_steps != self.steps:
            lines.append(
                f"The resumed run took {self.resumed_steps} steps, the uninterrupted one {self.steps}: after the load "
                "the loader's epoch is not the one the training loop's `range(loader.epoch, ...)` counts from."
            )
        if self.missing:
            lines.append("Not restored by the load:")
            lines += [f"  - {self.details[name]}" for name in self.missing]
        elif not self.identical and self.resumed_steps == self.steps:
            lines.append(
                "Every RNG state, the loader's place and every state dict were as at the save: something else "
                "differs (a state kept outside these objects, or a nondeterministic operation)."
            )
        return "\n".join(lines)


def verify_resume(
    build: Callable[[], Objects],
    step: Callable[[Objects, Any], Any],
    steps: int,
    at: int,
    save: Callable[[Objects, str], Any] | None = None,
    load: Callable[[Objects, str], Any] | None = None,
    fresh_process: bool = False,
) -> ResumeReport:
    """Check that saving after `at` of `steps` steps and loading into fresh objects changes nothing.

    `build()` returns fresh training objects, one named "loader" (a DataLoader; it is iterated for you,
    through `resumable`); `step(objects, batch)` runs one step; `save(objects, path)` / `load(objects, path)`
    default to ipyrepro's checkpoints. The caller's RNG states are as before when it returns.
    """
    _validate(build, step, steps, at, save, load)
    from ..core.state import STATE

    caller = STATE.checkpoint()  # flags, re-seed settings, a pending restore and RNG states, put back after
    start = global_rng_state()
    try:
        reference = _train(_fresh(build, start), step, steps)
        _restore(start)
        objects = _fresh(build, start)
        trace = _train(objects, step, steps, stop=at)
        with tempfile.TemporaryDirectory(prefix="ipyrepro-verify-") as folder:
            path = os.path.join(folder, "checkpoint.pt")
            (save or default_save)(objects, path)
            at_save = snapshot(objects)
            if fresh_process:
                after_load, rest = _in_fresh_process(build, step, load, path, start, at, steps)
            else:
                after_load, rest = resume_and_train(build, step, load, path, start, at, steps)
    finally:
        _restore(start)
        STATE.restore(caller)
    trace += rest
    first = next((index + 1 for index, (a, b) in enumerate(zip(reference, trace)) if a != b), None)
    if first is None and len(trace) != len(reference):
        first = min(len(trace), len(reference)) + 1  # one run went on where the other had stopped
    report = ResumeReport(
        first is None,
        first,
        steps=len(reference),
        resumed_steps=len(trace),
        at=at,
        fresh_process=fresh_process,
    )
    _explain(report, at_save, after_load, first)
    return report


def _validate(build: Any, step: Any, steps: Any, at: Any, save: Any, load: Any) -> None:
    for name, value in (("build", build), ("step", step)):
        if not callable(value):
            raise TypeError(f"{name} must be a callable; got {value!r}")
    for name, value in (("save", save), ("load", load)):
        if value is not None and not callable(value):
            raise TypeError(f"{name} must be a callable (objects, path) or None for ipyrepro's checkpoints")
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 2:
        raise ValueError(f"steps must be an int of at least 2; got {steps!r}")
    if not isinstance(at, int) or isinstance(at, bool) or not 1 <= at < steps:
        raise ValueError(f"at must be an int from 1 to steps - 1 ({steps - 1}); got {at!r}")


def default_save(objects: Objects, path: str) -> None:
    from .checkpoint import save_checkpoint

    save_checkpoint(path, **_checkpointable(objects))


def default_load(objects: Objects, path: str) -> None:
    from .checkpoint import load_into

    load_into(path, _checkpointable(objects), pending=False)


def _checkpointable(objects: Objects) -> Objects:
    """The objects a checkpoint can hold: those with state dicts, and generators (a config value is not)."""
    keep = {}
    for name, obj in objects.items():
        if callable(getattr(obj, "state_dict", None)) and callable(getattr(obj, "load_state_dict", None)):
            keep[name] = obj
            continue
        try:
            encode_generator(obj, name)
        except TypeError:
            continue
        keep[name] = obj
    return keep


def _fresh(build: Callable[[], Objects], start: dict[str, Any]) -> Objects:
    """build() from the start states, with its loader wrapped by `resumable`."""
    _restore(start)
    objects = build()
    if not isinstance(objects, dict) or "loader" not in objects:
        raise ValueError(
            "build() must return a dict of the training objects with the DataLoader under 'loader'; got "
            f"{type(objects).__qualname__}{' without a loader' if isinstance(objects, dict) else ''}."
        )
    objects = dict(objects)
    objects["loader"] = resumable(objects["loader"])
    return objects


def _train(objects: Objects, step: Callable[[Objects, Any], Any], steps: int, stop: int | None = None) -> list[str]:
    """The docs' loop, `for epoch in range(loader.epoch, epochs): for batch in loader: step`, as far as the
    uninterrupted run's `steps` go (or `stop` steps, for the save); the training state's digest after each.

    The epoch index is the loop's, as in a user's script: a place that puts the loader in another epoch
    than the loop believes makes the run take another number of steps.
    """
    loader = objects["loader"]
    length = len(loader)
    if length == 0:
        raise ValueError("The DataLoader yields no batches; verify_resume needs at least one per epoch.")
    epochs = -(-steps // length)
    last = steps - (epochs - 1) * length  # batches of the last epoch the uninterrupted run takes
    trace: list[str] = []
    for epoch in range(loader.epoch, epochs):
        for batch in loader:
            step(objects, batch)
            trace.append(digest(_training_state(objects)))
            if len(trace) == stop or (epoch == epochs - 1 and loader.batches == last):
                return trace
    return trace


def _training_state(objects: Objects) -> list[Any]:
    return [
        obj.state_dict()
        for name, obj in objects.items()
        if name != "loader" and callable(getattr(obj, "state_dict", None))
    ]


def resume_and_train(
    build: Callable[[], Objects],
    step: Callable[[Objects, Any], Any],
    load: Callable[[Objects, str], Any] | None,
    path: str,
    start: dict[str, Any],
    at: int,
    steps: int,
) -> tuple[dict[str, Any], list[str]]:
    """Fresh objects, the load, the snapshot right after it, then steps at+1..steps."""
    objects = _fresh(build, start)
    (load or default_load)(objects, path)
    after_load = snapshot(objects)
    return after_load, _train(objects, step, steps)


def snapshot(objects: Objects) -> dict[str, Any]:
    """Digests of every RNG state, each object's state dict and generator, and the loader's place."""
    rng = global_rng_state()
    shot: dict[str, Any] = {f"rng:{key}": digest(rng[key]) for key in RNG_LABELS if rng.get(key) is not None}
    for name, obj in objects.items():
        if name == "loader":
            continue
        if callable(getattr(obj, "state_dict", None)):
            shot[f"object:{name}"] = digest(obj.state_dict())
        else:
            try:
                shot[f"object:{name}"] = digest(encode_generator(obj, name))
            except TypeError:
                continue
    loader = objects["loader"]
    shot["place"] = loader.place
    if isinstance(loader, ResumableLoader):
        shot["order"] = digest(loader.state_dict()["indices"])
        for label, generator in loader_generators(loader.loader):
            shot[f"loader-generator:{label}"] = digest(generator.get_state())
    elif isinstance(loader, StatefulResumable):
        shot["order"] = digest(loader.loader.state_dict())
    return shot


def _explain(report: ResumeReport, at_save: dict[str, Any], after_load: dict[str, Any], first: int | None) -> None:
    effect = f"differs from step {first}" if first is not None else "was not drawn from in these steps"
    for key, (label, draws) in RNG_LABELS.items():
        if at_save.get(f"rng:{key}") != after_load.get(f"rng:{key}"):
            report.missing.append(label)
            report.details[label] = f"{label} not restored: what it draws ({draws}) {effect}"
    saved_place, loaded_place = at_save["place"], after_load["place"]
    if saved_place != loaded_place:
        label = "DataLoader"
        if loaded_place[1] == 0 and saved_place[1] > 0:
            text = (
                f"DataLoader restarted its epoch: at the save it was in epoch {saved_place[0]} with "
                f"{saved_place[1]} batches consumed; after the load it starts epoch {loaded_place[0]} from its "
                "first batch, so batches repeat and others are skipped"
            )
        else:
            text = (
                f"DataLoader's place not restored: epoch {saved_place[0]}, {saved_place[1]} batches at the save; "
                f"epoch {loaded_place[0]}, {loaded_place[1]} batches after the load"
            )
        report.missing.append(label)
        report.details[label] = text
    elif at_save.get("order") != after_load.get("order"):
        report.missing.append("DataLoader")
        report.details["DataLoader"] = "DataLoader's order not restored: the rest of the epoch comes in another order"
    for key in at_save:
        if key.startswith(("object:", "loader-generator:")) and at_save[key] != after_load.get(key):
            name = key.split(":", 1)[1]
            label = name if key.startswith("object:") else f"DataLoader's {name}"
            report.missing.append(label)
            report.details[label] = f"{label} not restored: its state after the load differs from the save's"


# -- RNG states between the runs ---------------------------------------------------------


def _restore(state: dict[str, Any]) -> None:
    """Put back the process-wide RNG states (no pending restore for a cell: this is verify's own work)."""
    for _, apply in plan_global_restore(state, RngRestore()):
        apply()


# -- a fresh process ------------------------------------------------------------------------------


def _in_fresh_process(
    build: Any, step: Any, load: Any, path: str, start: dict[str, Any], at: int, steps: int
) -> tuple[dict[str, Any], list[str]]:
    for name, value in (("build", build), ("step", step), ("load", load)):
        try:
            pickle.dumps(value)
        except Exception as error:
            raise ValueError(
                f"fresh_process=True runs the load in a new Python process, which imports `{name}` by name, and "
                f"{value!r} cannot be ({type(error).__name__}: {error}). Fix: define build, step and load as "
                "top-level functions in an importable module (not in a notebook or __main__)."
            ) from None
    flags = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.deterministic,
        torch.backends.cudnn.benchmark,
    )
    folder = os.path.dirname(path)
    spec_path, result_path = os.path.join(folder, "spec.pkl"), os.path.join(folder, "result.pkl")
    with open(spec_path, "wb") as file:
        pickle.dump((build, step, load, path, start, at, steps, flags), file)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(path for path in sys.path if path))
    done = subprocess.run(
        [sys.executable, "-m", "ipyrepro.resume.child", spec_path, result_path],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"verify_resume's fresh process failed (exit {done.returncode}):\n{done.stderr[-4000:]}")
    with open(result_path, "rb") as file:
        return pickle.load(file)
