"""One digest over a nested structure of tensors and plain values: a checkpoint's integrity check, and
verify_resume's comparison of states (equal digests: bitwise equal tensors, equal values)."""

from __future__ import annotations

from typing import Any

import torch
import xxhash


def digest(value: Any) -> str:
    hasher = xxhash.xxh3_128()
    _feed(hasher, value)
    return hasher.hexdigest()


def _feed(hasher: Any, value: Any) -> None:
    if isinstance(value, torch.Tensor):
        tensor = value.detach()
        hasher.update(f"T{tensor.dtype}{tuple(tensor.shape)}|".encode())
        if tensor.numel():
            if tensor.layout != torch.strided or tensor.is_quantized:
                tensor = tensor.dequantize() if tensor.is_quantized else tensor.to_dense()
            flat = tensor.cpu().contiguous().reshape(-1)
            hasher.update(flat.view(torch.uint8).numpy().tobytes())  # the bits: -0.0 and NaN payloads count
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
