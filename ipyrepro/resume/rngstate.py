"""Every RNG a training run draws from, captured as one dict that `torch.load(weights_only=True)` reads back.

Python's `random`, NumPy's global RNG (or the seed still waiting for `numpy.random`'s import), torch's CPU
generator, each CUDA device already initialised (never initialising one), the generators passed in, and
ipyrepro's own re-seed state. NumPy arrays are stored as uint8 tensors so that no pickle of arbitrary
objects is needed. Restoring validates everything first, restores what it can and says what it could not.
"""

from __future__ import annotations

import platform
import random
import sys
import warnings
from dataclasses import dataclass, field
from typing import Any

import torch

FORMAT = "ipyrepro-rng-state/1"
NUMPY_MODULE = "numpy.random"


@dataclass
class RngRestore:
    """What `set_rng_state` put back, and what it could not, each with its reason."""

    restored: list[str] = field(default_factory=list)
    not_restored: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        lines = [f"Restored: {', '.join(self.restored) or 'nothing'}."]
        lines += [f"Not restored: {text}" for text in self.not_restored]
        lines += [f"Note: {text}" for text in self.notes]
        return "\n".join(lines)


# -- capture ---------------------------------------------------------------------------------------


def rng_state(*generators: Any) -> dict[str, Any]:
    """Every RNG state as one dict: random, NumPy's global RNG, torch CPU, initialised CUDA devices,
    the `torch.Generator`s / `numpy.random.Generator`s passed in, and ipyrepro's re-seed state."""
    encoded = [encode_generator(generator, f"generator #{index + 1}") for index, generator in enumerate(generators)]
    return {
        **global_rng_state(),
        "generators": encoded,
        "ipyrepro": _ipyrepro_state(),
    }


def global_rng_state() -> dict[str, Any]:
    """The process-wide RNGs only (what ipyrepro re-seeds before a cell)."""
    numpy = sys.modules.get("numpy")
    return {
        "format": FORMAT,
        "versions": {
            "torch": str(torch.__version__),
            "numpy": None if numpy is None else str(numpy.__version__),
            "python": platform.python_version(),
        },
        "python": random.getstate(),
        "numpy": _numpy_global_state(),
        "torch_cpu": torch.get_rng_state(),
        # reading a device's state would initialise CUDA: only devices of an initialised CUDA are read
        "cuda": [state.clone() for state in torch.cuda.get_rng_state_all()] if torch.cuda.is_initialized() else None,
    }


def _numpy_global_state() -> dict[str, Any]:
    from ..core.numpyrandom import NUMPY_RANDOM, NotImported

    captured = NUMPY_RANDOM.capture()
    if isinstance(captured, NotImported):
        return {"imported": False, "pending": captured.pending}
    return {"imported": True, "state": encode_numpy(captured)}


def _ipyrepro_state() -> dict[str, Any]:
    from ..core.state import STATE

    last = STATE.last_cell if STATE.reseed != "off" else None
    return {
        "enabled": STATE.enabled,
        "seed": STATE.seed,
        "reseed": STATE.reseed,
        "rank": STATE.rank,
        "rank_seed": STATE.rank_seed,
        "cell": None
        if last is None
        else {"seed": last.seed, "cell_id": last.cell_id, "derivation": last.derivation, "head": _running_cell_head()},
    }


def _running_cell_head() -> str:
    """The first line of the cell running now (IPython's input history), to name it later; "" outside IPython."""
    import sys

    ipython = sys.modules.get("IPython")  # never imported here: a script has no cells
    shell = ipython.get_ipython() if ipython is not None else None
    try:
        code = shell.history_manager.input_hist_raw[-1] if shell is not None else ""
    except (AttributeError, IndexError):
        return ""
    line = next((line.strip() for line in str(code).splitlines() if line.strip()), "")
    return line if len(line) <= 80 else line[:77] + "..."


def encode_generator(generator: Any, label: str) -> dict[str, Any]:
    """One generator's state; raises TypeError for anything that is not a torch or NumPy generator."""
    if isinstance(generator, torch.Generator):
        return {"kind": "torch", "device": generator.device.type, "state": generator.get_state()}
    numpy = sys.modules.get(NUMPY_MODULE)
    if numpy is not None and isinstance(generator, numpy.Generator):
        return {"kind": "numpy.Generator", "state": encode_numpy(generator.bit_generator.state)}
    if numpy is not None and isinstance(generator, numpy.RandomState):
        return {"kind": "numpy.RandomState", "state": encode_numpy(generator.get_state(legacy=False))}
    raise TypeError(
        f"{label} is a {type(generator).__qualname__}, not a torch.Generator, numpy.random.Generator or "
        "numpy.random.RandomState. Fix: pass only generators (the global RNGs are always included)."
    )


def encode_numpy(value: Any) -> Any:
    """NumPy arrays inside a state as {"ndarray": uint8 tensor, "dtype", "shape"}; the rest as it is."""
    import numpy as np

    if isinstance(value, np.ndarray):
        raw = np.ascontiguousarray(value).reshape(-1).view(np.uint8).copy()
        return {"ndarray": torch.from_numpy(raw), "dtype": value.dtype.str, "shape": list(value.shape)}
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, dict):
        return {key: encode_numpy(item) for key, item in value.items()}
    if isinstance(value, (tuple, list)):
        return type(value)(encode_numpy(item) for item in value)
    return value


def decode_numpy(value: Any) -> Any:
    import numpy as np

    if isinstance(value, dict) and set(value) == {"ndarray", "dtype", "shape"}:
        raw = value["ndarray"].numpy().tobytes()
        return np.frombuffer(raw, dtype=np.dtype(value["dtype"])).reshape(value["shape"]).copy()
    if isinstance(value, dict):
        return {key: decode_numpy(item) for key, item in value.items()}
    if isinstance(value, (tuple, list)):
        return type(value)(decode_numpy(item) for item in value)
    return value


# -- restore ---------------------------------------------------------------------------------------


def set_rng_state(state: dict[str, Any], *generators: Any, pending: bool = True) -> RngRestore:
    """Put back what `rng_state` captured; the generators in the same order as they were captured.

    Validates all first (a state that is not one, or a generator of another kind, raises ValueError and
    changes nothing); then restores what it can. What a state from another torch/NumPy version or a
    different device count cannot give is listed in the result's `not_restored` and warned about.
    `pending`: mark the cell that was running at capture so that its next run is not re-seeded.
    """
    validate_state(state)
    report = RngRestore()
    global_steps = plan_global_restore(state, report)
    steps = global_steps + _plan_generators(state.get("generators", []), generators, report)
    if isinstance(state.get("ipyrepro"), dict):
        steps.append(_plan_ipyrepro(state["ipyrepro"], global_steps if pending else None, report))
    for label, apply in steps:
        try:
            apply()
            report.restored.append(label)
        except Exception as error:  # validated already: a library refused it after all
            report.not_restored.append(f"{label}: {type(error).__name__}: {error}")
    if report.not_restored:
        from ..core.state import ReproWarning

        warnings.warn(
            "set_rng_state could not restore everything; results after this point can differ from the run "
            "that saved it:\n  " + "\n  ".join(report.not_restored),
            ReproWarning,
            stacklevel=2,
        )
    return report


def validate_state(state: Any) -> None:
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        found = state.get("format") if isinstance(state, dict) else type(state).__qualname__
        raise ValueError(
            f"This is not an RNG state from ipyrepro.rng_state (format {found!r}, expected {FORMAT!r}). "
            "Fix: pass the dict that ipyrepro.rng_state() returned, or the checkpoint's own RNG state."
        )


def plan_global_restore(state: dict[str, Any], report: RngRestore) -> list[tuple[str, Any]]:
    """(label, apply) for each process-wide RNG the state can give; what it cannot goes to `report`."""
    steps: list[tuple[str, Any]] = []
    python = state.get("python")
    if _is_python_state(python):
        steps.append(("random", lambda: random.setstate(python)))
    else:
        report.not_restored.append("random: the saved state is not one of this Python's (random.getstate())")
    steps += _plan_numpy_global(state.get("numpy"), state.get("versions", {}), report)
    cpu = state.get("torch_cpu")
    current = torch.get_rng_state()
    if isinstance(cpu, torch.Tensor) and cpu.dtype == torch.uint8 and cpu.numel() == current.numel():
        steps.append(("torch CPU", lambda: torch.set_rng_state(cpu)))
    else:
        saved_by = state.get("versions", {}).get("torch")
        report.not_restored.append(
            f"torch CPU: the state saved by torch {saved_by} does not fit torch {torch.__version__}'s generator"
        )
    steps += _plan_cuda(state.get("cuda"), report)
    return steps


def _is_python_state(value: Any) -> bool:
    return (
        isinstance(value, tuple)
        and len(value) == 3
        and value[0] == random.getstate()[0]
        and isinstance(value[1], tuple)
        and len(value[1]) == 625
    )


def _plan_numpy_global(saved: Any, versions: dict[str, Any], report: RngRestore) -> list[tuple[str, Any]]:
    from ..core.numpyrandom import NUMPY_RANDOM, NotImported

    if not isinstance(saved, dict):
        report.not_restored.append("NumPy global: the state holds no NumPy state")
        return []
    if not saved.get("imported"):
        return [("NumPy global", lambda: NUMPY_RANDOM.restore(NotImported(saved.get("pending"))))]
    legacy = decode_numpy(saved.get("state"))
    if not (isinstance(legacy, tuple) and len(legacy) == 5 and legacy[0] == "MT19937" and len(legacy[1]) == 624):
        report.not_restored.append(
            f"NumPy global: the state saved with NumPy {versions.get('numpy')} is not an MT19937 state this NumPy reads"
        )
        return []
    return [("NumPy global", lambda: NUMPY_RANDOM.restore(legacy))]


def _plan_cuda(saved: Any, report: RngRestore) -> list[tuple[str, Any]]:
    if not saved:
        return []  # CUDA was not initialised when it was saved: nothing had drawn from it
    if not torch.cuda.is_available():
        report.not_restored.append(f"CUDA: the states of {len(saved)} device(s) were saved; CUDA is not available here")
        return []
    count = torch.cuda.device_count()  # asks the driver; creates no context
    steps = []
    for index, device_state in enumerate(saved[:count]):
        # torch.cuda.set_rng_state queues the state until CUDA is initialised: restoring initialises nothing
        steps.append((f"CUDA device {index}", lambda s=device_state, i=index: torch.cuda.set_rng_state(s, i)))
    if len(saved) > count:
        report.not_restored.append(
            f"CUDA devices {count}..{len(saved) - 1}: saved with {len(saved)} devices, this process sees {count}"
        )
    return steps


def _plan_generators(saved: list[dict[str, Any]], given: tuple[Any, ...], report: RngRestore) -> list[tuple[str, Any]]:
    if len(given) > len(saved):
        raise ValueError(
            f"{len(given)} generator(s) given but the state holds {len(saved)}. Fix: pass the generators in the "
            "order they were given to rng_state / save_checkpoint."
        )
    steps = []
    for index, generator in enumerate(given):
        label = f"generator #{index + 1}"
        current = encode_generator(generator, label)
        entry = saved[index]
        if current["kind"] != entry.get("kind") or current.get("device") != entry.get("device"):
            raise ValueError(
                f"{label} is a {current['kind']} generator ({current.get('device') or 'cpu'}), but the state holds a "
                f"{entry.get('kind')} generator ({entry.get('device') or 'cpu'}) there. Fix: pass them in the order "
                "they were saved."
            )
        steps.append((label, _generator_restorer(generator, entry)))
    for index in range(len(given), len(saved)):
        report.not_restored.append(f"generator #{index + 1} ({saved[index].get('kind')}): saved but not given")
    return steps


def _generator_restorer(generator: Any, entry: dict[str, Any]) -> Any:
    if entry["kind"] == "torch":
        return lambda: generator.set_state(entry["state"])
    if entry["kind"] == "numpy.Generator":

        def apply() -> None:
            generator.bit_generator.state = decode_numpy(entry["state"])

        return apply
    return lambda: generator.set_state(decode_numpy(entry["state"]))


def _plan_ipyrepro(
    saved: dict[str, Any], global_steps: list[tuple[str, Any]] | None, report: RngRestore
) -> tuple[str, Any]:
    """ipyrepro's base seed, mode and rank as at the save, and the cell that was running then: its next
    run puts the checkpoint's process-wide states back instead of re-seeding (`global_steps`; None: no)."""
    from ..core.pendingrestore import PendingRestore
    from ..core.state import STATE
    from ..core.validation import validate_reseed_mode, validate_seed

    seed = saved.get("seed")
    if seed is not None:  # ipyrepro had seeded the saving run; else its settings here stay as they are
        validate_seed(seed)
        validate_reseed_mode(saved.get("reseed"))
    cell = saved.get("cell")
    pending = None
    if global_steps is not None and isinstance(cell, dict):
        steps = list(global_steps)

        def put_back() -> None:
            for _, apply in steps:
                apply()

        pending = PendingRestore(
            int(cell["seed"]), cell.get("cell_id"), str(cell["derivation"]), put_back, head=str(cell.get("head") or "")
        )
    if saved.get("enabled") and not STATE.enabled:
        report.notes.append(
            "ipyrepro was on when this state was saved and is off now: the determinism flags differ. "
            "Fix: run `%repro on` (or ipyrepro.enable()) before loading."
        )

    def apply() -> None:
        STATE.restore_reseed_state(
            seed=seed,
            reseed=saved.get("reseed"),
            rank=saved.get("rank"),
            rank_seed=saved.get("rank_seed"),
            pending=pending,
        )

    return "ipyrepro re-seed state", apply
