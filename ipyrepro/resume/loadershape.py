"""What a loader's place depends on: its batch size, dataset length, sampler, drop_last and workers.

A place (epoch 1, 20 batches consumed, these indices) only means the same thing to a loader built the
same way: with another batch size the rest of the epoch is other batches, with a shorter dataset the saved
indices run past its end, with other workers the saved worker states cannot be mapped. The checkpoint
records this shape, and a load compares it, naming each difference, before anything is changed.
"""

from __future__ import annotations

from typing import Any

import xxhash

# field -> (how it reads in a message, how the fix names the saved value)
FIELDS: dict[str, tuple[str, str]] = {
    "batch_size": ("batch size", "batch_size={!r}"),
    "dataset_length": ("dataset length", "a dataset of {!r} samples"),
    "sampler": ("sampler", "a {} sampler"),
    "drop_last": ("drop_last", "drop_last={!r}"),
    "num_workers": ("num_workers", "num_workers={!r}"),
    "persistent_workers": ("persistent_workers", "persistent_workers={!r}"),
    "index_space": ("dataset indices", "the same dataset indices (the same Subset, sampler indices or weights)"),
}


def _kind(obj: Any) -> str:
    return type(obj).__qualname__


def _length(dataset: Any) -> int | None:
    try:
        return len(dataset)
    except TypeError:
        return None


def loader_shape(loader: Any) -> dict[str, Any]:
    """The settings a place depends on, read from a DataLoader's attributes (nothing is loaded)."""
    batch_sampler = getattr(loader, "batch_sampler", None)
    sampler = getattr(loader, "sampler", None)
    kind = _kind(sampler)
    if batch_sampler is not None and _kind(batch_sampler) != "BatchSampler":
        kind = f"{_kind(batch_sampler)} over {kind}"
    return {
        "batch_size": getattr(loader, "batch_size", None),
        "dataset_length": _length(loader.dataset),
        "sampler": kind,
        "drop_last": bool(getattr(loader, "drop_last", False)),
        "num_workers": int(getattr(loader, "num_workers", 0)),
        "persistent_workers": bool(getattr(loader, "persistent_workers", False)),
        "index_space": index_fingerprint(loader),
    }


def index_fingerprint(loader: Any) -> str:
    """A cheap digest of which indices the loader can draw: the dataset's kind and length, a Subset's
    indices, a sampler's own indices, weights or replica split. Never reads a sample."""
    hasher = xxhash.xxh3_64()
    dataset = loader.dataset
    hasher.update(f"{_kind(dataset)}:{_length(dataset)}|".encode())
    indices = getattr(dataset, "indices", None)  # torch.utils.data.Subset
    if indices is not None:
        _feed(hasher, indices)
    sampler = getattr(loader, "sampler", None)
    for name in ("indices", "weights", "num_samples", "replacement", "num_replicas", "rank", "shuffle", "seed"):
        value = getattr(sampler, name, None)
        if value is not None:
            hasher.update(f"{name}=".encode())
            _feed(hasher, value)
    return hasher.hexdigest()


def _feed(hasher: Any, value: Any) -> None:
    import numpy as np
    import torch

    if isinstance(value, torch.Tensor):
        hasher.update(value.detach().cpu().contiguous().numpy().tobytes())
    elif isinstance(value, (list, tuple, range)):
        try:  # a million indices in milliseconds, where their repr would take a tenth of a second
            hasher.update(np.asarray(value, dtype=np.float64).tobytes())
        except (TypeError, ValueError):
            hasher.update(repr(list(value)).encode())
    else:
        hasher.update(repr(value).encode())
    hasher.update(b"|")


def shape_differences(saved: dict[str, Any] | None, current: dict[str, Any]) -> list[str]:
    """The fields that differ, in FIELDS' order; none for a place saved before shapes were recorded."""
    if not isinstance(saved, dict):
        return []
    return [name for name in FIELDS if name in saved and saved[name] != current.get(name)]


def describe_differences(saved: dict[str, Any], current: dict[str, Any], fields: list[str]) -> str:
    """'batch size 32 at the save, 64 now; dataset length 2000 at the save, 1500 now'."""
    parts = []
    for name in fields:
        label = FIELDS[name][0]
        if name == "index_space":
            parts.append(f"{label} differ (another Subset, sampler indices or weights)")
        else:
            parts.append(f"{label} {saved[name]} at the save, {current.get(name)} now")
    return "; ".join(parts)


def fix_text(saved: dict[str, Any], fields: list[str]) -> str:
    """How to build the loader the saved run had: 'batch_size=32, a dataset of 2000 samples'."""
    return ", ".join(FIELDS[name][1].format(saved[name]) for name in fields)
