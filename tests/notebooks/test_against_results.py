"""`check --against` judges results, not environments: two "machines" on one AVX-512 CPU, real `ipyrepro check`.

The AVX2 "laptop" is this machine with ATen, oneDNN and MKL capped at AVX2 (the kernels inherit the check's
environment). GELU's output then differs bitwise though it prints the same at 4 decimals: the fingerprint's
state digests name the cell and variable, and the op trace the op. A notebook whose results are bitwise equal on
both exits 0 and says what the match means. (A notebook whose printed outputs differ exits 1:
test_across_machines.py.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import torch
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from .test_across_machines import AVX2_LAPTOP, PINNED

pytestmark = [
    pytest.mark.kernel,
    pytest.mark.skipif(
        torch.backends.cpu.get_cpu_capability() != "AVX512",
        reason="simulating an AVX2 laptop needs an AVX-512 CPU (elsewhere both 'machines' run the same kernels)",
    ),
]

GELU = [
    new_markdown_cell("# GELU, printed at 4 decimals"),
    new_code_cell("import torch\nimport torch.nn.functional as F", id="imports"),
    new_code_cell("x = torch.randn(64)\ny = F.gelu(x)", id="gelu"),
    new_code_cell("print(y[:4])", id="show"),
]
EQUAL = [
    new_code_cell("import torch", id="imports"),
    new_markdown_cell("Elementwise ops round the same on any ISA."),
    new_code_cell("z = torch.randn(8) * 3 + 1\nprint(z)", id="scale"),
]


def ipyrepro_check(folder: Path, notebook: str, machine: dict[str, str], *options: str) -> str:
    env = {key: value for key, value in os.environ.items() if key not in PINNED}
    done = subprocess.run(
        [sys.executable, "-m", "ipyrepro", "check", notebook, "--quiet", "--no-causes", *options],
        cwd=folder,
        env={**env, **machine},
        capture_output=True,
        text=True,
        timeout=900,
    )
    return f"exit {done.returncode}\n{done.stdout}{done.stderr}"


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("against")
    for name, cells in (("gelu.ipynb", GELU), ("equal.ipynb", EQUAL)):
        notebook = new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3"}})
        nbformat.write(notebook, folder / name)
    for name in ("gelu", "equal"):
        saved = ipyrepro_check(folder, f"{name}.ipynb", {}, "--save", f"{name}.json", "--trace-ops")
        assert saved.startswith("exit 0\n"), saved
    return folder


def test_a_state_only_difference_names_the_cell_the_variable_and_the_op(folder: Path) -> None:
    out = ipyrepro_check(folder, "gelu.ipynb", AVX2_LAPTOP, "--against", "gelu.json", "--trace-ops")
    assert out.startswith("exit 1\n"), out
    assert "Against gelu.json: DIFFERS" in out
    assert "Outputs: all 3 code cells match bitwise" in out  # y[:4] prints the same on both
    assert (
        "First state divergence: cell 2 (2 of 3 code cells, id 'gelu'): y differs (here vs there); "
        "its printed outputs match"
    ) in out
    assert "First divergent op: aten::gelu at cell 2 (2 of 3 code cells, id 'gelu'), line 2 (y = F.gelu(x))" in out
    assert "DIFFERS: all 3 code cells matched here, but they differ from gelu.json." in out


def test_the_fingerprint_records_each_cells_state_digests(folder: Path) -> None:
    cells = json.loads((folder / "gelu.json").read_text())["cells"]
    assert [sorted(cell["state"]) for cell in cells] == [[], ["x", "y"], ["x", "y"]]  # modules are not state
    assert all(digest.startswith("xxh3") for cell in cells for digest in cell["state"].values())


def test_bitwise_equal_results_exit_0_with_what_the_match_means(folder: Path) -> None:
    out = ipyrepro_check(folder, "equal.ipynb", AVX2_LAPTOP, "--against", "equal.json", "--trace-ops")
    assert out.startswith("exit 0\n"), out
    assert "Against equal.json: OK" in out
    assert "Outputs: all 2 code cells match bitwise" in out
    assert "State: all 2 code cells' recorded state matches bitwise" in out
    assert (
        "Note: matched bitwise here; bitwise equality between these machines is not guaranteed (AVX2 vs AVX512): "
        "use --portable for a guarantee"
    ) in out
    assert "OK: all 2 code cells matched." in out


def test_json_says_the_same(folder: Path) -> None:
    out = ipyrepro_check(folder, "equal.ipynb", AVX2_LAPTOP, "--against", "equal.json", "--json")
    assert out.startswith("exit 0\n"), out
    against = json.loads(out.split("\n", 1)[1])["machines"]["against"]
    assert against["exit_code"] == 0 and against["first_state_divergence"] is None
    assert against["note"].startswith("matched bitwise here; bitwise equality between these machines")
