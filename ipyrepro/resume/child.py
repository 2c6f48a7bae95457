"""verify_resume(fresh_process=True)'s other process: build fresh objects, load, snapshot, train the rest.

Run as `python -m ipyrepro.resume.child SPEC RESULT`; SPEC and RESULT are pickle files that verify_resume
itself wrote in its own temporary folder (never a user's file).
"""

from __future__ import annotations

import pickle
import sys

import torch


def main(spec_path: str, result_path: str) -> None:
    from .verify import resume_and_train

    with open(spec_path, "rb") as file:
        build, step, load, path, start, at, steps, flags = pickle.load(file)
    deterministic, warn_only, cudnn_deterministic, cudnn_benchmark = flags
    torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
    torch.backends.cudnn.deterministic = cudnn_deterministic
    torch.backends.cudnn.benchmark = cudnn_benchmark
    result = resume_and_train(build, step, load, path, start, at, steps)
    with open(result_path, "wb") as file:
        pickle.dump(result, file)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
