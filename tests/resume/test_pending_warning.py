"""Under nbclient (which sends no cell ids, as nbconvert and papermill do), a restore pending for the
training cell that was edited before it ran again says so in the output of the cell that ran instead, once,
naming the cell it waits for; `%repro status` shows the pending restore with that name."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

pytestmark = pytest.mark.kernel

ROOT = Path(__file__).resolve().parents[2]

SETUP = "%load_ext ipyrepro\n%repro on --seed 3 --reseed cell"  # no cell ids: cells are known by their code
OBJECTS = (
    "import ipyrepro\n"
    "from tests.resume.training import build_objects, step\n"
    "objects = build_objects(0)\n"
    "loader = objects['loader'] = ipyrepro.resumable(objects['loader'])\n"
    "CHECKPOINT = {checkpoint!r}"
)
TRAIN = (
    "for epoch in range(loader.epoch, 2):\n"
    "    for batch in loader:\n"
    "        step(objects, batch)\n"
    "        if loader.epoch * len(loader) + loader.batches == 7:\n"
    "            ipyrepro.save_checkpoint(CHECKPOINT, **objects)"
)
LOAD = "ipyrepro.load_checkpoint(CHECKPOINT, **objects);"
WAITS_FOR = "wait for the cell that begins `for epoch in range(loader.epoch, 2):`"


def _notebook(*sources: str) -> nbformat.NotebookNode:
    """A notebook as an older Jupyter or a script saves it: nbformat 4.4, no cell ids, a markdown cell."""
    notebook = nbformat.v4.new_notebook()
    notebook.nbformat_minor = 4
    notebook.cells = [nbformat.v4.new_markdown_cell("# Training")]
    notebook.cells += [nbformat.v4.new_code_cell(source) for source in sources]
    for cell in notebook.cells:
        cell.pop("id", None)
    return notebook


def _run(notebook: nbformat.NotebookNode) -> list[str]:
    """Each code cell's output text, executed in a fresh kernel by nbclient."""
    NotebookClient(notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}).execute()
    outputs = []
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        texts = []
        for output in cell.outputs:
            if output.output_type == "stream":
                texts.append(output.text)
            elif output.output_type in ("execute_result", "display_data"):
                texts.append(output.data.get("text/plain", ""))
            elif output.output_type == "error":
                texts.append("\n".join(output.traceback))
        outputs.append("".join(texts))
    return outputs


def test_an_edited_training_cell_is_told_which_cell_the_restore_waits_for(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    objects = OBJECTS.format(checkpoint=str(tmp_path / "run.pt"))
    _run(_notebook(SETUP, objects, TRAIN))
    assert (tmp_path / "run.pt").exists()

    edited = "# resume from the checkpoint\n" + TRAIN
    setup, _, load, edited_out, between, status, train, status_after = _run(
        _notebook(SETUP, objects, LOAD, edited, "print('between')", "%repro status", TRAIN, "%repro status")
    )
    assert "Traceback" not in edited_out + train
    assert "re-seeded as usual" in edited_out and WAITS_FOR in edited_out
    assert "an edit, even a comment, makes it another cell" in edited_out
    assert "re-seeded as usual" not in between  # once
    assert "pending restore" in status and WAITS_FOR in status
    assert "re-seeded as usual" not in train  # the awaited cell: it continues from the checkpoint
    assert "pending restore" not in status_after
