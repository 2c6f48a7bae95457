"""Resume where you stopped: checkpoints with every RNG state and the DataLoader's place, and a check
that a resumed run equals one that never stopped. See docs/resume.md."""

from __future__ import annotations

from .checkpoint import CheckpointError, LoadReport, load_checkpoint, save_checkpoint
from .loader import ResumableLoader, resumable
from .rngstate import RngRestore, rng_state, set_rng_state
from .verify import ResumeReport, verify_resume

__all__ = [
    "CheckpointError",
    "LoadReport",
    "ResumableLoader",
    "ResumeReport",
    "RngRestore",
    "load_checkpoint",
    "resumable",
    "rng_state",
    "save_checkpoint",
    "set_rng_state",
    "verify_resume",
]
