"""Argument types shared by the faces (`%repro`, `%%repro`, the CLI): one wording for one mistake."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

from .validation import validate_seed


def seed(text: str) -> int:
    try:
        return validate_seed(int(text))
    except ValueError as error:
        raise argparse.ArgumentTypeError(
            f"invalid seed {text!r}: seeds are integers with 0 <= seed < 2**32 (4294967296)"
        ) from error


def _count(text: str, message: str) -> int:
    """An integer >= 1, or argparse's error with `message` (which says what the count is for)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(message)
    return value


def runs(text: str) -> int:
    return _count(text, f"invalid run count {text!r}: an integer >= 1 (2 or more to compare)")


def jobs(text: str) -> int:
    return _count(text, f"invalid job count {text!r}: an integer >= 1 (kernels running at once)")


def compared_runs(text: str) -> int:
    """`ipyrepro check --runs`: one run compares nothing, so it would check nothing."""
    value = runs(text)
    if value < 2:
        raise argparse.ArgumentTypeError(f"invalid run count {text!r}: 2 or more (one run has nothing to compare with)")
    return value


def _non_negative(what: str, example: str) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = -1.0
        if not math.isfinite(value) or value < 0:
            raise argparse.ArgumentTypeError(f"invalid {what} {text!r}: a finite number >= 0, e.g. {example}")
        return value

    parse.__name__ = what
    return parse


tolerance = _non_negative("tolerance", "1e-6")
timeout = _non_negative("timeout", "600 (seconds)")
