"""PNG to NumPy and back, with zlib and NumPy: the HTML check report compares images pixel by pixel.

Notebooks' images (matplotlib, IPython.display.Image) are plain 8- or 16-bit non-interlaced PNGs,
which this module reads; anything else raises PngError, and the report then shows the images
without a heat map. Every check (chunks, size, length, filter types) is made here. Undoing the
Average and Paeth row filters, which libpng and Pillow (so Matplotlib) choose for most rows, is a
serial walk along each row: 8-bit RGB and RGBA images with such rows are handed, once checked, to
Pillow's C decoder when Pillow is installed (it comes with Matplotlib; `pip install
"ipyrepro[html]"`), about ten times faster than the NumPy walk used otherwise. Both give the same pixels.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

SIGNATURE = b"\x89PNG\r\n\x1a\n"
CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # colour type -> samples per pixel
MAX_PIXELS = 4_000_000  # a larger image is not decoded (the report shows it side by side, without heat map)
MAX_BYTES = 64 * 2**20  # compressed data larger than this is refused before it is read


class PngError(ValueError):
    """The bytes are not a PNG this module reads; the message says why."""


def decode_png(data: bytes) -> np.ndarray:
    """The image as an (height, width, 4) uint8 RGBA array; PngError for anything it cannot read, in time and
    memory bounded by MAX_PIXELS whatever the bytes claim."""
    if not data.startswith(SIGNATURE):
        raise PngError("not a PNG (bad signature)")
    if len(data) > MAX_BYTES:
        raise PngError(f"image too large ({len(data)} bytes)")
    header, palette, alpha, compressed = _chunks(data)
    width, height, depth, colour, _, _, interlace = header
    if colour not in CHANNELS or depth not in (8, 16) or interlace:
        raise PngError(f"unsupported PNG (colour type {colour}, bit depth {depth}, interlace {interlace})")
    if width == 0 or height == 0:
        raise PngError(f"image has no pixels ({width}x{height})")
    if width * height > MAX_PIXELS:
        raise PngError(f"image too large to compare pixel by pixel ({width}x{height})")
    samples = CHANNELS[colour]
    bpp = samples * depth // 8
    stride = width * bpp
    expected = height * (stride + 1)
    try:  # never inflate more than the header promises: a small file can claim gigabytes
        inflater = zlib.decompressobj()
        raw = inflater.decompress(compressed, expected + 1)
    except zlib.error as error:
        raise PngError(f"corrupt image data: {error}") from None
    if len(raw) != expected:
        raise PngError("image data has the wrong length")
    filters = np.frombuffer(raw, np.uint8).reshape(height, stride + 1)
    kinds = filters[:, 0]
    highest = int(kinds.max())
    if highest > 4:
        row = int(np.argmax(kinds > 4))
        raise PngError(f"unknown filter type {int(kinds[row])} in row {row}")
    rows = _unfilter_with_pillow(compressed, width, height, colour) if depth == 8 and highest >= 3 else None
    if rows is None:
        rows = unfilter(kinds, filters[:, 1:].reshape(height, width, bpp))
    if depth == 16:
        rows = rows.reshape(height, width, samples, 2)[..., 0]  # the high byte is enough to look at
    pixels = rows.reshape(height, width, samples)
    return _to_rgba(pixels, colour, palette, alpha)


def _chunks(data: bytes) -> tuple[tuple[int, ...], np.ndarray | None, np.ndarray | None, bytes]:
    """IHDR's fields, the palette, the transparency table and the joined image data; PngError when malformed."""
    header, palette, alpha, compressed = None, None, None, []
    position = len(SIGNATURE)
    while position + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[position : position + 8])
        body = data[position + 8 : position + 8 + length]
        if len(body) != length:
            raise PngError(f"corrupt PNG: the {kind.decode('latin-1')!r} chunk is truncated")
        position += 12 + length
        if kind == b"IHDR":
            if length != 13:
                raise PngError(f"corrupt PNG: an IHDR chunk of {length} bytes (13 expected)")
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"PLTE":
            if length % 3 or not length:
                raise PngError(f"corrupt PNG: a PLTE chunk of {length} bytes (a multiple of 3 expected)")
            palette = np.frombuffer(body, np.uint8).reshape(-1, 3)
        elif kind == b"tRNS":
            alpha = np.frombuffer(body, np.uint8)
        elif kind == b"IDAT":
            compressed.append(body)
        elif kind == b"IEND":
            break
    if header is None:
        raise PngError("no IHDR chunk")
    return header, palette, alpha, b"".join(compressed)


def unfilter(kinds: np.ndarray, raw: np.ndarray) -> np.ndarray:
    """Undo PNG's per-row filters (None, Sub, Up, Average, Paeth) on (height, width, bytes per pixel) data.

    Each pixel depends on the one to its left and the two above it, so the pixels of one anti-diagonal
    (row + column constant) are independent of each other. They are laid out as contiguous rows of a
    sheared array, indexed by the image's shorter side: height + width NumPy steps, each on slices.
    """
    if set(np.unique(kinds).tolist()) <= {0, 1, 2}:
        return _unfilter_rows(kinds, raw)
    height, width, bpp = raw.shape
    by_row = height <= width  # index each diagonal by row (or by column): the shorter side
    cross = (height if by_row else width) + 1
    diagonals = height + width - 1
    ys, xs = np.indices((height, width))
    slot = (ys + xs + 2, (ys if by_row else xs) + 1)  # two zero diagonals before, one zero slot in front
    values = np.zeros((diagonals + 2, cross, bpp), np.int16)
    values[slot] = raw
    done = np.zeros_like(values)
    kind_per_slot = np.zeros((diagonals + 2, cross), np.int8)
    kind_per_slot[slot] = np.broadcast_to(kinds[:, None], (height, width))
    used = set(np.unique(kinds).tolist())
    zero = np.zeros((cross, bpp), np.int16)
    for diagonal in range(diagonals):
        d = diagonal + 2
        low = max(0, diagonal - (width if by_row else height) + 1) + 1
        high = min(cross - 2, diagonal) + 2
        if by_row:  # left: same row, previous diagonal; up: previous row, previous diagonal
            left, up, corner = done[d - 1, low:high], done[d - 1, low - 1 : high - 1], done[d - 2, low - 1 : high - 1]
        else:  # by column: left is the previous column, up the same column
            left, up, corner = done[d - 1, low - 1 : high - 1], done[d - 1, low:high], done[d - 2, low - 1 : high - 1]
        predictors = {}
        if 1 in used:
            predictors[1] = left
        if 2 in used:
            predictors[2] = up
        if 3 in used:
            predictors[3] = (left + up) >> 1
        if 4 in used:
            to_left, to_up = up - corner, left - corner  # the estimate left + up - corner, less left, less up
            pa, pb, pc = np.abs(to_left), np.abs(to_up), np.abs(to_left + to_up)
            predictors[4] = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, up, corner))
        if len(used) == 1:  # one filter for the whole image (common): no selection per row
            predictor = predictors.get(next(iter(used)), 0)
        else:
            choices = [predictors.get(number, zero[: high - low]) for number in range(5)]
            predictor = np.choose(kind_per_slot[d, low:high, None], choices)
        done[d, low:high] = (values[d, low:high] + predictor) & 0xFF
    return done[slot].astype(np.uint8).reshape(height, width * bpp)


def _unfilter_with_pillow(compressed: bytes, width: int, height: int, colour: int) -> np.ndarray | None:
    """The rows of an 8-bit RGB or RGBA image, already checked here, decoded by Pillow's C zlib and
    unfilter ("zip", the decoder its PNG reader uses on the same image data); None when Pillow is not
    installed, the colour type is another, or Pillow refuses the data (the NumPy walk then decides)."""
    mode = {2: "RGB", 6: "RGBA"}.get(colour)
    if mode is None:
        return None
    try:
        from PIL import Image
    except ImportError:
        return None
    try:
        image = Image.frombytes(mode, (width, height), compressed, "zip", mode)
    except Exception:  # an older or newer Pillow without this decoder, or data it reads otherwise
        return None
    rows = np.asarray(image)
    if rows.shape != (height, width, len(mode)) or rows.dtype != np.uint8:
        return None
    return rows.reshape(height, width * len(mode))


def _unfilter_rows(kinds: np.ndarray, raw: np.ndarray) -> np.ndarray:
    """`unfilter` for images whose rows use only None, Sub and Up, as an encoder that does not filter
    writes them: no pixel depends on its upper-left neighbour, so Sub rows are running sums along the
    row (all at once, wrapping as bytes do) and Up rows are undone one row at a time, top down."""
    height, width, bpp = raw.shape
    out = raw.copy()
    sub = kinds == 1
    if sub.any():
        out[sub] = np.cumsum(raw[sub], axis=1, dtype=np.uint8)
    for row in np.flatnonzero(kinds == 2).tolist():
        if row:
            out[row] += out[row - 1]
    return out.reshape(height, width * bpp)


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


def encode_png(image: np.ndarray, level: int = 6) -> bytes:
    """An (height, width, 3 or 4) uint8 array as PNG bytes (no filtering: small images, written once)."""
    image = np.ascontiguousarray(image, np.uint8)
    if image.ndim != 3 or image.shape[2] not in (3, 4):
        raise ValueError(f"expected an (height, width, 3 or 4) array; got shape {image.shape}")
    height, width, samples = image.shape
    rows = np.concatenate([np.zeros((height, 1), np.uint8), image.reshape(height, width * samples)], axis=1)

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 6 if samples == 4 else 2, 0, 0, 0)
    return (
        SIGNATURE + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows.tobytes(), level)) + chunk(b"IEND", b"")
    )
