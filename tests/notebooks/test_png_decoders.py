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

from ..pngs import filtered_png

PIL = pytest.importorskip("PIL.Image", reason="Pillow (ipyrepro[html]) is not installed")


def _without_pillow(monkeypatch: pytest.MonkeyPatch) -> None:
    """As on a machine without Pillow: `import PIL` fails."""
    monkeypatch.setitem(sys.modules, "PIL", None)


@pytest.mark.parametrize("channels", [3, 4])
@pytest.mark.parametrize("kinds", [[3], [4], [4, 3, 2, 1, 0], [3, 0, 4, 1]])
def test_pillow_and_numpy_undo_average_and_paeth_rows_alike(
    channels: int, kinds: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    image = np.random.default_rng(7).integers(0, 256, (11, 17, channels), dtype=np.uint8)
    data = filtered_png(image, kinds)
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
    data = filtered_png(image, [4])
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
