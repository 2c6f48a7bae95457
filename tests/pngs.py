"""PNGs filtered the slow, obvious way of the PNG specification, to check ipyrepro's decoders against."""

from __future__ import annotations

import struct
import zlib

import numpy as np


def filtered_png(image: np.ndarray, kinds: list[int]) -> bytes:
    """`image` (height, width, 3 or 4) as an 8-bit RGB or RGBA PNG whose rows use the filter types `kinds`
    in turn: what libpng and Pillow write, rows filtered one byte at a time."""
    height, width, bpp = image.shape
    rows, above = [], [0] * (width * bpp)
    for y in range(height):
        line, kind, out = image[y].reshape(-1).tolist(), kinds[y % len(kinds)], []
        for i, value in enumerate(line):
            left, up, corner = (line[i - bpp] if i >= bpp else 0), above[i], (above[i - bpp] if i >= bpp else 0)
            estimate = left + up - corner
            paeth = min(
                (abs(estimate - left), 0, left), (abs(estimate - up), 1, up), (abs(estimate - corner), 2, corner)
            )
            out.append((value - [0, left, up, (left + up) // 2, paeth[2]][kind]) % 256)
        rows.append(bytes([kind, *out]))
        above = line

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 6 if bpp == 4 else 2, 0, 0, 0)
    idat = zlib.compress(b"".join(rows))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
