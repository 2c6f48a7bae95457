"""The same numbers in every frontend.

One notebook, run with kernels installed by `ipyrepro kernel install --reseed source|cell`,
in JupyterLab 4 and Notebook 7 (headless Chromium: Run All, save, read the saved file),
by `jupyter nbconvert --execute`, papermill, `jupyter execute` and `ipyrepro check`, checked
by `pytest --nbval` against what JupyterLab saved, and fed to a real terminal `ipython`.
The last cell reports whether the frontend sent a cell id: the table of frontends in docs/reseeding.md
comes from these runs. Every run is made once per module and shared by the tests.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from itertools import combinations
from pathlib import Path

import pytest

from ipyrepro.notebooks.check import check
from ipyrepro.notebooks.kernelspec import startup_lines

from ..jupyterlab import CHROMIUM, CHROMIUM_ARGS, OUTPUT, Lab, command, notebook_json, open_notebook

pytestmark = [pytest.mark.browser, pytest.mark.kernel]

DRAW = "print(random.random(), np.random.rand(), torch.rand(2).tolist())"
CELLS = [
    "%load_ext ipyrepro",  # the kernel has it already: this must print nothing, in every frontend
    "%repro on --seed 0",  # a notebook's own `on` keeps the kernel's re-seed mode
    "import random\nimport numpy as np\nimport torch",
    DRAW,
    DRAW,  # identical code: under `source` identical draws, by design
    "model = torch.nn.Linear(3, 2); print(model.weight.tolist(), model.bias.tolist())",
    "for step in range(2):\n    print(step, random.random(), np.random.rand(), torch.rand(1).item())",
    'print("again:", random.random(), np.random.rand(), torch.rand(2).tolist())',
    "torch.randn(3)",
    "import ipyrepro; s = ipyrepro.status(); "
    'print(f"cell id sent: {s.cell_id is not None}, seed from: {s.derivation}")',
]
PROBE = len(CELLS) - 1  # frontend-dependent by design: nbval and check skip it by its tag
TAGS = {PROBE: ["nbval-ignore-output"]}
IDENTICAL = (3, 4)
DRAWING = (3, 5, 6, 7)  # cells whose outputs hold drawn floats
KERNELS = {"source": "ipyrepro-source", "cell": "ipyrepro-cell"}
FLOAT = re.compile(r"-?\d+\.\d{5,}(?:e-?\d+)?")  # the drawn floats (full repr), not step counters


def outputs(notebook: dict) -> list[list[tuple[str, ...]]]:
    """Each code cell's outputs as compared: streams (consecutive ones joined), results, errors."""
    cells = []
    for cell in notebook["cells"]:
        if cell["cell_type"] != "code":
            continue
        found: list[tuple[str, ...]] = []
        for output in cell.get("outputs", []):
            kind = output["output_type"]
            if kind == "stream":
                text = "".join(output["text"]) if isinstance(output["text"], list) else output["text"]
                if found and found[-1][:2] == ("stream", output["name"]):
                    found[-1] = ("stream", output["name"], found[-1][2] + text)
                else:
                    found.append(("stream", output["name"], text))
            elif kind == "error":
                found.append(("error", output["ename"], output["evalue"]))
            else:
                plain = output["data"].get("text/plain", "")
                found.append((kind, "".join(plain) if isinstance(plain, list) else plain))
        cells.append(found)
    return cells


def numbers(notebook: dict) -> list[list[tuple[str, ...]]]:
    """The outputs of every cell but the probe."""
    return outputs(notebook)[:PROBE]


def draws(notebook: dict) -> list[list[tuple[str, ...]]]:
    """The outputs of the cells after `%repro on` (whose output names the mode)."""
    return numbers(notebook)[2:]


def probe(notebook: dict) -> str:
    return "".join(item[-1] for item in outputs(notebook)[PROBE]).strip()


def floats(cell: list[tuple[str, ...]]) -> set[str]:
    return {number for item in cell for number in FLOAT.findall(item[-1])}


def run(args: list[str], lab: Lab, cwd: Path, timeout: float = 240) -> subprocess.CompletedProcess:
    done = subprocess.run(args, env=lab.env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{args}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def _save(page, path: Path) -> dict:
    """File > Save, then read the file back once the server has written every cell's outputs."""
    command(page, "docmanager:save")
    deadline = time.monotonic() + 30
    while True:
        saved = json.loads(path.read_text())
        if all(cell.get("execution_count") for cell in saved["cells"]) or time.monotonic() > deadline:
            return saved
        page.wait_for_timeout(500)
        command(page, "docmanager:save")


class Runs:
    """Every run of the notebook, made when a test first asks for it and kept for the module."""

    def __init__(self, lab: Lab, folder: Path) -> None:
        self.lab, self.folder = lab, folder
        self.cache: dict[tuple[str, str], dict] = {}
        for mode, kernel in KERNELS.items():
            installed = run(
                [sys.executable, "-m", "ipyrepro", "kernel", "install", "--name", kernel, "--prefix", str(lab.prefix)]
                + (["--reseed", mode] if mode != "cell" else []),
                lab,
                folder,
            )
            assert f"--reseed {mode}" in installed.stdout
            self.source(mode).write_text(json.dumps(notebook_json(CELLS, kernel, TAGS)))

    def source(self, mode: str) -> Path:
        return self.folder / f"frontends-{mode}.ipynb"

    def get(self, tool: str, mode: str) -> dict:
        if (tool, mode) not in self.cache:
            self.cache[tool, mode] = getattr(self, "_" + tool.replace("-", "_"))(mode)
        return self.cache[tool, mode]

    def _copy(self, mode: str, name: str, folder: Path | None = None) -> Path:
        target = (folder or self.folder) / f"{name}-{mode}.ipynb"
        shutil.copy(self.source(mode), target)
        return target

    def _browser(self, mode: str, frontend: str) -> dict:
        from playwright.sync_api import sync_playwright

        path = self._copy(mode, frontend, self.lab.root)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            try:
                page = browser.new_page(viewport={"width": 1280, "height": 1000})
                page.on("dialog", lambda dialog: dialog.accept())
                open_notebook(page, self.lab, frontend, path.name)
                command(page, "runmenu:run-all")
                page.wait_for_function(
                    """count => {
                        const cells = window.jupyterapp.shell.currentWidget.content.widgets;
                        return cells.length === count && cells.every(cell => cell.model.executionCount)
                            && window.jupyterapp.shell.currentWidget.sessionContext.session.kernel.status === 'idle';
                    }""",
                    arg=len(CELLS),
                    timeout=120_000,
                )
                saved = _save(page, path)
            except Exception:
                OUTPUT.mkdir(exist_ok=True)
                if "page" in locals():
                    page.screenshot(path=str(OUTPUT / f"frontends-{frontend}-{mode}-failure.png"), full_page=True)
                raise
            finally:
                browser.close()
        counts = [cell.get("execution_count") for cell in saved["cells"]]
        assert counts == list(range(1, len(CELLS) + 1)), f"the saved notebook shows one Run All: {counts}"
        return saved

    def _jupyterlab4(self, mode: str) -> dict:
        return self._browser(mode, "jupyterlab4")

    def _notebook7(self, mode: str) -> dict:
        return self._browser(mode, "notebook7")

    def _nbconvert(self, mode: str) -> dict:
        path = self._copy(mode, "nbconvert-in")
        output = self.folder / f"nbconvert-{mode}.ipynb"
        run(
            ["jupyter", "nbconvert", "--to", "notebook", "--execute", "--output", output.name, path.name],
            self.lab,
            self.folder,
        )
        return json.loads(output.read_text())

    def _papermill(self, mode: str) -> dict:
        path = self._copy(mode, "papermill-in")
        output = self.folder / f"papermill-{mode}.ipynb"
        run(["papermill", "--no-progress-bar", path.name, output.name], self.lab, self.folder)
        return json.loads(output.read_text())

    def _jupyter_execute(self, mode: str) -> dict:
        path = self._copy(mode, "execute")
        run(["jupyter", "execute", "--inplace", path.name], self.lab, self.folder)
        return json.loads(path.read_text())

    def _check(self, mode: str) -> dict:
        """`ipyrepro check` in the notebook's own kernel: two runs that must agree.

        Under `source` without `--reseed`: check keeps the mode the kernel was installed with.
        """
        from jupyter_client.kernelspec import KernelSpecManager

        manager = KernelSpecManager(kernel_dirs=[str(self.lab.prefix / "share" / "jupyter" / "kernels")])
        report = check(
            self.source(mode), runs=2, reseed=None if mode == "source" else mode, kernel_spec_manager=manager
        )
        assert report.exit_code == 0, str(report)
        assert report.kernel == KERNELS[mode]
        notebook = json.loads(self.source(mode).read_text())
        for index, cell in enumerate(notebook["cells"]):
            cell["outputs"] = report.runs[0].outputs[index]
        return notebook


@pytest.fixture(scope="module")
def runs(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runs]:
    yield Runs(lab, tmp_path_factory.mktemp("frontends"))


ID_LESS = ["nbconvert", "papermill", "jupyter-execute"]


def test_jupyterlab_saves_no_output_for_load_ext_and_distinct_draws_for_distinct_code(runs: Runs) -> None:
    for mode in KERNELS:
        saved = numbers(runs.get("jupyterlab4", mode))
        assert saved[0] == [], f"`%load_ext ipyrepro` printed something under {mode}: {saved[0]}"
        assert all(kind != "error" for cell in saved for kind, *_ in cell)
        assert all(floats(saved[i]) for i in DRAWING), saved
        assert saved[1] == [("stream", "stdout", saved[1][0][2])] and f"re-seed {mode}" in saved[1][0][2]


@pytest.mark.parametrize("tool", [*ID_LESS, "check"])
def test_under_source_every_tool_saves_what_jupyterlab_saved(runs: Runs, tool: str) -> None:
    assert numbers(runs.get(tool, "source")) == numbers(runs.get("jupyterlab4", "source"))


def test_under_source_identical_code_draws_identical_values(runs: Runs) -> None:
    saved = numbers(runs.get("jupyterlab4", "source"))
    assert saved[IDENTICAL[0]] == saved[IDENTICAL[1]]


def nbval(notebook: dict, folder: Path, lab: Lab) -> subprocess.CompletedProcess:
    """`pytest --nbval` on `notebook` in its own kernel, outside this repository's pytest configuration."""
    (folder / "saved.ipynb").write_text(json.dumps(notebook))
    (folder / "pytest.ini").write_text("[pytest]\n")
    # pytest-randomly (a test dependency) would shuffle nbval's cells; nbval users run them in order
    args = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly"]
    args += ["--nbval", "saved.ipynb"]
    return subprocess.run(args, env=lab.env, cwd=folder, capture_output=True, text=True, timeout=240)


def test_nbval_passes_against_the_outputs_jupyterlab_saved(runs: Runs, tmp_path: Path) -> None:
    done = nbval(runs.get("jupyterlab4", "source"), tmp_path, runs.lab)
    assert done.returncode == 0 and f"{len(CELLS)} passed" in done.stdout, done.stdout[-4000:]


def test_terminal_ipython_draws_what_source_draws(runs: Runs, lab: Lab, tmp_path: Path) -> None:
    lines = startup_lines(0, "source") + [line for cell in CELLS for line in (cell, "", "")]
    done = subprocess.run(
        [sys.executable, "-m", "IPython", "--no-banner", "--colors=NoColor", "--no-confirm-exit"],
        input="\n".join(lines) + "\n",
        env={**lab.env, "IPYTHONDIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    transcript = done.stdout
    assert done.returncode == 0 and "Error" not in transcript, transcript + done.stderr
    assert "already loaded" not in transcript
    position = 0
    for index, cell in enumerate(numbers(runs.get("jupyterlab4", "source"))):
        for item in cell:
            found = transcript.find(item[-1].strip(), position)
            assert found >= 0, (
                f"cell {index}'s {item[-1]!r} is not in the terminal's output after {position}:\n{transcript}"
            )
            position = found
    assert "cell id sent: False, seed from: source" in transcript


def test_under_cell_jupyterlab_notebook7_and_check_agree(runs: Runs) -> None:
    lab = numbers(runs.get("jupyterlab4", "cell"))
    assert numbers(runs.get("notebook7", "cell")) == lab
    assert numbers(runs.get("check", "cell")) == lab
    assert lab[IDENTICAL[0]] != lab[IDENTICAL[1]]  # two cells, two ids: different draws
    assert draws(runs.get("jupyterlab4", "cell")) != draws(runs.get("jupyterlab4", "source"))


def test_under_cell_the_id_less_tools_agree_and_draw_what_source_draws(runs: Runs) -> None:
    first = numbers(runs.get(ID_LESS[0], "cell"))
    for tool in ID_LESS[1:]:
        assert numbers(runs.get(tool, "cell")) == first, tool
    assert draws(runs.get(ID_LESS[0], "cell")) == draws(runs.get("jupyterlab4", "source"))  # `cell` fell back
    assert draws(runs.get(ID_LESS[0], "cell")) != draws(runs.get("jupyterlab4", "cell"))


def test_nbval_sends_no_cell_id_either(runs: Runs, tmp_path: Path) -> None:
    """nbval under the `cell` kernel reproduces what the id-less tools saved (and so not JupyterLab's)."""
    done = nbval(runs.get("nbconvert", "cell"), tmp_path, runs.lab)
    assert done.returncode == 0 and f"{len(CELLS)} passed" in done.stdout, done.stdout[-4000:]


ALL = ["jupyterlab4", "notebook7", *ID_LESS, "check"]
SENDS_IDS = {"jupyterlab4": True, "notebook7": True, "check": True, "nbconvert": False, "papermill": False}


@pytest.mark.parametrize("tool", ALL)
def test_which_frontends_send_cell_ids(runs: Runs, tool: str) -> None:
    sends = SENDS_IDS.get(tool, False)
    assert probe(runs.get(tool, "cell")) == f"cell id sent: {sends}, seed from: {'cell' if sends else 'source'}"


EVERY_RUN = [(tool, mode) for tool in ALL for mode in KERNELS if tool != "notebook7" or mode == "cell"]


@pytest.mark.parametrize(("tool", "mode"), EVERY_RUN)
def test_no_two_cells_with_different_code_draw_the_same_values(runs: Runs, tool: str, mode: str) -> None:
    cells = numbers(runs.get(tool, mode))
    distinct = [i for i in range(len(cells)) if i != IDENTICAL[1] and floats(cells[i])]
    for a, b in combinations(distinct, 2):
        assert not floats(cells[a]) & floats(cells[b]), (tool, mode, CELLS[a], CELLS[b])


def test_check_against_saved_passes_on_what_jupyterlab_saved_and_names_an_edited_output(
    runs: Runs, tmp_path: Path
) -> None:
    """`ipyrepro check --against-saved` on what JupyterLab saved under the `source` kernel (nbval's question)."""
    from jupyter_client.kernelspec import KernelSpecManager

    manager = KernelSpecManager(kernel_dirs=[str(runs.lab.prefix / "share" / "jupyter" / "kernels")])
    saved = runs.get("jupyterlab4", "source")
    path = tmp_path / "saved-by-jupyterlab.ipynb"
    path.write_text(json.dumps(saved))
    report = check(path, against_saved=True, kernel_spec_manager=manager)
    assert report.exit_code == 0, str(report)
    assert report.kernel == KERNELS["source"] and report.differences == []
    # `%load_ext ipyrepro` and the imports ran and printed nothing: compared (both empty), not "not saved"
    assert report.not_saved == [] and {c.index for c in report.cells if c.position in (1, 3)} <= report.compared
    assert "as the notebook was saved: it was saved with the ipyrepro kernel" in report.mode
    assert any(line.startswith("OK: ") for line in str(report).splitlines()) and "not saved" not in str(report)

    edited = json.loads(json.dumps(saved))
    output = edited["cells"][IDENTICAL[1]]["outputs"][0]
    text = "".join(output["text"]) if isinstance(output["text"], list) else output["text"]
    output["text"] = text.replace("0.", "0.9", 1)
    path.write_text(json.dumps(edited))
    report = check(path, against_saved=True, kernel_spec_manager=manager, causes=False)
    assert report.exit_code == 1, str(report)
    assert [(d.cell.position, d.what, d.runs) for d in report.differences] == [(IDENTICAL[1] + 1, "stdout", (0, 1))]
    assert "cell 5 of 10 (code cell 5 of 10, id 'cell-4'): stdout differs between the saved outputs and run 1" in str(
        report
    )
