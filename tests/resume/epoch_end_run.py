"""One phase of the docs' training loop in its own process, saving on an epoch's last batch.

python -m tests.resume.epoch_end_run PHASE STOP_EPOCH FOLDER, PHASE one of:
  full    run the loop to its end; write FOLDER/full.pt (the weights and the steps taken)
  stop    run it, saving on every epoch's last batch (`loader.batches % 5 == 0`), and exit after the save
          at the end of epoch STOP_EPOCH
  resume  a fresh process seeded otherwise: fresh objects, load_checkpoint, the same loop; FOLDER/resume.pt
"""

from __future__ import annotations

import random
import sys

import numpy as np
import torch

import ipyrepro
from tests.resume.training import build_objects, step

EPOCHS, EVERY = 3, 5  # 40 samples in batches of 8: 5 batches an epoch, so every save falls on an epoch's last batch


def main(phase: str, stop_epoch: int, folder: str) -> None:
    seed = 999 if phase == "resume" else 0  # a restarted process starts from other states
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed)
    objects = build_objects(0)
    objects["loader"] = loader = ipyrepro.resumable(objects["loader"])
    checkpoint = f"{folder}/checkpoint.pt"
    steps = 0
    if phase == "resume":
        ipyrepro.load_checkpoint(checkpoint, **objects)
        steps = torch.load(f"{folder}/stop.pt", weights_only=True)["steps"]
    for epoch in range(loader.epoch, EPOCHS):
        for batch in loader:
            step(objects, batch)
            steps += 1
            if phase == "stop" and loader.batches % EVERY == 0:
                ipyrepro.save_checkpoint(checkpoint, **objects)
                if epoch == stop_epoch:
                    torch.save({"steps": steps}, f"{folder}/stop.pt")
                    return
    torch.save({"steps": steps, "model": objects["model"].state_dict()}, f"{folder}/{phase}.pt")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3])
