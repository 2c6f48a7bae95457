"""Why torch's safe loader refused a file, in words that never advise the unsafe path.

`torch.load(weights_only=True)` refuses a pickle that would import or call something outside its allowlist,
and wraps the reason (`Unsupported class posix.system` in torch 2.1 to 2.3, `Unsupported global: GLOBAL
posix.system was not an allowed global by default` from 2.4, `Trying to load unsupported GLOBAL posix.system
whose module posix is blocked` in newer versions) in advice, varying by version, to load it with
`weights_only=False`, which would run that code. The reason is found by its structure: the sentence that
names an unpickler operation, with every sentence of advice around it dropped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
# the name of what the pickle would import or call, in each known wording
_BLOCKED = (
    re.compile(r"\bGLOBAL\s+([A-Za-z_][\w.]*)"),  # 2.4+: "GLOBAL posix.system was not...", "unsupported GLOBAL x"
    re.compile(r"\bUnsupported class\s+([A-Za-z_][\w.]*)"),  # 2.1 to 2.3
    re.compile(r"\bunrecognized function\s+(<[^>]*>|[A-Za-z_][\w.]*)"),  # a REDUCE of something not allowed
)
# sentences that are torch's advice around the reason, never the reason itself
_ADVICE = re.compile(
    r"weights_only|Re-running|trusted source|add_safe_globals|safe_globals|allowlist|Check the documentation|"
    r"file an issue|Weights only load failed|two options|recommended steps|In PyTorch \d",
    re.IGNORECASE,
)
_REASON = re.compile(r"GLOBAL|Unsupported|unsupported|unrecognized|Can only|persistent_load|String is too long")


@dataclass(frozen=True)
class Refusal:
    """What the safe loader refused: the reason in torch's words (advice removed) and the blocked name."""

    reason: str
    blocked: str | None


def is_refusal(error: BaseException) -> bool:
    """A weights-only refusal (an UnpicklingError from torch's safe unpickler), not a damaged file."""
    import pickle

    return isinstance(error, pickle.UnpicklingError) and bool(
        re.search(r"weights.only|WeightsUnpickler|GLOBAL|Unsupported", str(error), re.IGNORECASE)
    )


def parse_refusal(message: str) -> Refusal:
    """The reason and the blocked global in a weights-only refusal message of any torch from 2.1."""
    text = _ANSI.sub("", message)
    if "WeightsUnpickler error:" in text:  # 2.1 to 2.12: the unpickler's own message follows this label
        text = text.rsplit("WeightsUnpickler error:", 1)[1]
    sentences = [part.strip() for part in re.split(r"(?<=[.!?])\s+|\n+", text) if part.strip()]
    reasons = [s for s in sentences if _REASON.search(s) and not _ADVICE.search(s)]
    reason = reasons[0] if reasons else next((s for s in sentences if not _ADVICE.search(s)), "")
    blocked = next((match.group(1) for pattern in _BLOCKED if (match := pattern.search(text))), None)
    if blocked is not None:
        blocked = blocked.rstrip(".")
    return Refusal(reason=reason.strip()[:300], blocked=blocked)


def refusal_message(path: object, message: str) -> str:
    """The CheckpointError text for a refused file: the file, what it would run, why, and the safe fix."""
    refusal = parse_refusal(message)
    if refusal.blocked is not None:
        what = (
            f"it holds objects other than tensors and plain values: loading it would import or call "
            f"{refusal.blocked}, which torch's safe loader blocks"
        )
    else:
        what = "it holds objects other than tensors and plain values, which torch's safe loader refuses"
    said = f" (torch: {refusal.reason.rstrip('.')})" if refusal.reason else ""
    return (
        f"Cannot read the checkpoint {path}: {what}{said}. It was not written by ipyrepro.save_checkpoint, or was "
        "changed since. Nothing was changed. Fix: do not load a file you cannot trust; load an earlier checkpoint, "
        "or save a new one."
    )
