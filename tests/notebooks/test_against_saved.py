"""`ipyrepro check --against-saved` on notebooks as their authors saved them, on another machine.

The notebooks here are saved the way Jupyter saves them: outputs present, markdown between code
cells, execution counts, the outputs of the machine they were made on (a CUDA machine with another
torch, a figure drawn at another DPI). Each check runs real kernels.
"""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import nbformat
import pytest
import torch
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from ipyrepro.cli import main
from ipyrepro.notebook_check import check
from ipyrepro.notebooks.checkjson import validate
from ipyrepro.notebooks.htmlreport import render_html
from ipyrepro.notebooks.savedenv import classify_image, classify_text
from tests.reports import unwrapped

FIGURE = '''import struct, zlib
from IPython.display import display

class Figure:
    """A figure as matplotlib's inline backend shows one: a PNG and `<Figure size WxH with 1 Axes>`."""
    def __init__(self, width, height, dpi):
        self.size = (int(width * dpi), int(height * dpi))
    def __repr__(self):
        return f"<Figure size {self.size[0]}x{self.size[1]} with 1 Axes>"
    def _repr_png_(self):
        w, h = self.size
        rows = b"".join(b"\\x00" + bytes([255 if x != y * w // h else 0 for x in range(w)]) for y in range(h))
        chunk = lambda kind, body: struct.pack(">I", len(body)) + kind + body + struct.pack(
            ">I", zlib.crc32(kind + body))
        return (b"\\x89PNG\\r\\n\\x1a\\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))

fig = Figure(6, 4, dpi=100)
fig'''


def png(width: int, height: int) -> str:
    """A white PNG of that size, base64, as the author's machine drew the figure (at another DPI)."""
    import base64

    rows = b"".join(b"\x00" + b"\xff" * width for _ in range(height))

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    data = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )
    return base64.b64encode(data).decode()


def stdout(text: str) -> nbformat.NotebookNode:
    return new_output("stream", name="stdout", text=text)


def result(text: str, count: int, **more: str) -> nbformat.NotebookNode:
    return new_output("execute_result", data={"text/plain": text, **more}, execution_count=count)


def cuda_machine_notebook(folder: Path, **metadata) -> Path:
    """A course notebook its author seeded with torch.manual_seed(42) and saved on a CUDA machine (torch 1.12)."""
    nb = new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3"}, **metadata})
    nb.cells = [
        new_markdown_cell("# PyTorch fundamentals\nThe versions and the device first."),
        new_code_cell("import torch\ntorch.__version__", execution_count=1, outputs=[result("'1.12.1+cu113'", 1)]),
        new_code_cell(
            'device = "cuda" if torch.cuda.is_available() else "cpu"\nprint(f"Using device: {device}")',
            execution_count=2,
            outputs=[stdout("Using device: cuda\n")],
        ),
        new_markdown_cell("## Random tensors, seeded"),
        new_code_cell(
            "torch.manual_seed(42)\nx = torch.rand(3).to(device)\nx",
            execution_count=3,
            outputs=[result("tensor([0.8823, 0.9150, 0.3829], device='cuda:0')", 3)],
        ),
        new_code_cell("print(torch.rand(2))", execution_count=4, outputs=[stdout("tensor([0.9593, 0.3904])\n")]),
        new_code_cell(
            FIGURE,
            execution_count=5,
            outputs=[result("<Figure size 900x600 with 1 Axes>", 5, **{"image/png": png(900, 600)})],
        ),
        new_code_cell(
            "import time\nstart = time.time()\ntotal = sum(range(10**5))\n"
            'print(f"Train time on {device}: {time.time() - start + 12:.3f} seconds")',
            execution_count=6,
            outputs=[stdout("Train time on cuda: 14.518 seconds\n")],
        ),
        new_code_cell("labels = open('labels.txt').read().split()\nprint(labels)", execution_count=7),
    ]
    nb.cells[-1].outputs = [stdout("['cat', 'dog']\n")]
    (folder / "labels.txt").write_text("cat dog\n")
    path = folder / "fundamentals.ipynb"
    nbformat.write(nb, path)
    return path


def edit(path: Path, change) -> None:
    notebook = json.loads(path.read_text())
    change([cell for cell in notebook["cells"] if cell["cell_type"] == "code"])
    path.write_text(json.dumps(notebook))


# -- kinds, without a kernel ---------------------------------------------------------------


def test_the_environment_patterns_say_what_explains_a_difference() -> None:
    version = classify_text("'1.12.1+cu113'", "'2.13.0+cpu'", "torch.__version__")
    assert (version.kind, version.explained) == ("environment", "torch 1.12.1+cu113 there, 2.13.0+cpu here")
    device = classify_text("tensor([1., 2.], device='cuda:0')", "tensor([1., 2.])")
    assert (device.kind, device.explained) == ("environment", "device cuda:0 there, cpu here")
    figure = classify_text("<Figure size 720x504 with 1 Axes>", "<Figure size 1000x700 with 1 Axes>")
    assert figure.explained == "figure size 720x504 there, 1000x700 here"
    numeric = classify_text("tensor(0.5012)", "tensor(0.5013)")
    assert numeric.kind == "numeric" and 1.9e-4 < numeric.largest_relative < 2.1e-4
    assert classify_text("tensor(3)", "tensor(2)").kind == "value"  # integers that differ are values
    assert classify_text("epoch 4: loss 0.2", "epoch 5: loss 0.2").kind == "value"
    assert classify_text("'1.12.1+cu113'", "'2.13.0+cpu'", environment=False).kind == "value"  # --strict
    base64 = __import__("base64")
    same_ratio = classify_image(base64.b64decode(png(900, 600)), base64.b64decode(png(600, 400)))
    assert (same_ratio.kind, same_ratio.explained) == (
        "environment",
        "figure drawn at 900x600 there, 600x400 here (same aspect ratio)",
    )
    assert classify_image(base64.b64decode(png(900, 600)), base64.b64decode(png(600, 600))).kind == "value"


# -- real kernels ------------------------------------------------------------------------------


@pytest.mark.kernel
def test_a_notebook_saved_on_a_cuda_machine_differs_here_only_by_the_environment(tmp_path: Path, capsys) -> None:
    path = cuda_machine_notebook(tmp_path)
    assert main(["check", str(path), "--against-saved", "--quiet", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    validate(data)
    assert data["saved_mode"] == "it was saved with kernel 'python3', not under ipyrepro"
    found = {(d["cell"]["position"], d["mime"]): (d["kind"], d["explained"]) for d in data["differences"]}
    timing = found.pop((8, "stdout"))
    assert found == {
        (2, "text/plain"): ("environment", f"torch 1.12.1+cu113 there, {torch.__version__} here"),
        (3, "stdout"): ("environment", "device cuda there, cpu here"),
        (5, "text/plain"): ("environment", "device cuda:0 there, cpu here"),
        (7, "image/png"): ("environment", "figure drawn at 900x600 there, 600x400 here (same aspect ratio)"),
        (7, "text/plain"): ("environment", "figure size 900x600 there, 600x400 here"),
    }
    assert timing[0] == "environment" and timing[1].startswith(
        "device cuda there, cpu here; timing 14.518 seconds there"
    )
    assert [cell["outcome"] for cell in data["cells"]] == ["environment"] * 3 + ["matched"] + ["environment"] * 2 + [
        "matched"
    ]
    assert data["environment"][0] == f"torch 1.12.1+cu113 there, {torch.__version__} here"

    report = check(path, against_saved=True, causes=False)  # the same, as text
    text = str(report)
    assert "Environment differences (this machine is not the one the notebook was saved on; " in text
    assert f"text/plain: torch 1.12.1+cu113 there, {torch.__version__} here" in text
    assert text.splitlines()[-1].startswith(
        "OK: 2 of 7 code cells matched; 5 differ only by the environment "
        f"(torch 1.12.1+cu113 there, {torch.__version__} here;"
    )
    page = render_html(report)  # and as HTML: the kind beside each difference, the cells apart in the summary
    assert page.count("<span class='kind environment'>environment</span>") == 6
    assert f"torch 1.12.1+cu113 there, {torch.__version__} here" in page
    assert "Environment differences (they do not fail the check): <a href='#cell-1'>" in page
    strict = check(path, against_saved=True, strict=True, causes=False)  # --strict: no environment patterns
    assert strict.exit_code == 1 and [d.kind for d in strict.differences] == ["value"] * 6


@pytest.mark.kernel
def test_the_authors_seeds_are_kept_and_one_real_change_exits_1_with_its_cause(tmp_path: Path, capsys) -> None:
    path = cuda_machine_notebook(tmp_path)
    # Re-seeding every cell (what a check under ipyrepro does) changes what the author's seed drew in cell 6.
    reseeded = check(path, against_saved=True, seed=0, causes=False)
    assert "(--seed given)" in reseeded.header()
    assert [(d.cell.position, d.kind) for d in reseeded.failing] == [(6, "numeric")]
    (tmp_path / "labels.txt").write_text("cat dog bird\n")  # the data changed since the notebook was saved
    assert main(["check", str(path), "--against-saved", "--quiet"]) == 1
    out = unwrapped(capsys.readouterr().out)
    assert out.splitlines()[0].endswith(
        "as written, as the notebook was saved: it was saved with kernel 'python3', not under ipyrepro, "
        "compared with the saved outputs"
    )
    assert "cell 9 of 9 (code cell 7 of 7, id" in out and "stdout differs between the saved outputs and run 1" in out
    assert (
        "    cause: file-read at cell 9 of 9, line 1: `labels = open('labels.txt').read().split()`: this line reads "
        "a file (or a download): the saved output may come from another version of it." in out
    )
    assert "No cause found" not in out and "cell 6 of 9" not in out  # cell 6 matched: the author's seed was kept
    assert out.splitlines()[-1].startswith("DIFFERS: 1 of 7 code cells differ (1 text/data outputs, 0 images); ")


@pytest.mark.kernel
def test_a_notebook_saved_under_ipyrepro_runs_under_its_seed(tmp_path: Path) -> None:
    path = tmp_path / "repro.ipynb"
    nb = new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3"}})
    nb.metadata["ipyrepro"] = {"seed": 7, "reseed": "source"}
    nb.cells = [new_code_cell("import random\nprint(random.random())", execution_count=1)]
    nbformat.write(nb, path)
    (printed,) = check(path, runs=1, seed=7, reseed="source", causes=False).runs[0].outputs[0]
    nb.cells[0].outputs = [stdout(printed["text"])]  # saved as a kernel under `%repro on --seed 7` printed it
    nbformat.write(nb, path)
    report = check(path, against_saved=True, causes=False)
    assert (report.exit_code, report.seed, report.reseed) == (0, 7, "source")
    assert report.mode.startswith("under ipyrepro (seed 7, re-seed source")
    assert report.mode.endswith("as the notebook was saved: its metadata records `%repro on`")
    as_is = check(path, against_saved=True, as_is=True, causes=False)  # an explicit --as-is wins
    assert as_is.exit_code == 1 and as_is.saved_mode == "--as-is given"


def test_a_notebook_saved_without_outputs_is_an_error_before_any_kernel_starts(tmp_path: Path, capsys) -> None:
    path = tmp_path / "cleared.ipynb"
    nb = new_notebook(metadata={"kernelspec": {"name": "no-such-kernel-ipyrepro", "display_name": "gone"}})
    nb.cells = [new_markdown_cell("# cleared"), new_code_cell("print(1)"), new_code_cell("x = 2")]
    nbformat.write(nb, path)
    assert main(["check", str(path), "--against-saved"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "nothing saved to compare" in captured.err
    assert "kernel" not in captured.err.split("nothing saved to compare")[0]  # no kernel was started or announced
    assert "run 1" not in captured.err
    with pytest.raises(SystemExit) as exit_info:  # --strict alone would change nothing: a usage error
        main(["check", str(path), "--strict"])
    assert exit_info.value.code == 2 and "--strict: it applies to --against-saved" in capsys.readouterr().err


@pytest.mark.kernel
def test_errors_that_follow_from_a_failed_import_are_grouped_under_it(tmp_path: Path) -> None:
    nb = new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3"}})
    helper = "\n".join(["%%writefile helper_functions.py", '"""Plots."""', "import os", ""] + ["# -"] * 3)
    helper += "\nimport torchvision_missing_ipyrepro\n\n\ndef plot_loss_curves(results):\n    return len(results)\n"
    nb.cells = [
        new_code_cell(helper),
        new_code_cell("from helper_functions import plot_loss_curves"),
        new_markdown_cell("## Results"),
        new_code_cell("plot_loss_curves([1, 2])"),
        new_code_cell("print('unrelated')"),
        new_code_cell("curves = plot_loss_curves([3])"),
    ]
    path = tmp_path / "cascade.ipynb"
    nbformat.write(nb, path)
    report = check(path, runs=2, as_is=True)
    data = report.to_dict()
    validate(data)
    assert [(c["cell"]["position"], c["name"], c["root"]["position"]) for c in data["cascades"]] == [
        (4, "plot_loss_curves", 2),
        (6, "plot_loss_curves", 2),
    ]
    assert data["cascades"][0]["text"] == (
        "follows from cell 2: `ModuleNotFoundError: torchvision_missing_ipyrepro` in helper_functions.py line 7"
    )
    assert report.hidden_state == []
    text = str(report)
    reproduced = text.split("Reproduced errors")[1]
    assert reproduced.index("cell 2 of 6") < reproduced.index("then cell 4 of 6") < reproduced.index("then cell 6 of 6")
    assert "tag the cell if the error is expected" not in reproduced.split("then cell 4 of 6")[1]
    assert "    fix: fix the first error, in cell 2 of 6 (code cell 2 of 5" in reproduced
    page = render_html(report)  # the HTML report groups them too: each names the error it follows from
    assert page.count("follows from cell 2: `ModuleNotFoundError: torchvision_missing_ipyrepro`") == 2
    following = [
        (e["run"], e["cell"]["position"], (e["follows_from"] or {}).get("text", "")[:19]) for e in data["errors"]
    ]
    assert following == [
        (1, 2, ""),
        (1, 4, "follows from cell 2"),
        (1, 6, "follows from cell 2"),
        (2, 2, ""),
        (2, 4, "follows from cell 2"),
        (2, 6, "follows from cell 2"),
    ]


@pytest.mark.kernel
def test_a_cause_inside_a_function_names_the_cell_and_line_that_define_it(tmp_path: Path) -> None:
    nb = new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3"}})
    nb.cells = [
        new_markdown_cell("# Noise"),
        new_code_cell(
            "import random\n\ndef noisy(n):\n    total = 0\n    for _ in range(n):\n        total += random.random()\n"
            "    return total",
            execution_count=1,
        ),
        new_code_cell("x = noisy(3)\nprint(round(x, 6))", execution_count=2, outputs=[stdout("1.234567\n")]),
    ]
    path = tmp_path / "noise.ipynb"
    nbformat.write(nb, path)
    report = check(path, against_saved=True)
    ((cause,),) = [report.cell_causes(cell.index) for cell in report.cells if cell.position == 3]
    assert (cause.kind, cause.location, cause.line) == ("unseeded-generator", "cell 2, line 6", 1)
    assert "ipykernel_" not in report.to_json()
    text = str(report)
    assert (
        "    cause: unseeded-generator at cell 2, line 6, called from cell 3, line 1: `total += random.random()`"
        in text
    )


@pytest.mark.kernel
def test_a_cause_with_no_divergent_variable_is_printed_in_the_text(tmp_path: Path) -> None:
    nb = new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3"}})
    nb.cells = [new_code_cell("import random"), new_code_cell("print(random.random())")]
    path = tmp_path / "printonly.ipynb"
    nbformat.write(nb, path)
    report = check(path, runs=2, as_is=True)
    assert report.state.first is None  # no variable diverged: the cause is only the cell's own
    causes = [c["kind"] for cell in report.to_dict()["causes"] for c in cell["causes"]]
    assert causes == ["unseeded-generator"]
    assert "    cause: unseeded-generator at cell 2 of 2, line 1: `print(random.random())`" in str(report)


def test_paths_timings_and_missing_packages_are_the_environment_and_strict_turns_them_off() -> None:
    from ipyrepro.notebooks.cascades import raised_where
    from ipyrepro.notebooks.savedenv import installed_here, missing_here

    path = classify_text("saved to /content/drive/MyDrive/model.pt\n", "saved to /home/ci/work/model.pt\n")
    assert (path.kind, path.explained) == (
        "environment",
        "path /content/drive/MyDrive/model.pt there, /home/ci/work/model.pt here",
    )
    timing = classify_text("epoch 1 took 3.2s\n", "epoch 1 took 41.9s\n")
    assert (timing.kind, timing.explained) == ("environment", "timing 3.2s there, 41.9s here")
    assert classify_text("epoch 1 took 3.2s\n", "epoch 2 took 3.2s\n").kind == "value"
    assert missing_here("ModuleNotFoundError", "No module named 'torchvision_missing_ipyrepro.io'", installed_here) == (
        "torchvision_missing_ipyrepro"
    )
    assert missing_here("ModuleNotFoundError", "No module named 'numpy'", installed_here) is None  # installed here
    assert missing_here("NameError", "name 'x' is not defined", installed_here) is None
    traceback = [
        "\x1b[0;31mModuleNotFoundError\x1b[0m  Traceback (most recent call last)",
        "Cell \x1b[0;32mIn[2], line 1\x1b[0m\n----> 1 from helper_functions import plot_loss_curves",
        "File \x1b[0;32m~/course/helper_functions.py:170\x1b[0m\n--> 170 import torchvision",
        "\x1b[0;31mModuleNotFoundError\x1b[0m: No module named 'torchvision'",
    ]
    assert raised_where(traceback) == "helper_functions.py line 170"
    assert raised_where(traceback[:2] + traceback[3:]) == "line 1"


@pytest.mark.kernel
def test_a_draw_in_an_earlier_cell_that_prints_nothing_is_the_cause_of_the_cell_that_shows_it(tmp_path: Path) -> None:
    nb = new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3"}})
    nb.cells = [
        new_code_cell("import torch", execution_count=1),
        new_code_cell("W = torch.randn(3)", execution_count=2),  # ran, printed nothing: compared, both empty
        new_markdown_cell("The weights' sum:"),
        new_code_cell("total = W.sum()\nprint(f'{total:.4f}')", execution_count=3, outputs=[stdout("0.1234\n")]),
    ]
    path = tmp_path / "weights.ipynb"
    nbformat.write(nb, path)
    report = check(path, against_saved=True)
    assert [(d.cell.position, d.kind) for d in report.failing] == [(4, "numeric")]
    assert report.not_saved == [] and report.cells[1].index in report.compared
    text = str(report)
    assert "    cause: unseeded-generator at cell 2 of 4, line 1: `W = torch.randn(3)`" in text
    assert "No cause found" not in text


@pytest.mark.kernel
def test_numbers_within_the_tolerance_are_reported_and_do_not_fail(tmp_path: Path) -> None:
    path = cuda_machine_notebook(tmp_path)
    edit(path, lambda cells: cells[3]["outputs"][0].update(text="tensor([0.9594, 0.3904])\n"))  # a GPU's rounding
    exact = check(path, against_saved=True, causes=False)
    ((difference,),) = [[d for d in exact.failing if d.cell.position == 6]]
    assert (difference.kind, difference.within_tolerance) == ("numeric", False) and exact.exit_code == 1
    assert 1.0e-4 < difference.largest_relative < 1.1e-4
    tolerant = check(path, against_saved=True, rtol=1e-3, causes=False)
    assert tolerant.exit_code == 0 and tolerant.failing == []
    ((within,),) = [[d for d in tolerant.differences if d.cell.position == 6]]
    assert (within.kind, within.within_tolerance) == ("numeric", True)
    data = tolerant.to_dict()
    validate(data)
    assert [c["outcome"] for c in data["cells"] if c["position"] == 6] == ["matched"]
    text = str(tolerant)
    assert "Numeric differences (the same text but for numbers; --rtol 0.001, --atol 0):" in text
    assert "(within the tolerance: it does not fail the check)" in text
    assert "; 1 matched within the tolerance" in text.splitlines()[-1]
