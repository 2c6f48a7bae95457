"""Resume compared with its peers: is a run saved mid-epoch and resumed in a fresh process the run that never
stopped, and how many lines of save/resume code does each take?

    python benchmarks/bench_resume_peers.py [--approaches plain,accelerate,fabric,ipyrepro] [--json]

One small training run (a 192-sample dataset whose `__getitem__` draws a random augmentation from torch's and
Python's RNGs, shuffled batches of 16, a model with dropout, AdamW, OneCycleLR, 3 epochs = 36 steps) is done by
each approach as its documentation shows:

- plain torch: `torch.save` of the state dicts and the place (epoch, batch), batches skipped on resume;
- HF accelerate: `Accelerator.save_state` / `load_state`, `skip_first_batches` on resume;
- Lightning Fabric: `fabric.save` / `fabric.load` of the objects and the iteration, batches skipped on resume;
- ipyrepro: `resumable(loader)`, `save_checkpoint` / `load_checkpoint`.

A first process runs, per approach, the whole run from seed 0, then again from seed 0 stops after step 17
(epoch 1, batch 6 of 12) with a save; a second process, per approach seeded otherwise as a restarted kernel
is, builds fresh objects, loads and trains to the end. "exact" means the resumed run's final weights are
bitwise those of the uninterrupted run; the largest weight difference and the steps each run took are shown
too. Lines of code count the non-blank, non-comment lines of each approach's `prepare`, `save`, `load` and
`epoch_batches` below (a body that only hands its argument back counts 0). An approach whose package is not
installed is skipped.
"""

from __future__ import annotations

import argparse
import ast
import inspect
import json
import os
import random
import subprocess
import sys
import tempfile
import textwrap
import time
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

SAMPLES, BATCH, EPOCHS, STOP = 192, 16, 3, 17
STEPS = EPOCHS * SAMPLES // BATCH


class Augmented(Dataset):
    def __init__(self) -> None:
        generator = torch.Generator().manual_seed(7)
        self.x = torch.randn(SAMPLES, 8, generator=generator)
        self.y = torch.randn(SAMPLES, 1, generator=generator)

    def __len__(self) -> int:
        return SAMPLES

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        noise = 0.1 * torch.randn(8) + 0.05 * random.random()
        return self.x[index] + noise, self.y[index]


def build() -> dict[str, Any]:
    model = torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.ReLU(), torch.nn.Dropout(0.3), torch.nn.Linear(32, 1))
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.01)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=0.05, total_steps=STEPS)
    loader = DataLoader(Augmented(), batch_size=BATCH, shuffle=True)
    return {"model": model, "optimizer": optimizer, "scheduler": scheduler, "loader": loader}


# -- the approaches, as each one's documentation shows --------------------------------------------------------


class Plain:
    """torch's own tutorial: state dicts and the place in one file; on resume, skip the batches already done."""

    def prepare(self, objects: dict[str, Any]) -> dict[str, Any]:
        return objects

    def save(self, objects: dict[str, Any], folder: str, epoch: int, batch: int) -> None:
        torch.save(
            {
                "model": objects["model"].state_dict(),
                "optimizer": objects["optimizer"].state_dict(),
                "scheduler": objects["scheduler"].state_dict(),
                "epoch": epoch,
                "batch": batch,
            },
            f"{folder}/plain.pt",
        )

    def load(self, objects: dict[str, Any], folder: str) -> tuple[int, int]:
        saved = torch.load(f"{folder}/plain.pt", weights_only=True)
        objects["model"].load_state_dict(saved["model"])
        objects["optimizer"].load_state_dict(saved["optimizer"])
        objects["scheduler"].load_state_dict(saved["scheduler"])
        return saved["epoch"], saved["batch"]

    def epoch_batches(self, objects: dict[str, Any], skip: int) -> Any:
        for index, batch in enumerate(objects["loader"]):
            if index >= skip:
                yield batch


class Accelerate:
    """accelerate's checkpointing guide: save_state / load_state, and skip_first_batches for the first epoch."""

    def prepare(self, objects: dict[str, Any]) -> dict[str, Any]:
        from accelerate import Accelerator

        self.accelerator = Accelerator(cpu=True)
        prepared = self.accelerator.prepare(
            objects["model"], objects["optimizer"], objects["loader"], objects["scheduler"]
        )
        return dict(zip(("model", "optimizer", "loader", "scheduler"), prepared))

    def save(self, objects: dict[str, Any], folder: str, epoch: int, batch: int) -> None:
        self.accelerator.save_state(f"{folder}/accelerate")
        with open(f"{folder}/accelerate/place.json", "w") as file:
            json.dump({"epoch": epoch, "batch": batch}, file)

    def load(self, objects: dict[str, Any], folder: str) -> tuple[int, int]:
        self.accelerator.load_state(f"{folder}/accelerate")
        with open(f"{folder}/accelerate/place.json") as file:
            place = json.load(file)
        return place["epoch"], place["batch"]

    def epoch_batches(self, objects: dict[str, Any], skip: int) -> Any:
        if skip:
            return self.accelerator.skip_first_batches(objects["loader"], skip)
        return objects["loader"]


class Fabric:
    """Lightning Fabric's checkpoint guide: fabric.save / fabric.load of a state dict with the iteration."""

    def prepare(self, objects: dict[str, Any]) -> dict[str, Any]:
        from lightning_fabric import Fabric as LightningFabric

        self.fabric = LightningFabric(accelerator="cpu", devices=1)
        model, optimizer = self.fabric.setup(objects["model"], objects["optimizer"])
        loader = self.fabric.setup_dataloaders(objects["loader"])
        return {"model": model, "optimizer": optimizer, "scheduler": objects["scheduler"], "loader": loader}

    def save(self, objects: dict[str, Any], folder: str, epoch: int, batch: int) -> None:
        state = {name: objects[name] for name in ("model", "optimizer", "scheduler")}
        self.fabric.save(f"{folder}/fabric.ckpt", {**state, "epoch": epoch, "iteration": batch})

    def load(self, objects: dict[str, Any], folder: str) -> tuple[int, int]:
        state = {name: objects[name] for name in ("model", "optimizer", "scheduler")}
        remainder = self.fabric.load(f"{folder}/fabric.ckpt", state)
        return remainder["epoch"], remainder["iteration"]

    def epoch_batches(self, objects: dict[str, Any], skip: int) -> Any:
        for iteration, batch in enumerate(objects["loader"]):
            if iteration >= skip:
                yield batch


class Ipyrepro:
    """docs/resume.md: a resumable loader, save_checkpoint / load_checkpoint; the loader knows its place."""

    def prepare(self, objects: dict[str, Any]) -> dict[str, Any]:
        import ipyrepro

        return {**objects, "loader": ipyrepro.resumable(objects["loader"])}

    def save(self, objects: dict[str, Any], folder: str, epoch: int, batch: int) -> None:
        import ipyrepro

        ipyrepro.save_checkpoint(f"{folder}/ipyrepro.pt", **objects)

    def load(self, objects: dict[str, Any], folder: str) -> tuple[int, int]:
        import ipyrepro

        ipyrepro.load_checkpoint(f"{folder}/ipyrepro.pt", **objects)
        return objects["loader"].epoch, 0

    def epoch_batches(self, objects: dict[str, Any], skip: int) -> Any:
        return objects["loader"]


APPROACHES = {"plain": Plain, "accelerate": Accelerate, "fabric": Fabric, "ipyrepro": Ipyrepro}
PACKAGES = {"accelerate": "accelerate", "fabric": "lightning_fabric", "ipyrepro": "ipyrepro"}
LABELS = {"plain": "plain torch", "accelerate": "HF accelerate", "fabric": "Lightning Fabric", "ipyrepro": "ipyrepro"}


# -- one phase in this process --------------------------------------------------------------------------------


def _seed(seed: int) -> None:
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed)


def _train(approach: Any, objects: dict[str, Any], folder: str, start: tuple[int, int], stop: int | None) -> int:
    """The training loop every approach shares; returns the steps taken. Saves and returns after `stop` steps."""
    model, optimizer, scheduler = objects["model"], objects["optimizer"], objects["scheduler"]
    steps = 0
    first_epoch, skip = start
    for epoch in range(first_epoch, EPOCHS):
        for index, (x, y) in enumerate(approach.epoch_batches(objects, skip if epoch == first_epoch else 0)):
            model.train()
            loss = torch.nn.functional.mse_loss(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
            steps += 1
            if stop is not None and steps == stop:
                approach.save(objects, folder, epoch, index + 1)
                return steps
    return steps


def _weights(objects: dict[str, Any]) -> dict[str, torch.Tensor]:
    return {name: value.detach().clone() for name, value in objects["model"].state_dict().items()}


def phase(name: str, which: str, folder: str) -> None:
    """`first`: the whole run, then the run stopped at STOP with a save; `resume`: load in this fresh process."""
    approach = APPROACHES[which]()
    if name == "first":
        _seed(0)
        objects = approach.prepare(build())
        steps = _train(approach, objects, folder, (0, 0), None)
        torch.save({"weights": _weights(objects), "steps": steps}, f"{folder}/{which}-full.pt")
        _seed(0)
        objects = approach.prepare(build())
        stopped = _train(approach, objects, folder, (0, 0), STOP)
        torch.save({"steps": stopped}, f"{folder}/{which}-stopped.pt")
        return
    _seed(12345)  # a restarted kernel: other RNG states, other fresh weights
    objects = approach.prepare(build())
    try:
        place = approach.load(objects, folder)
        steps = _train(approach, objects, folder, place, None)
        error = None
    except Exception as failure:  # e.g. OneCycleLR stepped past its total: the resume went wrong
        steps, error = -1, f"{type(failure).__name__}: {failure}"[:200]
    stopped = torch.load(f"{folder}/{which}-stopped.pt", weights_only=True)["steps"]
    torch.save(
        {"weights": _weights(objects), "steps": stopped + steps if steps >= 0 else None, "error": error},
        f"{folder}/{which}-resumed.pt",
    )


# -- the comparison -------------------------------------------------------------------------------------------


def lines_of_code(cls: type) -> int:
    """Non-blank, non-comment lines in the bodies of prepare/save/load/epoch_batches (not docstrings);
    a body that only returns an argument counts 0."""
    total = 0
    for method in ("prepare", "save", "load", "epoch_batches"):
        source = textwrap.dedent(inspect.getsource(getattr(cls, method)))
        function = ast.parse(source).body[0]
        body = [
            node for node in function.body if not isinstance(node, ast.Expr) or not isinstance(node.value, ast.Constant)
        ]
        arguments = {argument.arg for argument in function.args.args}
        returned = body[0].value if len(body) == 1 and isinstance(body[0], ast.Return) else None
        if isinstance(returned, ast.Name) and returned.id in arguments:
            continue
        lines = source.splitlines()
        for node in body:
            for line in lines[node.lineno - 1 : node.end_lineno]:
                if line.strip() and not line.strip().startswith("#"):
                    total += 1
    return total


def _run_phase(name: str, chosen: list[str], folder: str) -> None:
    done = subprocess.run(
        [sys.executable, __file__, "--phase", name, "--approaches", ",".join(chosen), "--folder", folder],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"the {name} phase failed:\n{done.stderr[-3000:]}")


def compare(chosen: list[str]) -> list[dict[str, Any]]:
    """Both phases for every chosen approach, in two processes; a row per approach."""
    with tempfile.TemporaryDirectory(prefix="ipyrepro-bench-resume-") as folder:
        _run_phase("first", chosen, folder)
        _run_phase("resume", chosen, folder)
        return [_row(which, folder) for which in chosen]


def _row(which: str, folder: str) -> dict[str, Any]:
    full = torch.load(f"{folder}/{which}-full.pt", weights_only=True)
    resumed = torch.load(f"{folder}/{which}-resumed.pt", weights_only=True)
    difference = max((full["weights"][n] - resumed["weights"][n]).abs().max().item() for n in full["weights"])
    exact = resumed["error"] is None and all(
        torch.equal(full["weights"][n], resumed["weights"][n]) for n in full["weights"]
    )
    return {
        "approach": LABELS[which],
        "exact": exact,
        "max_weight_difference": difference,
        "steps_uninterrupted": full["steps"],
        "steps_resumed": resumed["steps"],
        "error": resumed["error"],
        "lines_of_code": lines_of_code(APPROACHES[which]),
    }


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| approach | exact | largest weight difference | steps (uninterrupted / resumed) | lines of code |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        steps = (
            f"{row['steps_uninterrupted']} / {row['steps_resumed'] if row['steps_resumed'] is not None else 'failed'}"
        )
        exact = "yes" if row["exact"] else "no"
        lines.append(
            f"| {row['approach']} | {exact} | {row['max_weight_difference']:.2g} | {steps} | {row['lines_of_code']} |"
        )
    errors = [f"{row['approach']}: {row['error']}" for row in rows if row["error"]]
    return "\n".join(lines + errors)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--approaches", default=",".join(APPROACHES), help="which to compare (default: all)")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON instead of a table")
    parser.add_argument("--phase", choices=["first", "resume"], help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    args = parser.parse_args()
    chosen = [name.strip() for name in args.approaches.split(",") if name.strip()]
    if args.phase:
        for which in chosen:
            phase(args.phase, which, args.folder)
        return
    import importlib.util

    available = []
    for which in chosen:
        package = PACKAGES.get(which)
        if package is not None and importlib.util.find_spec(package) is None:
            print(f"skipped {which}: {package} is not installed (pip install 'ipyrepro[bench]')", file=sys.stderr)
            continue
        available.append(which)
    started = time.perf_counter()
    rows = compare(available)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(table(rows))
        print(f"({time.perf_counter() - started:.0f} s, two processes)")


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
