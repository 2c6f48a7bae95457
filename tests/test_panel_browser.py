"""The panel in a real JupyterLab, clicked in headless Chromium; the kernel confirms what changed."""

from __future__ import annotations

import json
import os
import re
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
OUTPUT = Path(__file__).resolve().parent.parent / "test-output"
CHECK = (
    "import torch, ipyrepro\n"
    "print(f'CHECK benchmark={torch.backends.cudnn.benchmark} '\n"
    "      f'algorithms={ipyrepro.status().deterministic_algorithms}')"
)
SET_BY_CELL = "torch.backends.cudnn.benchmark = True\ntorch.use_deterministic_algorithms(False)\nprint('SET BY CELL')"


FRONTENDS = {"jupyterlab4": "/lab/tree", "notebook7": "/notebooks"}  # where each opens a notebook
CONTROLS = ["master", "seed", "apply-seed", "benchmark", "cudnn-deterministic", "algorithms", "cublas", "reseed"]
TITLES = """names => Object.fromEntries(names.map(name => {
    const root = document.querySelector('.ipyrepro-' + name);
    const nodes = root ? [root, ...root.querySelectorAll('[title]')] : [];
    return [name, nodes.map(node => node.getAttribute('title') || '')];
}))"""


@dataclass
class Lab:
    url: str
    token: str


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _notebook(cells: list[str]) -> dict:
    return {
        "cells": [
            {
                "cell_type": "code",
                "execution_count": None,
                "id": f"cell-{i}",
                "metadata": {},
                "outputs": [],
                "source": source,
            }
            for i, source in enumerate(cells)
        ],
        "metadata": {
            "kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"},
            "language_info": {"name": "python"},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """JupyterLab on 127.0.0.1 with a token and throwaway config; stopped by its PID afterwards."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"{CHROMIUM} is missing: scripts/setup installs Debian's chromium")
    base = tmp_path_factory.mktemp("lab")
    dirs = {
        name: base / name.lower()
        for name in ("IPYTHONDIR", "JUPYTER_CONFIG_DIR", "JUPYTER_RUNTIME_DIR", "JUPYTER_DATA_DIR")
    }
    for path in dirs.values():
        path.mkdir()
    (dirs["JUPYTER_CONFIG_DIR"] / "labconfig").mkdir()
    (dirs["JUPYTER_CONFIG_DIR"] / "labconfig" / "page_config.json").write_text(
        json.dumps({"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}})
    )
    root = base / "notebooks"
    root.mkdir()
    for frontend in FRONTENDS:
        cells = ["%load_ext ipyrepro\n%repro panel", CHECK, SET_BY_CELL]
        (root / f"panel-{frontend}.ipynb").write_text(json.dumps(_notebook(cells)))
    token, port = secrets.token_hex(16), _free_port()
    env = {**os.environ, **{name: str(path) for name, path in dirs.items()}}
    log = (base / "server.log").open("w")
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jupyter",
            "lab",
            "--no-browser",
            "--allow-root",
            "--ip=127.0.0.1",
            f"--port={port}",
            f"--IdentityProvider.token={token}",
            f"--ServerApp.root_dir={root}",
            "--LabApp.expose_app_in_browser=True",
            "--JupyterNotebookApp.expose_app_in_browser=True",
            "--ServerApp.disable_check_xsrf=False",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2):
                    break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"JupyterLab did not start:\n{(base / 'server.log').read_text()}") from None
                time.sleep(0.3)
        yield Lab(url, token)
    finally:
        server.terminate()  # by its PID; the server shuts its kernels down on SIGTERM
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


def _accept_dialogs(page) -> None:
    """JupyterLab's own dialogs (kernel choice, build notices) block clicks: accept any that is open."""
    while page.locator(".jp-Dialog").count():
        page.locator(".jp-Dialog .jp-mod-accept").first.click()
        page.wait_for_timeout(200)


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


def _command(page, command: str) -> None:
    page.evaluate("command => window.jupyterapp.commands.execute(command)", command)


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
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.on("dialog", lambda dialog: dialog.accept())
            page.goto(f"{lab.url}{FRONTENDS[frontend]}/panel-{frontend}.ipynb?token={lab.token}")
            page.wait_for_function(
                "() => window.jupyterapp && window.jupyterapp.shell.currentWidget "
                "&& window.jupyterapp.shell.currentWidget.sessionContext",
                timeout=60_000,
            )
            page.wait_for_function(
                "() => window.jupyterapp.shell.currentWidget.sessionContext.session?.kernel", timeout=60_000
            )
            _accept_dialogs(page)
            _command(page, "runmenu:run-all")  # Run > Run All Cells, in both frontends

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
            _accept_dialogs(page)
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
