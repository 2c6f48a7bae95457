"""The panel in a real JupyterLab, clicked in headless Chromium; the kernel confirms what changed."""

from __future__ import annotations

import json
import re

import pytest

from ..jupyterlab import (
    CHROMIUM,
    CHROMIUM_ARGS,
    FRONTENDS,
    OUTPUT,
    Lab,
    accept_dialogs,
    command,
    notebook_json,
    open_notebook,
)

pytestmark = pytest.mark.browser

CHECK = (
    "import torch, ipyrepro\n"
    "print(f'CHECK benchmark={torch.backends.cudnn.benchmark} '\n"
    "      f'algorithms={ipyrepro.status().deterministic_algorithms}')"
)
SET_BY_CELL = "torch.backends.cudnn.benchmark = True\ntorch.use_deterministic_algorithms(False)\nprint('SET BY CELL')"


CONTROLS = ["master", "seed", "apply-seed", "benchmark", "cudnn-deterministic", "algorithms", "cublas", "reseed"]
TITLES = """names => Object.fromEntries(names.map(name => {
    const root = document.querySelector('.ipyrepro-' + name);
    const nodes = root ? [root, ...root.querySelectorAll('[title]')] : [];
    return [name, nodes.map(node => node.getAttribute('title') || '')];
}))"""


def _output(page, text: str):
    """A cell output (not the cell's source) containing `text`."""
    return page.locator(".jp-OutputArea-output", has_text=text)


def _run_new_cell(page, code: str) -> None:
    """Add a cell at the end with `code` and run it, as a user would."""
    page.evaluate(
        """code => {
            const notebook = window.jupyterapp.shell.currentWidget.content;
            notebook.activeCellIndex = notebook.widgets.length - 1;
            return window.jupyterapp.commands.execute('notebook:insert-cell-below').then(() => {
                notebook.activeCell.model.sharedModel.setSource(code);
                return window.jupyterapp.commands.execute('notebook:run-cell');
            });
        }""",
        code,
    )


def _run_cell(page, index: int) -> None:
    page.evaluate(
        """index => {
            const notebook = window.jupyterapp.shell.currentWidget.content;
            notebook.activeCellIndex = index;
            return window.jupyterapp.commands.execute('notebook:run-cell');
        }""",
        index,
    )


@pytest.mark.parametrize("frontend", FRONTENDS)
def test_clicks_change_the_kernel_state_and_cells_change_the_panel(lab: Lab, frontend: str) -> None:
    from playwright.sync_api import expect, sync_playwright

    OUTPUT.mkdir(exist_ok=True)
    name = f"panel-{frontend}.ipynb"
    (lab.root / name).write_text(json.dumps(notebook_json(["%load_ext ipyrepro\n%repro panel", CHECK, SET_BY_CELL])))
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.on("dialog", lambda dialog: dialog.accept())
            open_notebook(page, lab, frontend, name)
            command(page, "runmenu:run-all")  # Run > Run All Cells, in both frontends

            panel = page.locator(".ipyrepro-panel")
            expect(panel).to_be_visible(timeout=60_000)
            expect(_output(page, "SET BY CELL")).to_be_visible(timeout=30_000)
            benchmark = page.locator(".ipyrepro-benchmark input[type=checkbox]")
            deterministic_error = page.locator(".ipyrepro-algorithms button", has_text="error")
            deterministic_off = page.locator(".ipyrepro-algorithms button", has_text="off")

            titles = page.evaluate(TITLES, CONTROLS)
            for name in CONTROLS:  # each control's tooltip reaches the page (the browser shows it on hover)
                assert any(len(title) > 40 for title in titles[name]), (name, titles[name])
            assert any("cudnn.benchmark" in title and "slower" in title for title in titles["benchmark"])

            # a cell changed torch directly: the panel shows it after that cell ran
            expect(benchmark).to_be_checked()
            expect(deterministic_off).to_have_class(re.compile("mod-active"))

            # clicks change the kernel's state, as a new run of the check cell reports
            accept_dialogs(page)
            benchmark.click()
            deterministic_error.click()
            expect(benchmark).not_to_be_checked()
            expect(deterministic_error).to_have_class(re.compile("mod-active"))
            _run_cell(page, 1)
            expect(_output(page, "CHECK benchmark=False algorithms=error")).to_be_visible(timeout=30_000)
            panel.screenshot(path=str(OUTPUT / f"panel-{frontend}.png"))

            # and the reverse again: the cell sets them back, the panel follows
            _run_cell(page, 2)
            expect(benchmark).to_be_checked(timeout=30_000)
            expect(deterministic_off).to_have_class(re.compile("mod-active"))
            expect(page.locator(".ipyrepro-errors")).not_to_contain_text("Error")

            # `%repro on` from a cell, then a change away from it: the panel shows ON and the drift
            _run_new_cell(page, "%repro on --seed 42")
            expect(page.locator(".ipyrepro-master")).to_contain_text("ON", timeout=30_000)
            expect(page.locator(".ipyrepro-seed input")).to_have_value("42")
            expect(benchmark).not_to_be_checked()
            _run_new_cell(page, "torch.backends.cudnn.benchmark = True")
            expect(page.locator(".ipyrepro-benchmark.ipyrepro-drift")).to_be_visible(timeout=30_000)
            expect(page.locator(".ipyrepro-status-area")).to_contain_text("Warning:")
            panel.screenshot(path=str(OUTPUT / f"panel-{frontend}-on.png"))
        except Exception:
            if "page" in locals():
                page.screenshot(path=str(OUTPUT / f"panel-{frontend}-failure.png"), full_page=True)
            raise
        finally:
            browser.close()
    assert (OUTPUT / f"panel-{frontend}.png").stat().st_size > 0
