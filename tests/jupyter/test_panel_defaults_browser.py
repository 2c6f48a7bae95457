"""In a real JupyterLab: a re-seed mode clicked while ipyrepro is off survives switching it on."""

from __future__ import annotations

import json
import re

import pytest

from ..jupyterlab import CHROMIUM, CHROMIUM_ARGS, OUTPUT, Lab, accept_dialogs, notebook_json, open_notebook

pytestmark = pytest.mark.browser

CHECK = "import ipyrepro\ns = ipyrepro.status()\nprint(f'CHECK enabled={s.enabled} reseed={s.reseed} seed={s.seed}')"


def test_a_mode_clicked_while_off_is_kept_when_the_master_switch_turns_on(lab: Lab) -> None:
    from playwright.sync_api import expect, sync_playwright

    OUTPUT.mkdir(exist_ok=True)
    name = "panel-defaults.ipynb"
    (lab.root / name).write_text(json.dumps(notebook_json(["%load_ext ipyrepro\n%repro panel", CHECK])))
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.on("dialog", lambda dialog: dialog.accept())
            open_notebook(page, lab, "jupyterlab4", name)
            page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
            expect(page.locator(".ipyrepro-panel")).to_be_visible(timeout=60_000)
            checked = page.locator(".jp-OutputArea-output", has_text="CHECK enabled=False")
            expect(checked).to_be_visible(timeout=30_000)
            accept_dialogs(page)

            source = page.locator(".ipyrepro-reseed button", has_text="source")
            source.click()
            expect(source).to_have_class(re.compile("mod-active"))
            page.locator(".ipyrepro-master").click()
            expect(page.locator(".ipyrepro-master")).to_contain_text("ON", timeout=30_000)
            expect(source).to_have_class(re.compile("mod-active"))  # not reset to `cell`

            page.evaluate(
                """() => {
                    const notebook = window.jupyterapp.shell.currentWidget.content;
                    notebook.activeCellIndex = 1;
                    return window.jupyterapp.commands.execute('notebook:run-cell');
                }"""
            )
            on = page.locator(".jp-OutputArea-output", has_text="CHECK enabled=True reseed=source seed=0")
            expect(on).to_be_visible(timeout=30_000)
        except Exception:
            if "page" in locals():
                page.screenshot(path=str(OUTPUT / "panel-defaults-failure.png"), full_page=True)
            raise
        finally:
            browser.close()
