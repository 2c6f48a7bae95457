"""Images in the HTML check report: validated before they are inlined, and compared pixel by pixel.

An image output's data comes from the notebook's code, so it is never placed in the page as given:
it must be base64 of the type it declares (a PNG's signature for image/png, and so on), and what the
page carries is that data encoded again, of a MIME type from a fixed table. Each differing image is
drawn beside its counterpart (the same position in the other side's outputs) with a heat map of the
changed pixels when both are PNGs of one size that decode within png.py's bounds; each image is
decoded once per report, however many differences show it.
"""

from __future__ import annotations

import base64
import binascii
import html
import re
from typing import Any

import numpy as np

from .png import PngError, decode_png, encode_png

SIGNATURES: dict[str, tuple[bytes, ...]] = {
    "image/png": (b"\x89PNG\r\n\x1a\n",),
    "image/jpeg": (b"\xff\xd8\xff",),
    "image/gif": (b"GIF87a", b"GIF89a"),
    "image/bmp": (b"BM",),
    "image/webp": (b"RIFF",),  # and "WEBP" at byte 8
}
BASE64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")


class BadImage(ValueError):
    """The data is not what its MIME type says; the message says why (shown in the report instead)."""


def image_bytes(mime: str, value: Any) -> bytes:
    """The decoded bytes of an image output, when `value` is base64 of a `mime` the page may show."""
    if mime not in SIGNATURES:
        raise BadImage(f"{mime} is not an image type the report shows")
    if not isinstance(value, str):
        raise BadImage("the data is not text")
    text = "".join(value.split())
    if len(text) % 4 or not BASE64.fullmatch(text):
        raise BadImage("the data is not base64")
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise BadImage("the data is not base64") from None
    if not data.startswith(SIGNATURES[mime]) or (mime == "image/webp" and data[8:12] != b"WEBP"):
        raise BadImage(f"the data is not {mime}")
    return data


class Pictures:
    """The images of one report: each decoded at most once (a run's image may appear in several differences)."""

    def __init__(self) -> None:
        self._decoded: dict[bytes, np.ndarray | str] = {}

    def pixels(self, data: bytes) -> np.ndarray | str:
        """The RGBA pixels of PNG `data`, or why they cannot be read."""
        found = self._decoded.get(data)
        if found is None:
            try:
                found = decode_png(data)
            except PngError as error:
                found = str(error)
            self._decoded[data] = found
        return found

    def pair(self, mime: str, values: tuple[Any, Any], names: tuple[str, str]) -> str:
        """Both sides' images of one differing output, and the heat map (or a note saying why there is none)."""
        figures, notes, found = [], [], []
        for value, name in zip(values, names):
            try:
                data = image_bytes(mime, value)
            except BadImage as error:
                notes.append(f"{name}'s image is not shown: {error}")
                found.append(None)
                continue
            figures.append(figure(mime, data, name, "run-image"))
            found.append(data)
        if None not in found:
            note, heat = self._heat(mime, found[0], found[1])  # type: ignore[arg-type]
            if heat:
                figures.append(heat)
            if note:
                notes.append(note)
        shown = "".join(f"<p class='note'>{_e(note)}</p>" for note in notes)
        return f"<div class='images'>{''.join(figures)}</div>{shown}"

    def _heat(self, mime: str, left: bytes, right: bytes) -> tuple[str, str]:
        if mime != "image/png":
            return f"{mime} is compared by its bytes; a heat map needs PNG", ""
        a, b = self.pixels(left), self.pixels(right)
        for side in (a, b):
            if isinstance(side, str):
                return f"cannot compare the pixels: {side}; shown side by side", ""
        assert isinstance(a, np.ndarray) and isinstance(b, np.ndarray)
        if a.shape != b.shape:
            return f"sizes differ: {a.shape[1]}x{a.shape[0]} vs {b.shape[1]}x{b.shape[0]} pixels: no heat map", ""
        picture, changed, largest = heat_map(a, b)
        caption = f"difference: {changed} of {a.shape[0] * a.shape[1]} pixels, largest {largest} of 255"
        return "", figure(
            "image/png", encode_png(picture, level=1), caption, "heat-map"
        )  # fast: drawn once, viewed once


def figure(mime: str, data: bytes, caption: str, css: str) -> str:
    """An <img> of validated image bytes, as a data: URI of a MIME type from SIGNATURES, with its caption."""
    assert mime in SIGNATURES and css in ("run-image", "heat-map")
    source = f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"
    return (
        f"<figure><img class='{css}' alt='{_e(caption)}' src='{source}'><figcaption>{_e(caption)}</figcaption></figure>"
    )


def heat_map(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, int, int]:
    """Where two RGBA images differ: unchanged pixels as a faded grey copy of `a`, changed ones from
    yellow (small) to red (largest). Returns the picture, the changed pixel count and the largest change."""
    delta = np.abs(a.astype(np.int16) - b.astype(np.int16)).max(axis=2)
    largest = int(delta.max())
    grey = (a[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)) * (a[..., 3] / 255.0)
    faded = (235 + grey * 20 / 255).astype(np.uint8)
    out = np.repeat(faded[..., None], 3, axis=2)
    changed = delta > 0
    if largest:
        strength = delta[changed] / largest
        out[changed] = np.stack(
            [np.full_like(strength, 255), 220 * (1 - strength), np.zeros_like(strength)], axis=1
        ).astype(np.uint8)
    return out, int(changed.sum()), largest


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)
