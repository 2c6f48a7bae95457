"""A small training setup for the resume tests: a model with dropout, a shuffling DataLoader over a dataset
that draws random augmentations (torch, Python and NumPy RNGs) in whichever process loads it.

Top-level functions, importable as tests.resume.training, so verify_resume(fresh_process=True) and the
fresh-process scripts can import them by name.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

import ipyrepro


class AugmentedData(Dataset):
    """40 samples; each fetch adds noise from torch's, Python's and NumPy's RNGs of the loading process."""

    def __init__(self, size: int = 40) -> None:
        generator = torch.Generator().manual_seed(1234)
        self.x = torch.randn(size, 6, generator=generator)
        self.y = torch.randn(size, 1, generator=generator)
        self.fetched: list[int] = []  # indices loaded in this process (num_workers=0)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        self.fetched.append(index)
        noise = 0.1 * torch.randn(6) + 0.01 * random.random() + 0.01 * float(np.random.rand())
        return self.x[index] + noise, self.y[index]


ROOT = Path(__file__).resolve().parents[2]


def repo_env() -> dict[str, str]:
    """The environment of a child Python that imports this checkout's ipyrepro and tests."""
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))


def run_phase(module: str, *args: object) -> None:
    """`python -m tests.resume.<module> ARGS` in a fresh process, as a user's next session; fails with its stderr."""
    done = subprocess.run(
        [sys.executable, "-m", f"tests.resume.{module}", *map(str, args)],
        cwd=ROOT,
        env=repo_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr


def make_model() -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Linear(6, 32), torch.nn.ReLU(), torch.nn.Dropout(0.3), torch.nn.Linear(32, 1))


def build_objects(num_workers: int = 0, **loader_options: Any) -> dict[str, Any]:
    """Fresh objects, drawn from the RNGs as they are (a restarted process would draw other weights)."""
    model = make_model()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=5, gamma=0.5)
    options = {"batch_size": 8, "shuffle": True, "num_workers": num_workers, **loader_options}
    return {
        "model": model,
        "optimizer": optimizer,
        "scheduler": scheduler,
        "loader": DataLoader(AugmentedData(), **options),
    }


def build() -> dict[str, Any]:
    return build_objects(0)


def build_workers() -> dict[str, Any]:
    return build_objects(2)


def step(objects: dict[str, Any], batch: Any) -> None:
    x, y = batch
    model, optimizer = objects["model"], objects["optimizer"]
    model.train()
    loss = torch.nn.functional.mse_loss(model(x), y)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    objects["scheduler"].step()


def save_model_and_optimizer(objects: dict[str, Any], path: str) -> None:
    """The checkpoint code users write first: weights and optimizer only."""
    torch.save(
        {
            "model": objects["model"].state_dict(),
            "optimizer": objects["optimizer"].state_dict(),
            "scheduler": objects["scheduler"].state_dict(),
        },
        path,
    )


def load_model_and_optimizer(objects: dict[str, Any], path: str) -> None:
    saved = torch.load(path, weights_only=True)
    objects["model"].load_state_dict(saved["model"])
    objects["optimizer"].load_state_dict(saved["optimizer"])
    objects["scheduler"].load_state_dict(saved["scheduler"])


def save_without_loader(objects: dict[str, Any], path: str) -> None:
    """Every RNG and state dict, but not the loader's place."""
    ipyrepro.save_checkpoint(
        path, model=objects["model"], optimizer=objects["optimizer"], scheduler=objects["scheduler"]
    )


def load_without_loader(objects: dict[str, Any], path: str) -> None:
    ipyrepro.load_checkpoint(
        path, model=objects["model"], optimizer=objects["optimizer"], scheduler=objects["scheduler"]
    )
