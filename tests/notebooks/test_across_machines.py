"""Two "machines" on one CPU: a CNN notebook saved under one and checked under the other, with real `ipyrepro check`.

The AVX2 "laptop" is this machine with ATen, oneDNN and MKL capped at AVX2 (the variables of AVX2_LAPTOP); on an
AVX-512 CPU its convolutions give other bits. The portable profile pins both to the same kernels.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import torch
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

AVX2_LAPTOP = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}
PINNED = (*AVX2_LAPTOP, "MKL_CBWR", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "DNNL_MAX_CPU_ISA")

pytestmark = pytest.mark.skipif(
    torch.backends.cpu.get_cpu_capability() != "AVX512",
    reason="simulating an AVX2 laptop needs an AVX-512 CPU (elsewhere both 'machines' run the same kernels)",
)

CELLS = [
    ("markdown", "# A small CNN\nTrained for three steps on random images."),
    ("code", "import torch\nimport torch.nn as nn\nimport torch.nn.functional as F"),
    (
        "code",
        "images = torch.randn(32, 1, 12, 12)\nlabels = torch.randint(0, 10, (32,))\n"
        "model = nn.Sequential(nn.Conv2d(1, 8, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(200, 10))\n"
        "optimizer = torch.optim.SGD(model.parameters(), lr=0.1)",
    ),
    ("markdown", "## Training"),
    (
        "code",
        "for step in range(3):\n    optimizer.zero_grad()\n    logits = model(images)\n"
        "    loss = F.cross_entropy(logits, labels)\n    loss.backward()\n    optimizer.step()\n"
        "    print(f'step {step}: loss {loss.item()!r}')",
    ),
    ("code", "probs = F.softmax(model(images), 1)\nprobs[0].tolist()"),
    ("code", "raise ValueError('an expected error')"),
]


def write_notebook(path: Path) -> Path:
    """nbformat 4.4 (no cell ids), stale outputs, execution counts out of order, an expected error."""
    notebook = new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3"}})
    counts = iter([4, 2, 9, 1, 3])
    for kind, source in CELLS:
        if kind == "markdown":
            notebook.cells.append(new_markdown_cell(source))
            continue
        cell = new_code_cell(source, execution_count=next(counts))
        cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="stale output\n")]
        if source.startswith("raise"):
            cell.metadata["tags"] = ["raises-exception"]
        notebook.cells.append(cell)
    notebook.nbformat_minor = 4
    for cell in notebook.cells:
        cell.pop("id", None)
    path.write_text(json.dumps(notebook, indent=1))
    return path


def ipyrepro_check(folder: Path, machine: dict[str, str], *options: str) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if key not in PINNED}
    return subprocess.run(
        [sys.executable, "-m", "ipyrepro", "check", "cnn.ipynb", "--quiet", *options],
        cwd=folder,
        env={**env, **machine},
        capture_output=True,
        text=True,
        timeout=900,
    )


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("machines")
    write_notebook(folder / "cnn.ipynb")
    saved = ipyrepro_check(folder, {}, "--save", "avx512.json", "--trace-ops")
    assert saved.returncode == 0, saved.stdout + saved.stderr
    assert "Saved the fingerprint to" in saved.stdout
    return folder


def test_saved_on_avx512_checked_on_the_avx2_laptop(folder: Path) -> None:
    done = ipyrepro_check(folder, AVX2_LAPTOP, "--against", "avx512.json", "--trace-ops")
    assert done.returncode == 1, done.stdout + done.stderr
    out = done.stdout
    assert "Against avx512.json: DIFFERS" in out
    assert "cell 4 (3 of 5 code cells, id 'cell-4'): outputs differ" in out
    assert "cell 2 (2 of 5 code cells" not in out  # the random data and weights agree
    assert "First state divergence: cell 4 (3 of 5 code cells, id 'cell-4'): logits, loss, model differ" in out
    assert re.search(r"\n    stdout, line \d here: step \d: loss [\d.]+\n    stdout, line \d there: step \d: loss", out)
    assert (
        "First divergent op: aten::convolution at cell 4 (3 of 5 code cells, id 'cell-4'), "
        "line 3 (logits = model(images)): same inputs, different outputs; "
        "explained by the CPU capability (AVX2 here, AVX512 there)"
    ) in out
    verdict = "Bitwise equality not expected: CPU kernels AVX2 here, AVX512 there; run both with the portable profile"
    assert verdict in out
    assert "cpu.capability: AVX2 here, AVX512 there (likely to change numbers" in out
    assert out.index("cpu.capability") < out.index("variables.ATEN_CPU_CAPABILITY")  # ranked


def test_fingerprint_is_stable_and_documented(folder: Path) -> None:
    again = ipyrepro_check(folder, {}, "--save", "again.json", "--trace-ops")
    assert again.returncode == 0, again.stdout + again.stderr
    first, second = (json.loads((folder / name).read_text()) for name in ("avx512.json", "again.json"))
    first.pop("created")
    second.pop("created")
    assert first == second
    assert first["format"] == "ipyrepro.notebook-fingerprint" and first["schema"] == 1
    assert [cell["index"] for cell in first["cells"]] == [1, 2, 4, 5, 6]
    assert first["environment"]["cpu"]["capability"] == "AVX512"
    assert first["environment"]["ipyrepro"] == {"enabled": True, "seed": 0, "reseed": "cell", "portable": False}
    docs = (Path(__file__).parents[2] / "docs" / "across-machines.md").read_text()
    for name in ("format", "schema", "created", "notebook", "options", "environment", "cells", "trace"):
        assert f"`{name}`" in docs
    for section in first["environment"]:
        assert f"`{section}`" in docs
    explained = subprocess.run(
        [sys.executable, "-m", "ipyrepro", "explain", "avx512.json", "again.json"],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert explained.returncode == 0, explained.stdout + explained.stderr
    assert "Outputs: all 5 code cells match bitwise" in explained.stdout


def test_portable_profile_on_both_sides_matches_bitwise(folder: Path) -> None:
    saved = ipyrepro_check(folder, {}, "--save", "portable.json", "--portable")
    assert saved.returncode == 0, saved.stdout + saved.stderr
    assert json.loads((folder / "portable.json").read_text())["environment"]["ipyrepro"]["portable"] is True
    done = ipyrepro_check(folder, AVX2_LAPTOP, "--against", "portable.json", "--portable")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Against portable.json: OK" in done.stdout
    assert "Outputs: all 5 code cells match bitwise" in done.stdout
    assert "Bitwise equality expected" in done.stdout


def test_against_a_missing_file_fails_before_running(folder: Path) -> None:
    done = ipyrepro_check(folder, {}, "--against", "nowhere.json")
    assert done.returncode == 2
    assert "nowhere.json" in done.stderr and "does not exist" in done.stderr
    assert "run 1" not in done.stdout
