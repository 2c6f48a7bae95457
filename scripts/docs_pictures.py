"""Retake the pictures the documentation shows, from the real thing (`scripts/docs-pictures`).

- docs/panel.png: `%repro panel` in JupyterLab after `%repro on --seed 42` and a cell that set
  `cudnn.benchmark = True`, the whole panel (header, ON switch, controls, status) and nothing around it.
- docs/check-report.png: the page `ipyrepro check --html` writes for a small notebook that draws from an
  unseeded generator, as Chromium shows it.

Needs the test extra (JupyterLab, Playwright) and Chromium at /usr/bin/chromium, as the browser tests do. The
JupyterLab server gets throwaway config and runtime folders (tests/jupyterlab.py), so nothing of the user's is
read or changed; only the two pictures are written.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.jupyterlab import CHROMIUM, CHROMIUM_ARGS, notebook_json, open_notebook, running_lab  # noqa: E402

PANEL_CELLS = [
    "%load_ext ipyrepro\n%repro on --seed 42",
    "%repro panel",
    "import torch\ntorch.backends.cudnn.benchmark = True  # a stray line undoes part of the recipe",
]
SCALE = 1.5  # device pixels per CSS pixel: text that reads at the width a README shows

# A notebook as someone saves it: markdown between cells, one line that draws a new order every run.
EXPERIMENT = {
    "cells": [
        {"cell_type": "markdown", "id": "intro", "metadata": {}, "source": "# A small experiment"},
        {
            "cell_type": "code",
            "id": "imports",
            "metadata": {},
            "execution_count": 1,
            "outputs": [],
            "source": "import numpy as np\nimport torch\n\ndata = torch.randn(64, 4)",
        },
        {"cell_type": "markdown", "id": "batch-md", "metadata": {}, "source": "A batch, in a shuffled order:"},
        {
            "cell_type": "code",
            "id": "batch",
            "metadata": {},
            "execution_count": 2,
            "outputs": [],
            "source": "rng = np.random.default_rng()  # no seed: another order every run\n"
            "order = torch.as_tensor(rng.permutation(64))\norder[:8]",
        },
        {
            "cell_type": "code",
            "id": "train",
            "metadata": {},
            "execution_count": 3,
            "outputs": [],
            "source": "model = torch.nn.Linear(4, 1)\nloss = model(data[order[:32]]).pow(2).mean()\n"
            "round(loss.item(), 4)",
        },
    ],
    "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}},
    "nbformat": 4,
    "nbformat_minor": 5,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs", help="folder for the pictures (default docs/)")
    parser.add_argument("--only", choices=("panel", "check-report"), help="retake only this picture")
    args = parser.parse_args(argv)
    if not Path(CHROMIUM).exists():
        print(f"scripts/docs-pictures: {CHROMIUM} is missing: install Debian's chromium", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ipyrepro-pictures-") as scratch:
        if args.only in (None, "check-report"):
            check_report(Path(scratch), args.out / "check-report.png")
        if args.only in (None, "panel"):
            panel(Path(scratch), args.out / "panel.png")
    return 0


def panel(scratch: Path, target: Path) -> None:
    """The panel, whole, in a window tall enough that nothing of JupyterLab covers or crops it."""
    from playwright.sync_api import expect, sync_playwright

    (scratch / "lab").mkdir()
    with running_lab(scratch / "lab") as lab:
        (lab.root / "panel.ipynb").write_text(json.dumps(notebook_json(PANEL_CELLS)))
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            try:
                page = browser.new_page(viewport={"width": 1100, "height": 2400}, device_scale_factor=SCALE)
                open_notebook(page, lab, "jupyterlab4", "panel.ipynb")
                page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
                shown = page.locator(".ipyrepro-panel")
                expect(shown).to_be_visible(timeout=60_000)
                expect(page.locator(".ipyrepro-master")).to_contain_text("ON", timeout=30_000)
                expect(page.locator(".ipyrepro-benchmark.ipyrepro-drift")).to_be_visible(timeout=60_000)
                page.mouse.move(0, 0)  # no hover highlight, no tooltip
                shown.scroll_into_view_if_needed()
                shown.screenshot(path=str(target))
            finally:
                browser.close()
    print(f"wrote {target}")


def check_report(scratch: Path, target: Path) -> None:
    """`ipyrepro check --html` on the experiment notebook (it differs), shown as Chromium renders the page."""
    from playwright.sync_api import sync_playwright

    notebook, page_path = scratch / "experiment.ipynb", scratch / "experiment-report.html"
    notebook.write_text(json.dumps(EXPERIMENT, indent=1))
    done = subprocess.run(  # from its folder, so that the page names the notebook as a user would type it
        [sys.executable, "-m", "ipyrepro", "check", notebook.name, "--html", page_path.name, "--quiet"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=scratch,
    )
    if done.returncode != 1 or not page_path.exists():
        raise RuntimeError(f"the experiment should differ (exit 1); got {done.returncode}:\n{done.stdout}{done.stderr}")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 300}, device_scale_factor=SCALE)
            page.goto(page_path.as_uri())  # the page's own height: full_page takes it all
            page.screenshot(path=str(target), full_page=True)
        finally:
            browser.close()
    print(f"wrote {target}")


if __name__ == "__main__":
    sys.exit(main())
