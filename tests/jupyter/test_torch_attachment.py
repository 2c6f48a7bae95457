"""torch as a real kernel sees it: a usage error costs no torch import, a torch import under way in another thread
breaks no hook, and torch taken out of `sys.modules` is put back, re-seeded, and said so (no false drift)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ..kernels import Reply, kernel

pytestmark = pytest.mark.kernel


def everything(*replies: Reply) -> str:
    return "\n".join(
        part
        for reply in replies
        for part in (reply.stdout, reply.stderr, reply.error, *(item.get("text/plain", "") for item in reply.data))
    )


def test_check_refuses_a_fifo_before_importing_torch(tmp_path: Path) -> None:
    fifo = tmp_path / "saved.json"
    os.mkfifo(fifo)
    with kernel() as k:
        k.ok("%load_ext ipyrepro")
        refused = k.run(f"%%repro --check '{fifo}'\nx = 1")
        assert refused.status == "error"
        assert f"fingerprint file '{fifo}' is a FIFO (named pipe); give a regular file" in everything(refused)
        assert k.ok("import sys\n'torch' in sys.modules, 'x' in globals()").text() == "(False, False)"


def test_a_thread_importing_torch_while_a_cell_ends_breaks_no_hook() -> None:
    with kernel() as k:
        k.ok("%load_ext ipyrepro\n%repro on --seed 1")
        started = k.ok(
            "import threading, time\n"
            "importer = threading.Thread(target=lambda: __import__('torch'))\n"
            "importer.start()\n"
            "time.sleep(0.2)"
        )
        joined = k.ok("importer.join()\nimport torch\nprint(torch.backends.cudnn.deterministic)")
        status = k.ok("%repro status")
        said = everything(started, joined, status)
        assert "hook failed" not in said and "partially initialized" not in said, said
        assert joined.stdout.strip() == "True"  # the import in the thread got the settings `on` keeps waiting


def test_torch_taken_out_of_sys_modules_is_put_back_and_the_next_cells_are_reseeded() -> None:
    with kernel() as k:
        k.ok("%load_ext ipyrepro\n%repro on --seed 1")
        k.ok("import sys\nimport torch")
        first = k.ok("a = torch.rand(3)", cell_id="draw")
        removed = k.ok("del sys.modules['torch']")
        again = k.ok("b = torch.rand(3)", cell_id="draw")  # the same cell id: the same seed
        same = k.ok("import torch as again\n(again is torch, bool((a == b).all()), 'torch' in sys.modules)")
        status = k.ok("%repro status")
        assert same.text() == "(True, True, True)"
        said = everything(first, removed, again, same, status)
        assert "torch was taken out of sys.modules; ipyrepro put the same module back" in removed.stderr
        assert "is now False, not True" not in said and "is now off" not in said, said  # no false flag drift
        assert "hook failed" not in said, said
