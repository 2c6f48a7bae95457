"""A real JupyterLab server and headless Chromium for browser tests; one server is shared by all of them.

The server gets throwaway IPython/Jupyter dirs and a kernelspec prefix on its
JUPYTER_PATH (`Lab.prefix`), so a test can `ipyrepro kernel install --prefix`
a kernel there and open notebooks that use it, without restarting the server.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
FRONTENDS = {"jupyterlab4": "/lab/tree", "notebook7": "/notebooks"}  # where each opens a notebook


@dataclass
class Lab:
    url: str
    token: str
    root: Path  # the server's root_dir: notebooks written here can be opened
    prefix: Path  # on the server's JUPYTER_PATH as PREFIX/share/jupyter: kernelspecs installed here are found
    env: dict[str, str]  # the server's environment, for tools that must see the same kernelspecs

    def notebook_url(self, frontend: str, name: str) -> str:
        """`reset`: JupyterLab would otherwise reopen every notebook a test opened before, and focus one."""
        return f"{self.url}{FRONTENDS[frontend]}/{name}?token={self.token}" + ("&reset" if "lab" in frontend else "")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def running_lab(base: Path) -> Iterator[Lab]:
    """JupyterLab on 127.0.0.1 with a token and throwaway config; stopped by its PID afterwards."""
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
    root, prefix = base / "notebooks", base / "prefix"
    root.mkdir()
    (prefix / "share" / "jupyter" / "kernels").mkdir(parents=True)
    token, port = secrets.token_hex(16), _free_port()
    env = {
        **os.environ,
        **{name: str(path) for name, path in dirs.items()},
        "JUPYTER_PATH": str(prefix / "share" / "jupyter"),
    }
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
        yield Lab(url, token, root, prefix, env)
    finally:
        server.terminate()  # by its PID; the server shuts its kernels down on SIGTERM
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


def notebook_json(cells: list[str], kernel: str = "python3", tags: dict[int, list[str]] | None = None) -> dict:
    """An nbformat 4.5 notebook with code cells `cell-0`, `cell-1`, ... for `kernel`."""
    return {
        "cells": [
            {
                "cell_type": "code",
                "execution_count": None,
                "id": f"cell-{i}",
                "metadata": {"tags": (tags or {})[i]} if i in (tags or {}) else {},
                "outputs": [],
                "source": source,
            }
            for i, source in enumerate(cells)
        ],
        "metadata": {
            "kernelspec": {"display_name": kernel, "language": "python", "name": kernel},
            "language_info": {"name": "python"},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }


def accept_dialogs(page) -> None:
    """JupyterLab's own dialogs (kernel choice, build notices) block clicks: accept any that is open."""
    while page.locator(".jp-Dialog").count():
        page.locator(".jp-Dialog .jp-mod-accept").first.click()
        page.wait_for_timeout(200)


def command(page, name: str) -> None:
    page.evaluate("command => window.jupyterapp.commands.execute(command)", name)


def open_notebook(page, lab: Lab, frontend: str, name: str) -> None:
    """Open the notebook and wait until its kernel is there, as a user would before Run All."""
    page.goto(lab.notebook_url(frontend, name))
    page.wait_for_function(
        "() => window.jupyterapp && window.jupyterapp.shell.currentWidget "
        "&& window.jupyterapp.shell.currentWidget.sessionContext",
        timeout=60_000,
    )
    page.wait_for_function("() => window.jupyterapp.shell.currentWidget.sessionContext.session?.kernel", timeout=60_000)
    accept_dialogs(page)


def open_page(page: Path, check: Callable[[Any], None]) -> tuple[list[str], list[str]]:
    """Open a saved page (a report) in Chromium, let images load, run `check(tab)`: the console errors and the URLs
    it requested, for a test to assert that nothing ran and nothing was fetched."""
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    requests: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            tab = browser.new_page(viewport={"width": 1280, "height": 1000})
            tab.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
            tab.on("pageerror", lambda error: errors.append(str(error)))
            tab.on("request", lambda request: requests.append(request.url))
            tab.goto(page.as_uri(), wait_until="load")
            tab.wait_for_timeout(500)  # any onerror/onload handler would have fired by now
            check(tab)
        finally:
            browser.close()
    return errors, requests
