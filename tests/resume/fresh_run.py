"""One phase of a training run in its own process, for the fresh-process resume test.

python -m tests.resume.fresh_run PHASE NUM_WORKERS FOLDER, PHASE one of:
  full    train TOTAL steps without stopping; write FOLDER/full.pt (the weights)
  stop    train STOP steps (mid-epoch), save_checkpoint to FOLDER/checkpoint.pt, exit
  resume  a fresh process seeded otherwise: build fresh objects, load_checkpoint, train to TOTAL; FOLDER/resume.pt
"""

from __future__ import annotations

import random
import sys

import numpy as np
import torch

import ipyrepro
from tests.resume.training import build_objects, step

TOTAL, STOP = 17, 8  # 5 batches an epoch: the save falls in epoch 1, after its 3rd batch


def main(phase: str, workers: int, folder: str) -> None:
    seed = 999 if phase == "resume" else 0  # a restarted process starts from other states
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed)
    objects = build_objects(workers)
    objects["loader"] = loader = ipyrepro.resumable(objects["loader"])
    checkpoint = f"{folder}/checkpoint.pt"
    if phase == "resume":
        ipyrepro.load_checkpoint(checkpoint, **objects)
    done = loader.epoch * len(loader) + loader.batches
    while done < TOTAL:
        for batch in loader:
            step(objects, batch)
            done += 1
            if phase == "stop" and done == STOP:
                ipyrepro.save_checkpoint(checkpoint, **objects)
                return
            if done == TOTAL:
                break
    torch.save(objects["model"].state_dict(), f"{folder}/{phase}.pt")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3])
