"""The two ways the HTML report undoes PNG row filters give the same pixels: Pillow's C decoder (when
installed) and the NumPy walk used without it, on images filtered as libpng and Pillow filter them."""

from __future__ import annotations

import io
import struct
import sys
import zlib

import numpy as np
import pytest

from ipyrepro.notebooks import png
from ipyrepro.notebooks.png import PngError, decode_png

PIL = pytest.importorskip("PIL.Image", reason="Pillow (ipyrepro[html]) is not installed")


def _filtered_png(image: np.ndarray, kinds: list[int]) -> bytes:
    """`image` (height, width, 3 or 4) as a PNG whose rows use the filter types `kinds` in turn, filtered
    the slow, obvious way of the PNG specification."""
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


def _without_pillow(monkeypatch: pytest.MonkeyPatch) -> None:
    """As on a machine without Pillow: `import PIL` fails."""
    monkeypatch.setitem(sys.modules, "PIL", None)


@pytest.mark.parametrize("channels", [3, 4])
@pytest.mark.parametrize("kinds", [[3], [4], [4, 3, 2, 1, 0], [3, 0, 4, 1]])
def test_pillow_and_numpy_undo_average_and_paeth_rows_alike(
    channels: int, kinds: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    image = np.random.default_rng(7).integers(0, 256, (11, 17, channels), dtype=np.uint8)
    data = _filtered_png(image, kinds)
    with_pillow = decode_png(data)
    _without_pillow(monkeypatch)
    with_numpy = decode_png(data)
    assert (with_pillow[..., :channels] == image).all()
    assert (with_pillow == with_numpy).all()


def test_an_image_pillow_saved_itself_decodes_to_its_pixels_either_way(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pillow picks each row's filter as Matplotlib's PNGs do; both decoders read the file back exactly."""
    y, x = np.mgrid[0:120, 0:160]
    image = np.stack([x * 255 // 160, y * 255 // 120, (x + y) % 256, np.full_like(x, 200)], axis=2).astype(np.uint8)
    image[np.random.default_rng(3).integers(0, 120, 50), np.random.default_rng(4).integers(0, 160, 50)] = 0
    buffer = io.BytesIO()
    PIL.fromarray(image, "RGBA").save(buffer, "PNG")
    data = buffer.getvalue()
    assert (decode_png(data) == image).all()
    compressed = png._chunks(data)[3]  # Pillow's rows, as decode_png takes them when Pillow is installed
    assert (png._unfilter_with_pillow(compressed, 160, 120, 6) == image.reshape(120, -1)).all()
    _without_pillow(monkeypatch)
    assert png._unfilter_with_pillow(compressed, 160, 120, 6) is None
    assert (decode_png(data) == image).all()


def test_a_truncated_image_is_refused_with_the_same_reason_whichever_decoder(monkeypatch: pytest.MonkeyPatch) -> None:
    image = np.random.default_rng(9).integers(0, 256, (8, 8, 4), dtype=np.uint8)
    data = _filtered_png(image, [4])
    start = data.index(b"IDAT") + 4
    length = struct.unpack(">I", data[start - 8 : start - 4])[0]
    body = zlib.compress(zlib.decompress(data[start : start + length])[:-10])  # ten bytes of pixels short
    broken = (
        data[: start - 8] + struct.pack(">I", len(body)) + b"IDAT" + body + b"\0\0\0\0" + data[start + length + 4 :]
    )
    with pytest.raises(PngError, match="wrong length"):
        decode_png(broken)
    _without_pillow(monkeypatch)
    with pytest.raises(PngError, match="wrong length"):
        decode_png(broken)
