"""`ipyrepro check --html` tells the terminal's story and runs nothing, opened in real Chromium.

One notebook, checked once in real kernels, carries every case: a silent cell where the runs part
and a later cell that inherits from it, a cell tagged to be ignored, two PNGs in one cell, a
difference on line 1,001, one line of 100,000 characters, a PNG with a short IHDR chunk, and
outputs written by a hostile author (an image whose data closes the attribute, a MIME type that
does, HTML with script, SVG with handlers, markup in streams, errors and sources, data that is not
the type it declares). The page's cells must carry the JSON report's outcomes, and opening it must
run no handler: the document's title stays the report's.
"""

from __future__ import annotations

import base64
import html
import json
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import nbformat
import numpy as np
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from ipyrepro.notebooks.png import encode_png

from ..jupyterlab import open_page

SETUP = """import base64, os, struct
import numpy as np
from IPython.display import display
from ipyrepro.notebooks.png import SIGNATURE, encode_png

def patch(height, width):
    img = np.full((height, width, 3), 200, np.uint8)
    img[2:6, 2:8] = np.random.default_rng().integers(0, 256, (4, 6, 3))
    return base64.b64encode(encode_png(img)).decode()"""
SHORT_IHDR = (
    "data = SIGNATURE + struct.pack('>I4s', 4, b'IHDR') + os.urandom(4) + b'\\0\\0\\0\\0'\n"
    "display({'image/png': base64.b64encode(data).decode()}, raw=True)"
)
HOSTILE = {  # cell id -> source; each output differs run to run, so the report draws it
    "hostile-png": (
        "display({'image/png': 'f432' + os.urandom(4).hex() + \"'onerror='document.title=`PNG`\"}, raw=True)"
    ),
    "hostile-mime": "display({\"image/png' onerror='document.title=`MIME`\": 'AAAA' + os.urandom(3).hex()}, raw=True)",
    "hostile-html": (
        "display({'text/plain': 'x', 'text/html': \"<script>document.title='HTML'</script>"
        '<img src=x onerror=\\"document.title=\'IMG\'\\">" + os.urandom(4).hex()}, raw=True)'
    ),
    "hostile-svg": (
        "display({'image/svg+xml': \"<svg xmlns='http://www.w3.org/2000/svg' onload=\\\"document.title='SVG'\\\">"
        "<script>document.title='SVG2'</script><!--\" + os.urandom(4).hex() + '--></svg>'}, raw=True)"
    ),
    "hostile-stream": (
        'print("</pre></td></tr></table><img src=x onerror=\\"document.title=\'STREAM\'\\">" + os.urandom(4).hex())'
    ),
    "hostile-source": "# </pre><script>document.title='SOURCE'</script>\nprint(os.urandom(4).hex())",
    "hostile-jpeg": "display({'image/jpeg': base64.b64encode(b'GIF89a' + os.urandom(8)).decode()}, raw=True)",
}
ERROR_CELL = 'raise ValueError("<img src=x onerror=\\"document.title=\'ERROR\'\\">" + os.urandom(4).hex())'


def _saved_png(height: int, width: int) -> str:
    return base64.b64encode(encode_png(np.full((height, width, 3), 200, np.uint8))).decode()


def _notebook(folder: Path) -> Path:
    notebook = new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3"}})
    images = new_code_cell(
        "display({'image/png': patch(40, 60)}, {'image/png': patch(30, 20)}, raw=True)", id="two-images"
    )
    images.execution_count = 4  # saved: the same two pictures without their random patches
    images.outputs = [
        new_output("display_data", data={"image/png": _saved_png(40, 60)}),
        new_output("display_data", data={"image/png": _saved_png(30, 20)}),
    ]
    notebook.cells = [
        new_code_cell(SETUP, id="setup"),
        new_markdown_cell("The runs part in a silent cell; the next cell prints what it drew."),
        new_code_cell("w = np.random.default_rng().random(3)", id="draw"),
        new_code_cell("print(w.sum())", id="uses"),
        new_code_cell("print(os.urandom(4).hex())", id="ignored", metadata={"tags": ["ipyrepro-ignore-output"]}),
        images,
        new_code_cell("print('\\n'.join(str(i) for i in range(1000)))\nprint('tail', os.urandom(4).hex())", id="deep"),
        *[new_code_cell(source, id=name) for name, source in HOSTILE.items()],
        new_code_cell(ERROR_CELL, id="hostile-error", metadata={"tags": ["raises-exception"]}),
        new_code_cell("x = 40 + 2\nx", id="same"),
    ]
    path = folder / "truth.ipynb"
    nbformat.write(notebook, path)
    return path


def _small_notebook(folder: Path, cell_id: str, source: str) -> Path:
    notebook = new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3"}})
    notebook.cells = [new_code_cell(SETUP, id="setup"), new_code_cell(source, id=cell_id)]
    path = folder / f"{cell_id}.ipynb"
    nbformat.write(notebook, path)
    return path


def _check(notebook: Path, page: Path, *extra: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-m", "ipyrepro", "check", str(notebook), "--html", str(page), "--json", "--quiet", *extra],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=notebook.parent,
    )
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]  # 1: differs, and the page was written
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def checked(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    folder = tmp_path_factory.mktemp("truth")
    page = folder / "report.html"
    return page, _check(_notebook(folder), page)


def _sections(page: str) -> dict[str, str]:
    """Cell id -> its <section> markup."""
    found = {}
    for match in re.finditer(r"<section class='cell[^']*' id='cell-(\d+)'>.*?</section>", page, re.S):
        found[match.group(1)] = match.group(0)
    return found


SAFE_TAGS = {"html", "head", "meta", "title", "style", "body", "h1", "h2", "h3", "p", "a", "b", "br", "code", "pre"}
SAFE_TAGS |= {"span", "div", "ul", "li", "table", "tr", "th", "td", "section", "details", "summary", "figure"}
SAFE_TAGS |= {"figcaption", "img", "mark"}


def _tags(page: str) -> list[tuple[str, list[tuple[str, str | None]]]]:
    """Every element of the page, as a browser's parser reads it, with its attributes."""
    from html.parser import HTMLParser

    found: list[tuple[str, list[tuple[str, str | None]]]] = []

    class Collect(HTMLParser):
        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            found.append((tag, attrs))

    Collect().feed(page)
    return found


@pytest.mark.kernel
@pytest.mark.browser
def test_hostile_outputs_run_nothing_when_the_report_is_opened(checked: tuple[Path, dict]) -> None:
    page, _ = checked
    seen: dict[str, object] = {}

    def look(tab) -> None:
        seen["title"] = tab.title()
        seen["text"] = tab.locator("body").inner_text()
        seen["images"] = tab.eval_on_selector_all("img", "images => images.map(i => i.src.slice(0, 22))")

    errors, requests = open_page(page, look)
    assert seen["title"] == "ipyrepro check: truth.ipynb: DIFFERS"  # no handler fired
    assert errors == []  # nothing was even refused: the escaping held, the policy was not needed
    assert all(url.startswith(("file://", "data:")) for url in requests), requests
    assert all(src.startswith("data:image/png;base64,") for src in seen["images"])  # no other image was inlined
    body = str(seen["text"])
    assert "document.title='STREAM'" in body and "document.title='SOURCE'" in body  # shown as text
    assert "is not an image type the report shows" in body  # the MIME type that closes the attribute
    assert "the data is not base64" in body  # the image/png whose data closes the attribute
    assert "the data is not image/jpeg" in body  # a GIF declared as JPEG
    text = page.read_text(encoding="utf-8")
    assert "content=\"default-src 'none'; img-src data:; style-src 'unsafe-inline'\"" in text
    tags = _tags(text)
    assert "script" not in {tag for tag, _ in tags} and "svg" not in {tag for tag, _ in tags}
    assert [name for _, attributes in tags for name, _ in attributes if name.startswith("on")] == []
    assert {tag for tag, _ in tags} <= SAFE_TAGS


@pytest.mark.kernel
@pytest.mark.browser
def test_a_slip_in_escaping_would_still_run_nothing(checked: tuple[Path, dict], tmp_path: Path) -> None:
    page, _ = checked
    slipped = tmp_path / "slipped.html"  # as if a future change forgot to escape one value
    slipped.write_text(
        page.read_text(encoding="utf-8").replace(
            "<body>", "<body><script>document.title='RAN'</script><img src=x onerror=\"document.title='RAN'\">", 1
        ),
        encoding="utf-8",
    )
    seen: dict[str, str] = {}
    errors, _ = open_page(slipped, lambda tab: seen.update(title=tab.title()))
    assert seen["title"] == "ipyrepro check: truth.ipynb: DIFFERS"
    assert any("Content Security Policy" in error for error in errors)  # refused by the page's policy


@pytest.mark.kernel
def test_the_page_shows_each_cells_outcome_as_the_json_report_does(checked: tuple[Path, dict]) -> None:
    page, data = checked
    text = page.read_text(encoding="utf-8")
    sections = _sections(text)
    outcomes = {str(cell["index"]): cell["outcome"] for cell in data["cells"]}
    assert {index: section.split("'")[1].split()[1] for index, section in sections.items()} == outcomes
    by_id = {cell["id"]: str(cell["index"]) for cell in data["cells"]}
    assert outcomes[by_id["draw"]] == "matched" and outcomes[by_id["ignored"]] == "ignored"
    draw, uses = sections[by_id["draw"]], sections[by_id["uses"]]
    assert "<span class='flag'>first divergence</span>" in draw and "State: w differs (run 1 vs run 2)" in draw
    assert data["first_divergence"]["id"] == "draw"
    assert f"inherits w from <a href='#cell-{by_id['draw']}'>cell 3 of 16</a>" in uses
    assert "ignored (tagged to be ignored" in sections[by_id["ignored"]]
    assert "Result</th><td>DIFFERS: " in text and "code cells differ" in text
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(page.stat().st_mode) == 0o666 & ~umask  # as any file the user writes, not 0600


@pytest.mark.kernel
def test_a_difference_past_line_1000_is_drawn_with_the_equal_lines_before_it_folded(checked: tuple[Path, dict]) -> None:
    page, data = checked
    (difference,) = [d for d in data["differences"] if d["cell"]["id"] == "deep"]
    section = _text(_sections(page.read_text(encoding="utf-8"))[str(difference["cell"]["index"])])
    for side in difference["sides"]:
        assert side["value"].splitlines()[-1] in section  # `tail <8 hex digits>` of both runs, on line 1,001
    assert "997 equal lines" in section  # the first 1,000 lines matched: folded, 3 kept as context


@pytest.mark.kernel
def test_one_line_of_100000_characters_is_drawn_as_the_window_around_its_difference(tmp_path: Path) -> None:
    source = "print('x' * 50000 + os.urandom(4).hex() + 'x' * 50000)"
    page = tmp_path / "long.html"
    data = _check(_small_notebook(tmp_path, "long", source), page)
    (difference,) = data["differences"]
    section = _text(_sections(page.read_text(encoding="utf-8"))[str(difference["cell"]["index"])])
    for side in difference["sides"]:
        assert side["value"][50000:50008] in section  # both runs' differing characters
    assert "49,8" in section and "equal characters" in section  # the equal rest is counted, not drawn
    assert len(section) < 5_000


@pytest.mark.kernel
def test_a_png_with_a_short_ihdr_chunk_is_a_note_and_the_report_is_written(tmp_path: Path) -> None:
    page = tmp_path / "short.html"
    data = _check(_small_notebook(tmp_path, "short-ihdr", SHORT_IHDR), page)
    (difference,) = data["differences"]
    section = _sections(page.read_text(encoding="utf-8"))[str(difference["cell"]["index"])]
    assert "cannot compare the pixels: corrupt PNG: an IHDR chunk of 4 bytes (13 expected)" in section


def _text(section: str) -> str:
    """A section's text as a reader sees it: without tags, entities decoded."""
    return html.unescape(re.sub(r"<[^>]+>", "", section))


@pytest.mark.kernel
@pytest.mark.browser
def test_two_images_of_one_type_are_each_compared_with_their_counterpart(checked: tuple[Path, dict]) -> None:
    page, data = checked
    index = next(cell["index"] for cell in data["cells"] if cell["id"] == "two-images")
    seen: dict[str, list] = {}

    def look(tab) -> None:
        section = tab.locator(f"#cell-{index}")
        seen["pairs"] = section.locator(".images").evaluate_all(
            "blocks => blocks.map(b => [...b.querySelectorAll('img')].map(i => [i.className, i.naturalWidth]))"
        )

    errors, _ = open_page(page, look)
    assert errors == []
    assert seen["pairs"] == [
        [["run-image", 60], ["run-image", 60], ["heat-map", 60]],
        [["run-image", 20], ["run-image", 20], ["heat-map", 20]],
    ]


@pytest.mark.kernel
def test_against_saved_names_the_saved_side_and_compares_its_images(tmp_path: Path) -> None:
    notebook = _notebook(tmp_path)
    page = tmp_path / "saved.html"
    data = _check(notebook, page, "--against-saved")
    text = page.read_text(encoding="utf-8")
    index = next(str(cell["index"]) for cell in data["cells"] if cell["id"] == "two-images")
    section = _sections(text)[index]
    assert section.count("<h3>image/png: saved vs run 1 <span class='kind value'>value</span></h3>") == 2
    assert section.count("class='heat-map'") == 2 and "missing" not in section
    assert "run 0" not in text
    assert "id='not-saved'" in text  # the cells saved without outputs, listed as the text report lists them


@pytest.mark.kernel
def test_reproduced_errors_and_hidden_state_are_drawn_at_their_cells(tmp_path: Path) -> None:
    notebook = Path(shutil.copy(Path(__file__).parent / "saved" / "hidden-state.ipynb", tmp_path))
    page = tmp_path / "hidden.html"
    done = subprocess.run(
        [sys.executable, "-m", "ipyrepro", "check", str(notebook), "--html", str(page), "--json", "--quiet"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert done.returncode == 2, done.stderr[-3000:]  # untagged errors: 2, and the page is still written
    data = json.loads(done.stdout)
    sections = _sections(page.read_text(encoding="utf-8"))
    outcomes = {str(cell["index"]): cell["outcome"] for cell in data["cells"]}
    assert {index: section.split("'")[1].split()[1] for index, section in sections.items()} == outcomes
    for error in data["reproduced_errors"]:
        section = _text(sections[str(error["cell"]["index"])])
        assert f"The same exception in every run: {error['ename']}: {error['evalue']}" in section
    (finding,) = data["hidden_state"]["findings"]
    section = _text(sections[str(finding["cell"]["index"])])
    assert finding["text"] in section and finding["fix"] in section
