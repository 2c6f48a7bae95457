"""PNG to NumPy and back, with zlib only: the HTML check report compares images pixel by pixel.

Pillow is no dependency of ipyrepro, and notebooks' images (matplotlib, IPython.display.Image) are
plain 8- or 16-bit non-interlaced PNGs, which this module reads; anything else raises PngError,
and the report then shows the images without a heat map.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

SIGNATURE = b"\x89PNG\r\n\x1a\n"
CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # colour type -> samples per pixel
MAX_PIXELS = 50_000_000  # a larger image is refused rather than decoded


class PngError(ValueError):
    """The bytes are not a PNG this module reads; the message says why."""


def decode_png(data: bytes) -> np.ndarray:
    """The image as an (height, width, 4) uint8 RGBA array."""
    if not data.startswith(SIGNATURE):
        raise PngError("not a PNG (bad signature)")
    header, palette, alpha, compressed = None, None, None, []
    position = len(SIGNATURE)
    while position + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[position : position + 8])
        body = data[position + 8 : position + 8 + length]
        position += 12 + length
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"PLTE":
            palette = np.frombuffer(body, np.uint8).reshape(-1, 3)
        elif kind == b"tRNS":
            alpha = np.frombuffer(body, np.uint8)
        elif kind == b"IDAT":
            compressed.append(body)
        elif kind == b"IEND":
            break
    if header is None:
        raise PngError("no IHDR chunk")
    width, height, depth, colour, _, _, interlace = header
    if colour not in CHANNELS or depth not in (8, 16) or interlace:
        raise PngError(f"unsupported PNG (colour type {colour}, bit depth {depth}, interlace {interlace})")
    if width * height > MAX_PIXELS:
        raise PngError(f"image too large ({width}x{height})")
    samples = CHANNELS[colour]
    stride = width * samples * depth // 8
    try:
        raw = zlib.decompress(b"".join(compressed))
    except zlib.error as error:
        raise PngError(f"corrupt image data: {error}") from None
    if len(raw) != height * (stride + 1):
        raise PngError("image data has the wrong length")
    rows = _unfilter(raw, height, stride, max(1, samples * depth // 8))
    if depth == 16:
        rows = rows.reshape(height, width, samples, 2)[..., 0]  # the high byte is enough to look at
    pixels = rows.reshape(height, width, samples)
    return _to_rgba(pixels, colour, palette, alpha)


def _unfilter(raw: bytes, height: int, stride: int, bpp: int) -> np.ndarray:
    """Undo PNG's per-row filters (None, Sub, Up, Average, Paeth)."""
    out = np.zeros((height, stride), np.uint8)
    previous = np.zeros(stride, np.uint8)
    for y in range(height):
        start = y * (stride + 1)
        kind = raw[start]
        line = np.frombuffer(raw, np.uint8, stride, start + 1)
        if kind == 0:
            row = line.copy()
        elif kind == 2:
            row = line + previous
        elif kind == 1:
            padded = np.concatenate([np.zeros(bpp, np.uint8), line]).astype(np.int64)
            for offset in range(bpp):  # each byte adds the one bpp to its left: a cumulative sum per channel
                padded[offset::bpp] = np.cumsum(padded[offset::bpp]) % 256
            row = padded[bpp:].astype(np.uint8)
        elif kind in (3, 4):
            row = _sequential(line.tolist(), previous.tolist(), bpp, kind)
        else:
            raise PngError(f"unknown filter type {kind} in row {y}")
        out[y] = row
        previous = out[y]
    return out


def _sequential(line: list[int], above: list[int], bpp: int, kind: int) -> np.ndarray:
    row = [0] * len(line)
    for x, value in enumerate(line):
        left = row[x - bpp] if x >= bpp else 0
        up = above[x]
        if kind == 3:
            row[x] = (value + ((left + up) >> 1)) & 0xFF
        else:
            corner = above[x - bpp] if x >= bpp else 0
            estimate = left + up - corner
            pa, pb, pc = abs(estimate - left), abs(estimate - up), abs(estimate - corner)
            predictor = left if pa <= pb and pa <= pc else up if pb <= pc else corner
            row[x] = (value + predictor) & 0xFF
    return np.array(row, np.uint8)


def _to_rgba(pixels: np.ndarray, colour: int, palette: np.ndarray | None, alpha: np.ndarray | None) -> np.ndarray:
    height, width = pixels.shape[:2]
    rgba = np.full((height, width, 4), 255, np.uint8)
    if colour == 3:
        if palette is None:
            raise PngError("palette image without a PLTE chunk")
        index = pixels[..., 0]
        rgba[..., :3] = palette[np.minimum(index, len(palette) - 1)]
        if alpha is not None:
            table = np.full(256, 255, np.uint8)
            table[: len(alpha)] = alpha
            rgba[..., 3] = table[index]
    elif colour in (0, 4):
        rgba[..., :3] = pixels[..., :1]
        if colour == 4:
            rgba[..., 3] = pixels[..., 1]
    else:
        rgba[..., : pixels.shape[2]] = pixels
    return rgba


def encode_png(image: np.ndarray) -> bytes:
    """An (height, width, 3 or 4) uint8 array as PNG bytes (no filtering: small images, written once)."""
    image = np.ascontiguousarray(image, np.uint8)
    if image.ndim != 3 or image.shape[2] not in (3, 4):
        raise ValueError(f"expected an (height, width, 3 or 4) array; got shape {image.shape}")
    height, width, samples = image.shape
    rows = np.concatenate([np.zeros((height, 1), np.uint8), image.reshape(height, width * samples)], axis=1)

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 6 if samples == 4 else 2, 0, 0, 0)
    return SIGNATURE + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows.tobytes(), 6)) + chunk(b"IEND", b"")
