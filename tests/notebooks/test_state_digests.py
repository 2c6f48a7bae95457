"""`ipyrepro check`'s state digests: the first divergence even in a silent cell, what later cells inherit, and the
causes traced from there; nothing false on seeded notebooks; digesting changes nothing the notebook can see."""

from __future__ import annotations

import json
import re
from pathlib import Path

import nbformat
import pytest

from ipyrepro.cli import main

SILENT_DRAWS = [
    ("markdown", "# A character MLP, as written: nothing seeds torch"),
    ("code", "import torch"),
    ("code", "C = torch.randn((27, 2))"),
    ("markdown", "The hidden layer"),
    ("code", "W1 = torch.randn((2, 10))"),
    (
        "code",
        "C.requires_grad_()\n"
        "W1.requires_grad_()\n"
        "for step in range(20):\n"
        "    ix = torch.randint(0, 27, (8,))\n"
        "    loss = torch.tanh(C[ix] @ W1).pow(2).mean()\n"
        "    C.grad = W1.grad = None\n"
        "    loss.backward()\n"
        "    with torch.no_grad():\n"
        "        C -= 0.1 * C.grad\n"
        "        W1 -= 0.1 * W1.grad",
    ),
    ("code", "print(f'{loss.item():.6f}')"),
    ("code", "1 / 0", ("raises-exception",)),
    ("code", "print(C[0].tolist())"),
]


def write_notebook(path: Path, cells: list[tuple], *, with_ids: bool = False) -> Path:
    """A notebook as people save them: nbformat 4.4 without cell ids, stale outputs, counts out of order."""
    notebook = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3"}})
    notebook.nbformat_minor = 5 if with_ids else 4
    counts = iter([7, 3, 12, 5, 9, 1, 4, 8, 2, 6])
    for kind, source, *tags in cells:
        if kind == "markdown":
            cell = nbformat.v4.new_markdown_cell(source)
        else:
            cell = nbformat.v4.new_code_cell(source, execution_count=next(counts))
            cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="stale output\n")]
            if tags:
                cell.metadata["tags"] = list(tags[0])
        if not with_ids:
            cell.pop("id", None)
        notebook.cells.append(cell)
    path.write_text(json.dumps(notebook, indent=1))
    return path


def check_json(capsys: pytest.CaptureFixture[str], *arguments: str) -> tuple[int, dict]:
    code = main(["check", *arguments, "--json", "--quiet"])
    return code, json.loads(capsys.readouterr().out)


def check_text(capsys: pytest.CaptureFixture[str], *arguments: str) -> tuple[int, str]:
    code = main(["check", *arguments, "--quiet"])
    return code, capsys.readouterr().out


def test_the_first_silent_draw_is_named_and_every_draw_is_a_cause(tmp_path: Path, capsys) -> None:
    path = write_notebook(tmp_path / "mlp.ipynb", SILENT_DRAWS)
    code, text = check_text(capsys, str(path), "--as-is")
    assert code == 1, text
    total = len(SILENT_DRAWS)
    assert (
        f"First divergence: cell 3 of {total} (prints nothing): C differs (run 1 vs run 2); W1 differs from cell 5"
        in (text)
    ), text
    causes = re.findall(r"cause: unseeded-generator at cell (\d+) of \d+, line (\d+): `([^`]*)`", text)
    assert ("3", "1", "C = torch.randn((27, 2))") in causes, text
    assert ("5", "1", "W1 = torch.randn((2, 10))") in causes, text
    assert ("6", "4", "ix = torch.randint(0, 27, (8,))") in causes, text
    assert len({(cell, line) for cell, line, _ in causes}) == len(causes), "each draw is listed once"
    assert "none ran in this cell" not in text
    assert f"inherits loss from cell 6 of {total}" in text, text
    assert f"inherits C from cell 3 of {total}" in text, text


def test_json_names_the_first_divergence_inherits_and_cause_cells(tmp_path: Path, capsys) -> None:
    path = write_notebook(tmp_path / "mlp.ipynb", SILENT_DRAWS)
    code, report = check_json(capsys, str(path), "--as-is")
    assert code == 1
    first = report["first_divergence"]
    # the notebook is nbformat 4.4: its cells were saved without ids, so `id` is null as in every cell ref
    assert (first["position"], first["id"], first["variables"], first["prints_nothing"]) == (3, None, ["C"], True)
    assert [root["position"] for root in first["later_roots"]] == [5]
    inherits = {d["cell"]["position"]: d["inherits"] for d in report["differences"]}
    assert inherits[7] == [{"cell": 6, "id": None, "variables": ["loss"]}]
    assert inherits[9] == [{"cell": 6, "id": None, "variables": ["C"]}] or inherits[9] == [
        {"cell": 3, "id": None, "variables": ["C"]}
    ]
    draws = [cause for cause in report["divergence_causes"] if cause["kind"] == "unseeded-generator"]
    assert [(cause["cell"], cause["line"]) for cause in draws] == [(3, 1)]  # never a later cell's draw
    assert draws[0]["variables"] == ["C"]
    later = [cause for entry in report["causes"] for cause in entry["causes"] if entry["cell"]["position"] in (5, 6)]
    assert {(cause["cell"], cause["line"]) for cause in later} == {(5, 1), (6, 4)}
    assert next(cause for cause in later if cause["cell"] == 5)["variables"] == ["W1"]
    assert "torch" in report["state"]["skipped"] and report["state"]["skipped"]["torch"] == "module"


def test_seeded_notebooks_show_no_state_divergence(tmp_path: Path, capsys) -> None:
    under_ipyrepro = write_notebook(tmp_path / "mlp.ipynb", SILENT_DRAWS)
    code, report = check_json(capsys, str(under_ipyrepro))
    assert code == 0, report  # 1 / 0 is tagged: nothing unexpected raised
    assert report["state"]["compared"] and report["state"]["cells"] == [] and report["first_divergence"] is None
    seeded = [SILENT_DRAWS[0], ("code", "import torch\ntorch.manual_seed(1234)"), *SILENT_DRAWS[2:]]
    as_written = write_notebook(tmp_path / "seeded.ipynb", seeded, with_ids=True)
    code, report = check_json(capsys, str(as_written), "--as-is")
    assert code == 0, report
    assert report["state"]["compared"] and report["state"]["cells"] == [] and report["first_divergence"] is None


def test_addresses_temporary_paths_and_plain_objects_are_no_divergence(tmp_path: Path, capsys) -> None:
    cells = [
        ("code", "import tempfile, os\nwhere = repr(object())\nscratch = tempfile.mkdtemp()\nthing = object()"),
        ("code", "keys = {'a': [where, scratch], 'n': 3}\nprint(len(keys))"),
    ]
    path = write_notebook(tmp_path / "addresses.ipynb", cells, with_ids=True)
    code, report = check_json(capsys, str(path), "--as-is")
    assert code == 0 and report["first_divergence"] is None and report["state"]["cells"] == [], report
    assert report["state"]["skipped"]["thing"].startswith("object")


def test_tolerances_govern_state_and_no_state_restores_output_only(tmp_path: Path, capsys) -> None:
    cells = [
        (
            "code",
            "import torch\nweights = torch.ones(1000).double() + torch.rand(1000).double() * 1e-12",
        ),
        ("code", "print(round(weights.sum().item(), 3))"),
    ]
    path = write_notebook(tmp_path / "noise.ipynb", cells, with_ids=True)
    code, report = check_json(capsys, str(path), "--as-is")
    assert code == 0 and report["first_divergence"]["variables"] == ["weights"]
    code, report = check_json(capsys, str(path), "--as-is", "--rtol", "1e-9")
    assert code == 0 and report["first_divergence"] is None and report["state"]["cells"] == []
    code, report = check_json(capsys, str(path), "--as-is", "--no-state")
    assert report["state"]["enabled"] is False and report["first_divergence"] is None
    code, text = check_text(capsys, str(path), "--as-is")
    assert "the state differs" in text and "OK" in text
