"""The kernel runner: sends cellId like JupyterLab, and keeps outputs the way a notebook stores them."""

from __future__ import annotations

import pytest

from ipyrepro.notebooks.kernelrun import CellTimeout, KernelStartError, running_kernel

pytestmark = pytest.mark.kernel

OUTPUT_CELL = """
from IPython.display import clear_output, display
print("first", end="")
print(" line")
clear_output(wait=True)
print("kept")
handle = display("old", display_id=True)
handle.update("new")
import sys; sys.stderr.write("warned\\n")
41 + 1
"""


def test_cell_ids_reach_the_kernel_and_outputs_are_stored_like_a_notebook() -> None:
    with running_kernel(env={"IPYREPRO_TEST_VAR": "yes"}) as kernel:
        seen = kernel.execute("get_ipython().kernel.get_parent()['metadata']['cellId']", "my-cell-id")
        assert seen.text() == "'my-cell-id'"
        run = kernel.execute(OUTPUT_CELL, "outputs")
        assert run.status == "ok"
        assert [o["output_type"] for o in run.outputs] == ["stream", "display_data", "stream", "execute_result"]
        assert run.stdout == "kept\n" and run.stderr == "warned\n"
        assert run.data[0]["text/plain"] == "'new'" and run.text() == "42"
        assert kernel.execute("import os; os.environ['IPYREPRO_TEST_VAR']").text() == "'yes'"
        failed = kernel.execute("raise ValueError('nope')")
        assert failed.status == "error" and failed.error_text == "ValueError: nope"
        with pytest.raises(CellTimeout, match="timeout"):
            kernel.execute("import time; time.sleep(30)", timeout=1)


def test_an_unknown_kernel_name_lists_the_installed_ones() -> None:
    with pytest.raises(KernelStartError, match=r"no kernel named 'nope'.*python3"), running_kernel("nope"):
        pass
