"""`ipyrepro check --html`: one self-contained page, opened in real Chromium, showing both images and the heat map."""

from __future__ import annotations

import base64
import subprocess
import sys
from pathlib import Path

import nbformat
import numpy as np
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from ipyrepro.notebooks.htmldiff import mark_characters, number_differences, side_by_side
from ipyrepro.notebooks.htmlreport import heat_map
from ipyrepro.notebooks.png import PngError, decode_png, encode_png

from ..jupyterlab import open_page
from ..pngs import filtered_png

ROOT = Path(__file__).resolve().parents[2]
# The image cell paints a 10x20 patch from a generator nobody seeded: it differs run to run, there only.
IMAGE_CELL = (
    "rng = np.random.default_rng()\n"
    "img = np.full((40, 60, 3), 200, np.uint8)\n"
    "img[10:20, 10:30] = rng.integers(0, 256, (10, 20, 3))\n"
    "display.display(display.Image(data=encode_png(img), format='png'))"
)


def test_changed_characters_and_numbers_are_found() -> None:
    left, right = mark_characters("loss 0.2614", "loss 0.5171")
    assert left == "loss <mark>0.2614</mark>" and right == "loss <mark>0.5171</mark>"  # a number as a whole
    assert mark_characters("name: abc", "name: abd") == ("name: ab<mark>c</mark>", "name: ab<mark>d</mark>")
    found = number_differences("tensor([0.5000, 2.0000])", "tensor([0.2500, 2.0000])")
    expected = [(1, "0.5000", "0.2500", 0.25, 0.5)]
    assert [(n.position, n.left, n.right, n.absolute, n.relative) for n in found] == expected
    padded = number_differences("[0.61285605 0.0315142 ]", "[0.21366386 0.01538356]")  # NumPy pads columns
    assert [n.position for n in padded] == [1, 2]
    assert number_differences("a 1", "b 2") == []  # the text around the numbers differs: no number table
    table = side_by_side("same\nold line\n", "same\nnew line\nextra\n", "run 1", "run 2")
    assert "<td class='add'><mark>extra</mark></td>" in table and "<td class=''>same</td>" in table


def test_pngs_round_trip_and_bad_bytes_say_why() -> None:
    image = np.random.default_rng(0).integers(0, 256, (7, 9, 4), dtype=np.uint8)
    assert (decode_png(encode_png(image)) == image).all()
    with pytest.raises(PngError, match="not a PNG"):
        decode_png(b"GIF89a")
    with pytest.raises(PngError, match="corrupt"):
        decode_png(encode_png(image)[:40] + b"\x00" * 30)


def test_the_heat_map_marks_exactly_the_changed_pixels() -> None:
    a = np.full((4, 5, 4), 255, np.uint8)
    b = a.copy()
    b[1, 2, 0] = 155  # a change of 100
    b[3, 4, 1] = 205  # a change of 50
    picture, changed, largest = heat_map(a, b)
    assert (changed, largest) == (2, 100)
    assert tuple(picture[1, 2]) == (255, 0, 0)  # the largest change is red
    assert tuple(picture[3, 4]) == (255, 110, 0)  # half as large: orange
    assert (picture[0, 0] == picture[0, 1]).all() and picture[0, 0, 0] == picture[0, 0, 2]  # unchanged: grey


def _notebook(folder: Path) -> Path:
    notebook = new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3"}})
    notebook.cells = [
        new_code_cell(
            "import numpy as np\nfrom IPython import display\nfrom ipyrepro.notebooks.png import encode_png", id="setup"
        ),
        new_markdown_cell("An image that differs, then numbers that differ, then a cell that matches."),
        new_code_cell(IMAGE_CELL, id="image"),
        new_code_cell("print(np.random.default_rng().random(2))", id="numbers"),
        new_code_cell("x = 40 + 2\nx", id="same"),
    ]
    path = folder / "pictures.ipynb"
    nbformat.write(notebook, path)
    return path


@pytest.mark.kernel
@pytest.mark.browser
def test_check_html_shows_both_images_and_the_heat_map_in_chromium(tmp_path: Path) -> None:
    notebook = _notebook(tmp_path)
    page_path = tmp_path / "report.html"
    done = subprocess.run(
        [sys.executable, "-m", "ipyrepro", "check", str(notebook), "--html", str(page_path), "--quiet"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert done.returncode == 1, done.stdout + done.stderr  # 1: something differed
    assert done.stderr == ""  # --quiet: no progress
    assert f"HTML report: {page_path}" in done.stdout
    text = page_path.read_text(encoding="utf-8")
    assert "http://" not in text and "https://" not in text and "<script" not in text  # nothing fetched at view time

    heat_src = text.split("class='heat-map'")[1].split("src='data:image/png;base64,")[1].split("'")[0]
    heat = decode_png(base64.b64decode(heat_src))
    changed = (heat[..., 0] == 255) & (heat[..., 2] == 0)
    rows, columns = np.nonzero(changed)
    assert rows.min() >= 10 and rows.max() < 20 and columns.min() >= 10 and columns.max() < 30  # only the patch

    seen: dict = {}

    def look(page) -> None:
        section = page.locator("#cell-2")
        images = section.locator("img.run-image")
        assert images.count() == 2
        heat_map_image = section.locator("img.heat-map")
        assert heat_map_image.count() == 1
        for image in [images.nth(0), images.nth(1), heat_map_image]:
            image.scroll_into_view_if_needed()
            assert image.is_visible()
            assert image.evaluate("img => img.complete && img.naturalWidth") == 60  # decoded by the browser
        assert "difference: " in section.inner_text()
        # The cause is linked to its line in the shown source, and that line is marked.
        link = section.locator("a[href='#cell-2-L1']")
        assert "unseeded-generator" in section.inner_text() and link.count() == 1
        link.click()
        assert page.locator("#cell-2-L1").get_attribute("class") == "cause-line"
        # Numbers: side by side with the changed characters marked, and the abs/rel table.
        numbers = page.locator("#cell-3")
        assert numbers.locator("td.del mark").count() >= 1 and numbers.locator("td.add mark").count() >= 1
        assert "abs diff" in numbers.locator("table.numbers").inner_text()
        assert page.locator("#cell-4 .badge").inner_text() == "matched"
        page.screenshot(path=str(_screenshot_path()), full_page=True)
        # Chromium's own PNG decoder agrees with ipyrepro's on a real screenshot (every filter type).
        panel = base64.b64encode((ROOT / "docs" / "panel.png").read_bytes()).decode()
        seen.update(page.evaluate(_CANVAS_PIXELS, panel))

    errors, requests = open_page(page_path, look)
    assert errors == []
    assert all(url.startswith(("file://", "data:")) for url in requests), requests
    ours = decode_png((ROOT / "docs" / "panel.png").read_bytes())
    assert seen["size"] == [ours.shape[1], ours.shape[0]]
    assert seen["sum"] == int(ours[..., :3].astype(np.int64).sum())


_CANVAS_PIXELS = """async (data) => {
  const image = new Image();
  image.src = 'data:image/png;base64,' + data;
  await image.decode();
  const canvas = document.createElement('canvas');
  canvas.width = image.naturalWidth; canvas.height = image.naturalHeight;
  const context = canvas.getContext('2d', {colorSpace: 'srgb'});
  context.drawImage(image, 0, 0);
  const pixels = context.getImageData(0, 0, canvas.width, canvas.height).data;
  let sum = 0;
  for (let i = 0; i < pixels.length; i += 4) sum += pixels[i] + pixels[i + 1] + pixels[i + 2];
  return {size: [canvas.width, canvas.height], sum};
}"""


def _screenshot_path() -> Path:
    folder = ROOT / "test-output"
    folder.mkdir(exist_ok=True)
    return folder / "check-html-report.png"


def test_check_html_to_a_missing_folder_is_a_usage_error_before_any_kernel_starts(tmp_path: Path) -> None:
    notebook = _notebook(tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "ipyrepro", "check", str(notebook), "--html", str(tmp_path / "nope" / "r.html")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert "--html" in done.stderr and "nope" in done.stderr
    assert "starting kernel" not in done.stderr  # refused before any kernel started


def test_errors_and_findings_other_checks_add_are_rendered_at_their_cells() -> None:
    from ipyrepro.notebooks.check import add_hidden_state
    from ipyrepro.notebooks.htmlreport import render_html
    from ipyrepro.notebooks.notebookfile import Cell
    from ipyrepro.notebooks.report import CheckReport, Run

    cells = [Cell(0, "a", "x = 1\nprint(P)", (), 0), Cell(2, "b", "y = x +\n", (), 1), Cell(3, "c", "P = 3", (), 2)]
    stopped = "cell 2 (code cell 1, id 'b') raised SyntaxError: invalid syntax; this run stopped there"
    name_error = {"output_type": "error", "ename": "NameError", "evalue": "name 'P' is not defined", "traceback": []}
    runs = [Run(n, {0: [name_error]}, error=stopped, error_cell=2, stop_kind="cell-raised") for n in (1, 2)]
    report = CheckReport("broken.ipynb", "python3", "under ipyrepro (seed 0)", runs, cells)
    add_hidden_state(report)  # as the check adds it: P is bound only in a later cell
    page = render_html(report)
    assert "<span class='verdict ERROR'>ERROR</span>" in page
    assert page.count("Run 1 stopped here") == 1 and "SyntaxError: invalid syntax" in page
    assert "id='hidden-state'" in page and "after this cell: run top to bottom it does not exist yet" in page
    assert "<script" not in page


@pytest.mark.parametrize("shape", [(9, 13, 4), (13, 9, 4), (1, 6, 4), (6, 1, 4)])
def test_every_png_filter_is_undone_as_the_specification_says(shape: tuple[int, int, int]) -> None:
    image = np.random.default_rng(1).integers(0, 256, shape, dtype=np.uint8)
    for kinds in ([0], [1], [2], [3], [4], [4, 3, 2, 1, 0], [2, 1, 0, 2, 2], [1, 2]):
        assert (decode_png(filtered_png(image, kinds)) == image).all(), kinds


def test_malformed_and_oversized_pngs_are_refused_with_a_reason() -> None:
    import struct
    import zlib

    good = encode_png(np.zeros((4, 4, 3), np.uint8))
    short = good[:8] + struct.pack(">I4s", 4, b"IHDR") + b"\0\0\0\4" + b"\0" * 4 + good[33:]
    with pytest.raises(PngError, match="IHDR chunk of 4 bytes"):
        decode_png(short)
    claimed = good[:16] + struct.pack(">II", 100_000, 100_000) + good[24:]  # a few bytes claiming 10^10 pixels
    with pytest.raises(PngError, match="too large"):
        decode_png(claimed)
    header = struct.pack(">IIBBBBB", 100, 100, 8, 2, 0, 0, 0)
    bomb = zlib.compress(b"\0" * 50_000_000)  # 50 MB of zeros in 50 kB: never inflated past what IHDR promises
    body = [(b"IHDR", header), (b"IDAT", bomb), (b"IEND", b"")]
    data = good[:8] + b"".join(struct.pack(">I", len(b)) + k + b + b"\0\0\0\0" for k, b in body)
    with pytest.raises(PngError, match="wrong length"):
        decode_png(data)


def test_an_image_beyond_the_decoding_cap_is_shown_side_by_side_with_a_note() -> None:
    from ipyrepro.notebooks.htmlimages import Pictures

    big = [base64.b64encode(encode_png(np.full((2100, 2000, 3), v, np.uint8))).decode() for v in (0, 1)]
    shown = Pictures().pair("image/png", (big[0], big[1]), ("run 1", "run 2"))
    assert shown.count("class='run-image'") == 2 and "heat-map" not in shown
    assert "too large to compare pixel by pixel (2000x2100); shown side by side" in shown


def test_the_page_grows_linearly_with_the_images_of_a_cell() -> None:
    from ipyrepro.notebooks.htmlreport import render_html
    from ipyrepro.notebooks.notebookfile import Cell
    from ipyrepro.notebooks.outputs import Comparison
    from ipyrepro.notebooks.report import CheckReport, Run
    from ipyrepro.notebooks.verdicts import compare

    def size(count: int) -> int:
        rng = np.random.default_rng(count)

        def outputs() -> list[dict]:
            return [
                {"output_type": "display_data", "data": {"image/png": base64.b64encode(encode_png(image)).decode()}}
                for image in rng.integers(0, 256, (count, 4, 4, 3), dtype=np.uint8)
            ]

        cell = Cell(0, "plots", "for i in range(n): plt.show()", (), 0, 1, 1)
        report = CheckReport(
            "plots.ipynb", "python3", "as written", [Run(1, {0: outputs()}), Run(2, {0: outputs()})], [cell]
        )
        compare(report, Comparison.build())
        page = render_html(report)
        assert page.count("class='heat-map'") == count  # each image against its counterpart, none joined
        return len(page)

    small, large = size(10), size(40)
    assert large < 4.5 * small  # four times the images, four times the page (not sixteen)


@pytest.mark.parametrize("extra", [[], ["one more line"]])
def test_every_difference_of_a_long_output_is_drawn_wherever_it_is(extra: list[str]) -> None:
    import html
    import re

    for filler in ("line {}", "0.0000"):  # distinct lines, and lines that are all alike (difflib's worst case)
        left = [filler.format(i) for i in range(5000)]
        right = list(left)
        right[10], right[4500] = "changed near the top", "changed near the end"
        table = side_by_side("\n".join(left), "\n".join(right + extra), "run 1", "run 2")
        shown = html.unescape(re.sub(r"<[^>]+>", "", table))
        assert "changed near the top" in shown and "changed near the end" in shown
        assert all(line in shown for line in extra)
        assert "equal lines" in shown and len(table) < 20_000  # the equal lines folded and counted
