"""One digest over a nested structure of tensors and plain values, its structure (order, containers) included:
a checkpoint's integrity check, and verify_resume's comparison of states (equal digests: bitwise equal
tensors, equal values). Each tensor's bytes go through comparison.digests, the one tensor digest."""

from __future__ import annotations

from typing import Any

import torch
import xxhash

from ..comparison.digests import tensor_digest


def digest(value: Any) -> str:
    hasher = xxhash.xxh3_128()
    _feed(hasher, value)
    return hasher.hexdigest()


def _feed(hasher: Any, value: Any) -> None:
    if isinstance(value, torch.Tensor):
        hasher.update(b"T" + tensor_digest(value).encode() + b"|")
        return
    if isinstance(value, dict):
        hasher.update(f"D{len(value)}|".encode())
        for key, item in value.items():  # insertion order: a state dict's order is part of it
            _feed(hasher, key)
            _feed(hasher, item)
        return
    if isinstance(value, (list, tuple)):
        hasher.update(f"{'L' if isinstance(value, list) else 'U'}{len(value)}|".encode())
        for item in value:
            _feed(hasher, item)
        return
    if isinstance(value, (bytes, bytearray)):
        hasher.update(b"B%d|" % len(value))
        hasher.update(bytes(value))
        return
    hasher.update(f"{type(value).__name__}:{value!r}|".encode("utf-8", "surrogatepass"))
