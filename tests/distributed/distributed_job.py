"""A small DDP training job run by the multi-process tests, in real processes with real gloo groups.

Importable (for `torch.multiprocessing.start_processes`: `run(index, ...)`) and a
script (for `python -m torch.distributed.run`: `distributed_job.py OUT_DIR LABEL MODE`).
Each rank writes `OUT_DIR/LABEL-rank<r>.json`: the draws it inherited, its
per-rank draws, the final parameters' digests, and two `check_in_sync` reports.
Modes: `ipyrepro` (enable() from the exported settings, seed_rank() after building
the model) or `none` (no seeding at all).
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler

STEPS = 20


class Augmented(Dataset):
    """Fixed inputs with random augmentations drawn from Python, NumPy and torch."""

    def __init__(self, n: int = 64) -> None:
        generator = torch.Generator().manual_seed(1234)
        self.x = torch.randn(n, 8, generator=generator)
        self.y = self.x.sum(1, keepdim=True).sin()

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        scale = 1 + 0.1 * float(np.random.randn()) + random.uniform(-0.05, 0.05)
        return self.x[index] * scale + 0.05 * torch.randn(8), self.y[index]


def draws() -> list[float]:
    """One draw from each generator that augmentations use."""
    return [random.random(), float(np.random.rand()), torch.rand(1).item()]


def train(rank: int, world_size: int, out_dir: str, label: str, mode: str) -> None:
    """Runs inside an initialised process group; writes this rank's results."""
    import ipyrepro
    from ipyrepro.comparison.digests import tensor_digest
    from ipyrepro.distributed import check_in_sync

    inherited = draws()  # before any seeding: what the process started with (fork: the parent's state)
    if mode == "ipyrepro":
        ipyrepro.enable()  # seed, re-seed mode, deterministic setting: exported by the parent's `%repro on`
    model = torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.ReLU(), torch.nn.Dropout(0.2), torch.nn.Linear(32, 1))
    ddp = DistributedDataParallel(model)
    rank_seed = ipyrepro.seed_rank() if mode == "ipyrepro" else None  # data order, augmentation, dropout
    per_rank = draws()
    dataset = Augmented()
    sampler = DistributedSampler(dataset, shuffle=True)
    loader = DataLoader(dataset, batch_size=8, sampler=sampler)
    optimizer = torch.optim.SGD(ddp.parameters(), lr=0.05, momentum=0.9)
    step, epoch = 0, 0
    while step < STEPS:
        sampler.set_epoch(epoch)
        for x, y in loader:
            optimizer.zero_grad()
            torch.nn.functional.mse_loss(ddp(x), y).backward()
            optimizer.step()
            step += 1
            if step == STEPS:
                break
        epoch += 1
    in_sync = check_in_sync({"model": model, "optimizer": optimizer})
    digests = {name: tensor_digest(param) for name, param in model.state_dict().items()}
    if rank == 1:
        with torch.no_grad():
            model[3].weight.add_(torch.randn(model[3].weight.shape))  # unseeded: a planted divergence
    planted = check_in_sync(model)
    subgroup = None
    if world_size >= 4:
        pair = dist.new_group([0, 1])  # a collective: every rank creates it, only ranks 0 and 1 check in it
        if rank in (0, 1):
            subgroup = check_in_sync(model, group=pair).differences
    result: dict[str, Any] = {
        "rank": rank,
        "world_size": world_size,
        "pid": os.getpid(),
        "seed_env": os.environ.get("IPYREPRO_SEED"),
        "rank_seed": rank_seed,
        "inherited": inherited,
        "per_rank": per_rank,
        "digests": digests,
        "in_sync_ok": in_sync.ok,
        "in_sync_entries": len(in_sync.entries),
        "planted_ok": planted.ok,
        "planted_differences": planted.differences,
        "planted_text": str(planted),
        "subgroup_differences": subgroup,
    }
    path = Path(out_dir) / f"{label}-rank{rank}.json"
    path.with_suffix(".tmp").write_text(json.dumps(result))
    path.with_suffix(".tmp").rename(path)


def run(index: int, world_size: int, port: int, out_dir: str, label: str, mode: str) -> None:
    """The entry point for torch.multiprocessing: one rank, its process group, always torn down."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=index, world_size=world_size)
    try:
        train(index, world_size, out_dir, label, mode)
    finally:
        dist.barrier()  # no rank tears down gloo while a peer still talks to it
        dist.destroy_process_group()


def launch(nprocs: int, start_method: str, out_dir: str, label: str, mode: str, timeout: float = 120) -> float:
    """Start `nprocs` ranks with torch.multiprocessing and wait for all of them, within `timeout` seconds.

    On a timeout or a failed rank every rank is killed and the error is raised. Returns the seconds taken.
    """
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    start = time.monotonic()
    context = mp.start_processes(
        run, args=(nprocs, port, out_dir, label, mode), nprocs=nprocs, join=False, start_method=start_method
    )
    try:
        while not context.join(timeout=1):
            if time.monotonic() - start > timeout:
                raise TimeoutError(f"{label}: ranks still running after {timeout} s")
    finally:
        for process in context.processes:
            if process.is_alive():
                process.kill()
            process.join(5)
    return time.monotonic() - start


def main() -> None:
    """Under torchrun: RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT come from the launcher."""
    out_dir, label, mode = sys.argv[1:4]
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    try:
        train(dist.get_rank(), dist.get_world_size(), out_dir, label, mode)
    finally:
        dist.barrier()  # no rank tears down gloo while a peer still talks to it
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
