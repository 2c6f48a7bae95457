"""Digests of tensors as they are stored, at hashing speed and in bounded memory.

A contiguous CPU tensor is hashed straight from its memory (a zero-copy byte view: no copy, no per-element
Python). A view whose elements overlap (an `expand`, a stride-0 broadcast) is digested as stored: its storage
bytes with its size, stride and offset, never materialised. Any other non-contiguous view is hashed in logical
order in chunks of at most `CHUNK` bytes, so it digests like its contiguous copy without making one; tensors on
an accelerator reach the host in chunks of the same size. Sparse, quantized, meta and lazy (uninitialised)
tensors get a record of what they are. Everything runs with `__torch_function__` disabled, so a tensor
subclass's overrides never run; a subclass with its own `__torch_dispatch__` is not read at all.
"""

from __future__ import annotations

from typing import Any

import xxhash

CHUNK = 64 << 20  # bytes per host copy or per contiguous chunk of a non-contiguous view
SAMPLE_BYTES = 64 << 10  # bytes from each end of an over-budget tensor that go into its summary


class NotReadable(Exception):
    """The tensor's data cannot be read without running code it overrides (a `__torch_dispatch__` subclass)."""


def _hasher(header: str) -> xxhash.xxh3_128:
    hasher = xxhash.xxh3_128()
    hasher.update(header.encode() + b"\0")
    return hasher


def no_torch_function() -> Any:
    """The context in which a tensor subclass's `__torch_function__` does not run."""
    import torch

    return torch._C.DisableTorchFunctionSubclass()


def dispatch_subclass(tensor: Any) -> bool:
    """Whether the tensor's class brings its own `__torch_dispatch__` (DTensor, fake and functional tensors)."""
    import torch

    own = getattr(type(tensor), "__torch_dispatch__", None)
    base = torch.Tensor.__torch_dispatch__
    return own is not None and getattr(own, "__func__", own) is not getattr(base, "__func__", base)


def is_lazy(tensor: Any) -> bool:
    """An uninitialised parameter or buffer (`torch.nn.LazyLinear` before its first call)."""
    import torch

    return issubclass(type(tensor), torch.nn.parameter.UninitializedTensorMixin)


def storage_span(tensor: Any) -> int:
    """Elements of storage the view reaches, from its offset: at most numel unless elements overlap."""
    if tensor.numel() == 0:
        return 0
    return 1 + sum((size - 1) * stride for size, stride in zip(tensor.shape, tensor.stride()) if size > 1)


def overlapping(tensor: Any) -> bool:
    return storage_span(tensor) < tensor.numel()


def hashed_bytes(tensor: Any) -> int:
    """The bytes a digest of `tensor` reads: its stored span for an overlapping view, else its logical size."""
    import torch

    with no_torch_function():
        if dispatch_subclass(tensor) or is_lazy(tensor) or tensor.device.type == "meta":
            return 0
        if tensor.layout != torch.strided:
            return sum(part.numel() * part.element_size() for _, part in _sparse_parts(tensor))
        elements = storage_span(tensor) if overlapping(tensor) else tensor.numel()
        return elements * tensor.element_size()


def tensor_digest(tensor: Any) -> str:
    """xxh3-128 of dtype, shape and the exact bytes (as stored for overlapping views, sparse and quantized
    tensors; a header only for meta and lazy tensors)."""
    with no_torch_function():
        if dispatch_subclass(tensor):
            raise NotReadable(f"{type(tensor).__qualname__} overrides __torch_dispatch__: its data is not read")
        return _digest(tensor if is_lazy(tensor) else tensor.detach())


def _digest(tensor: Any) -> str:
    import torch

    if is_lazy(tensor):
        return f"xxh3_128:{_hasher(f'tensor-uninitialised:{tensor.dtype}:{tensor.device.type}').hexdigest()}"
    shape = list(tensor.shape)
    if tensor.device.type == "meta":
        return f"xxh3_128:{_hasher(f'tensor-meta:{tensor.dtype}:{shape}').hexdigest()}"
    if tensor.layout != torch.strided:
        hasher = _hasher(f"tensor-{tensor.layout}:{tensor.dtype}:{shape}")
        for name, part in _sparse_parts(tensor):
            hasher.update(f"{name}:{part.dtype}:{list(part.shape)}".encode() + b"\0")
            _update(hasher, part)
        return f"xxh3_128:{hasher.hexdigest()}"
    if tensor.is_quantized:
        hasher = _hasher(f"tensor-quantized:{tensor.dtype}:{shape}:{tensor.qscheme()}")
        if tensor.qscheme() in (torch.per_tensor_affine, torch.per_tensor_symmetric):
            hasher.update(f"{tensor.q_scale().hex()}:{tensor.q_zero_point()}".encode())
        else:
            _update(hasher, tensor.q_per_channel_scales())
            _update(hasher, tensor.q_per_channel_zero_points())
        _update(hasher, tensor.int_repr())
        return f"xxh3_128:{hasher.hexdigest()}"
    if tensor.is_conj() or tensor.is_neg():
        tensor = tensor.resolve_conj().resolve_neg()
    if overlapping(tensor):
        header = f"tensor-stored:{tensor.dtype}:{shape}:{list(tensor.stride())}"
        hasher = _hasher(header)
        _update(hasher, tensor.as_strided((storage_span(tensor),), (1,)))
        return f"xxh3_128:{hasher.hexdigest()}"
    hasher = _hasher(f"tensor:{tensor.dtype}:{shape}")
    _update(hasher, tensor)
    return f"xxh3_128:{hasher.hexdigest()}"


def _sparse_parts(tensor: Any) -> list[tuple[str, Any]]:
    """The tensors a sparse tensor is stored as, as stored (not coalesced)."""
    import torch

    layout = tensor.layout
    if layout == torch.sparse_coo:
        return [("indices", tensor._indices()), ("values", tensor._values())]
    if layout in (torch.sparse_csr, torch.sparse_bsr):
        return [("crow", tensor.crow_indices()), ("col", tensor.col_indices()), ("values", tensor.values())]
    if layout in (torch.sparse_csc, torch.sparse_bsc):
        return [("ccol", tensor.ccol_indices()), ("row", tensor.row_indices()), ("values", tensor.values())]
    raise NotReadable(f"tensors of layout {layout} are not read")


def _update(hasher: xxhash.xxh3_128, tensor: Any) -> None:
    """Feed a non-overlapping tensor's bytes in logical order: straight from memory when contiguous on the CPU,
    else in chunks of at most CHUNK bytes."""
    if tensor.is_conj() or tensor.is_neg():
        tensor = tensor.resolve_conj().resolve_neg()
    if tensor.numel() == 0:
        return
    if tensor.is_contiguous() and tensor.device.type == "cpu":
        hasher.update(_bytes(tensor))
        return
    for chunk in _chunks(tensor):
        hasher.update(_bytes(chunk.contiguous().cpu()))


def _bytes(tensor: Any) -> Any:
    """A zero-copy byte view (NumPy's buffer) of a contiguous CPU tensor, whatever its dtype (bf16 included)."""
    import torch

    return tensor.reshape(-1).view(torch.uint8).numpy()


def _chunks(tensor: Any) -> Any:
    """Slices of `tensor` in logical order, each at most CHUNK bytes (or one row of the last dimension)."""
    if tensor.dim() == 0 or tensor.numel() * tensor.element_size() <= CHUNK:
        yield tensor
        return
    row = tensor[0].numel() * tensor.element_size()
    step = max(1, CHUNK // max(row, 1))
    for start in range(0, tensor.shape[0], step):
        part = tensor[start : start + step]
        if step == 1 and row > CHUNK:
            yield from _chunks(part[0])
        else:
            yield part


def tensor_sample(tensor: Any) -> str:
    """A digest of a few bytes from each end of an over-budget tensor's storage (its summary's sample)."""
    import torch

    with no_torch_function():
        if dispatch_subclass(tensor) or is_lazy(tensor) or tensor.device.type == "meta":
            return f"xxh3_128:{_hasher('no-sample').hexdigest()}"
        tensor = tensor.detach()
        if tensor.layout != torch.strided or tensor.is_quantized or tensor.numel() == 0:
            return f"xxh3_128:{_hasher('no-sample').hexdigest()}"
        hasher = _hasher("sample")
        flat = tensor.as_strided((storage_span(tensor),), (1,))
        count = max(1, SAMPLE_BYTES // tensor.element_size())
        _update(hasher, flat[:count])
        _update(hasher, flat[-count:])
        return f"xxh3_128:{hasher.hexdigest()}"
