"""What `--html` adds to `ipyrepro check`, for a notebook of 20 images that differ from run to run.

    python benchmarks/bench_html_report.py [--rounds 5] [--images 20] [--size 640x480] [--filters adaptive|none]
                                           [--decoder pillow|numpy]

The notebook draws 20 RGBA PNG images, a plot-like gradient the size of a default Matplotlib figure,
their row filters chosen per row as libpng and Pillow choose them (none with `--filters none`),
sprinkled with points from an unseeded `np.random.default_rng()`, which `%repro on` does not
seed, so every image differs between the check's runs and the report draws each pair with its
heat map. Each round runs the check as `ipyrepro check NB --html OUT` does: `check(NB)` (two
fresh kernels, then the causes kernel for the cells that differ), then `write_html(report, OUT)`;
the two are timed apart and the round's ratio is HTML / check.

Rows filtered with Average or Paeth are undone by Pillow when it is installed (`ipyrepro[html]`; it
comes with Matplotlib), else by ipyrepro's NumPy decoder; `--decoder numpy` measures the latter
with Pillow installed (the report is written in this process, which then cannot import PIL).

Target: writing the HTML report <= 15% of the check's time (the median of the rounds' ratios).
The machine may be shared: each round's ratio compares two timings taken back to back.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

# A PNG encoder in the notebook itself: the check's kernels need nothing but NumPy.
SETUP = """\
import struct, zlib
import numpy as np
from IPython.display import Image, display

def png(rgba, adaptive={adaptive}):
    height, width, bpp = rgba.shape
    x = rgba.reshape(height, width * bpp).astype(np.int16)
    if adaptive:  # what libpng and Pillow write: per row, the filter whose bytes have the least sum of |signed byte|
        left, up, corner = np.zeros_like(x), np.zeros_like(x), np.zeros_like(x)
        left[:, bpp:], up[1:], corner[1:, bpp:] = x[:, :-bpp], x[:-1], x[:-1, :-bpp]
        estimate = left + up - corner
        pa, pb, pc = abs(estimate - left), abs(estimate - up), abs(estimate - corner)
        paeth = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, up, corner))
        candidates = np.stack([x, x - left, x - up, x - (left + up) // 2, x - paeth]) % 256
        kinds = np.minimum(candidates, 256 - candidates).sum(axis=2).argmin(axis=0)
        filtered = candidates[kinds, np.arange(height)]
    else:  # no filtering, as simple encoders write
        kinds, filtered = np.zeros(height, np.int64), x
    raw = np.concatenate([kinds[:, None], filtered], axis=1).astype(np.uint8).tobytes()
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    data = chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b"")
    return b"\\x89PNG\\r\\n\\x1a\\n" + data

def plot(index, width={width}, height={height}):
    y, x = np.mgrid[0:height, 0:width]
    image = np.empty((height, width, 4), np.uint8)
    image[..., 0] = 255 - (x * 255 // width)
    image[..., 1] = (y * 255 // height)
    image[..., 2] = (index * 12) % 256
    image[..., 3] = 255
    points = np.random.default_rng().integers(0, [height, width], size=(200, 2))  # unseeded: differs each run
    image[points[:, 0], points[:, 1], :3] = 0
    return png(image)
"""
CELL = "display(Image(data=plot({index})))"


def write_notebook(folder: Path, images: int, width: int, height: int, filters: str = "adaptive") -> Path:
    nb = new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3"}})
    nb.cells = [
        new_markdown_cell(f"# {images} images that differ"),
        new_code_cell(SETUP.format(width=width, height=height, adaptive=filters == "adaptive")),
    ]
    nb.cells += [new_code_cell(CELL.format(index=index)) for index in range(images)]
    path = folder / "images.ipynb"
    nbformat.write(nb, path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5, help="rounds; the median of the ratios is reported")
    parser.add_argument("--images", type=int, default=20, help="image cells in the notebook")
    parser.add_argument("--size", default="640x480", help="each image's WIDTHxHEIGHT")
    parser.add_argument(
        "--filters",
        choices=("adaptive", "none"),
        default="adaptive",
        help="PNG row filters: chosen per row as libpng and Pillow (so Matplotlib) do, or none at all",
    )
    parser.add_argument(
        "--decoder",
        choices=("pillow", "numpy"),
        default="pillow",
        help="what undoes Average/Paeth rows: Pillow (when installed) or ipyrepro's NumPy decoder",
    )
    args = parser.parse_args()
    if args.decoder == "numpy":
        sys.modules["PIL"] = None  # type: ignore[assignment]  # `import PIL` now fails here, as without Pillow
    else:
        try:
            import PIL  # noqa: F401
        except ImportError:
            parser.error("Pillow is not installed: pip install 'ipyrepro[html]', or use --decoder numpy")
    width, height = (int(side) for side in args.size.split("x"))
    os.environ.setdefault("IPYTHONDIR", tempfile.mkdtemp(prefix="ipyrepro-bench-"))

    from ipyrepro.notebook_check import check
    from ipyrepro.notebooks.htmlreport import write_html

    folder = Path(tempfile.mkdtemp(prefix="ipyrepro-bench-html-"))
    path = write_notebook(folder, args.images, width, height, args.filters)
    out = folder / "report.html"
    checks: list[float] = []
    htmls: list[float] = []
    for _ in range(args.rounds + 1):  # the first round warms up (bytecode, file cache) and is dropped
        start = time.perf_counter()
        report = check(path)
        checked = time.perf_counter()
        write_html(report, out)
        done = time.perf_counter()
        checks.append(checked - start)
        htmls.append(done - checked)
    images = sum(1 for difference in report.differences if difference.image)
    checks, htmls = checks[1:], htmls[1:]
    ratios = [html / taken for html, taken in zip(htmls, checks)]
    machine = f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs"
    print(
        f"{machine}, {args.rounds} rounds, {args.images} images of {args.size}, {args.filters} PNG filters, "
        f"{args.decoder} decoder"
    )
    print(f"  check(NB)            median {statistics.median(checks) * 1e3:8.0f} ms  min {min(checks) * 1e3:8.0f} ms")
    print(f"  write_html(report)   median {statistics.median(htmls) * 1e3:8.0f} ms  min {min(htmls) * 1e3:8.0f} ms")
    print(f"  report: {out.stat().st_size / 1e6:.1f} MB, images that differ: {images}, exit code {report.exit_code}")
    print(f"\n--html adds {statistics.median(ratios):.1%} to the check (median of the rounds' ratios; target <= 15%).")


if __name__ == "__main__":
    main()
