"""Beyond one process, end to end from a real kernel: DDP ranks, torchrun, DataLoader workers.

Real processes and real gloo process groups (2 and 4 ranks), started from a kernel
cell with torch.multiprocessing (fork and spawn) and with `python -m
torch.distributed.run`. Launches are shared across assertions to keep the time
modest; every test checks that no process it started outlives it.
"""

from __future__ import annotations

import json
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from ipyrepro.core.validation import CHILD_VARS

from ..kernels import Kernel, kernel

pytestmark = [pytest.mark.kernel, pytest.mark.skipif(sys.platform != "linux", reason="fork and /proc: Linux")]

TESTS = Path(__file__).parent
LAUNCH_TIMEOUT = 150  # seconds per launch, enforced inside the kernel
CELL_TIMEOUT = LAUNCH_TIMEOUT + 30


def descendants(pid: int) -> list[int]:
    """Every live process below `pid`, read from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z":  # a zombie has exited; its parent just has not reaped it yet
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


AUGMENTED = '''
"""A dataset with random augmentations from Python, NumPy and torch (a module, so spawned workers import it)."""
import random

import numpy as np
import torch


class Augmented(torch.utils.data.Dataset):
    def __len__(self):
        return 12

    def __getitem__(self, index):
        return torch.tensor([index + random.random(), float(np.random.rand()), torch.rand(1).item()])
'''


@pytest.fixture(scope="module")
def k(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kernel]:
    """One kernel for this module's launches, with the job and dataset modules importable, one thread per process."""
    cwd = tmp_path_factory.mktemp("multiprocess")
    (cwd / "augmented.py").write_text(AUGMENTED)  # the kernel's cwd is on its path, and spawned workers get it
    with kernel(cwd=cwd, env={"OMP_NUM_THREADS": "1"}) as shared:
        run(shared, f"import json, os, sys\nsys.path.insert(0, {str(TESTS)!r})\nimport distributed_job as job")
        run(shared, "%load_ext ipyrepro")
        yield shared


def run(k: Kernel, code: str, cell_id: str | None = None) -> str:
    """Run a cell that may start processes; fail with its traceback. Returns stdout."""
    reply = k.run(code, cell_id, timeout=CELL_TIMEOUT)
    assert reply.status == "ok", reply.error or reply.stderr
    return reply.stdout


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def no_processes_left(k: Kernel) -> None:
    """No rank, worker or launcher below the kernel; multiprocessing's own resource tracker (started with the
    first spawn, it lives as long as the kernel) is not one of ours."""
    pid = int(run(k, "print(os.getpid())"))
    left = [cmdline(child) for child in descendants(pid)]
    assert [line for line in left if "resource_tracker" not in line] == []
    assert run(k, "import torch.distributed as dist; print(dist.is_initialized())").strip() == "False"


def results(out: Path, label: str, ranks: int) -> list[dict]:
    return [json.loads((out / f"{label}-rank{rank}.json").read_text()) for rank in range(ranks)]


def test_ddp_training_reproduces_across_launches_and_check_in_sync_names_a_planted_change(
    k: Kernel, tmp_path: Path
) -> None:
    out = str(tmp_path)
    run(k, "%repro on --seed 7")
    launches = (("spawn-a", 2, "spawn"), ("spawn-b", 2, "spawn"), ("fork4-a", 4, "fork"), ("fork4-b", 4, "fork"))
    for label, ranks, method in launches:
        run(k, f"job.launch({ranks}, {method!r}, {out!r}, {label!r}, 'ipyrepro', timeout={LAUNCH_TIMEOUT})")
    torchrun = textwrap.dedent(f"""
        import subprocess
        done = subprocess.run(
            [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
             job.__file__, {out!r}, "torchrun", "ipyrepro"],
            capture_output=True, text=True, timeout={LAUNCH_TIMEOUT},
        )
        assert done.returncode == 0, done.stderr[-3000:]
    """)
    run(k, torchrun)
    run(k, "%repro off")
    assert run(k, f"print(sorted(n for n in os.environ if n in {CHILD_VARS}))").strip() == "[]"
    # a notebook that draws from NumPy's global RNG itself: forked ranks copy its state (until the kernel
    # imports numpy.random, each rank imports it and NumPy seeds it from the OS)
    run(k, "import numpy as np\nnp.random.rand()")
    for label in ("none-a", "none-b"):
        run(k, f"job.launch(2, 'fork', {out!r}, {label!r}, 'none', timeout={LAUNCH_TIMEOUT})")
    no_processes_left(k)

    path = Path(out)
    two = {label: results(path, label, 2) for label in ("spawn-a", "spawn-b", "torchrun", "none-a", "none-b")}
    four = {label: results(path, label, 4) for label in ("fork4-a", "fork4-b")}
    seeded = {label: ranks for label, ranks in {**two, **four}.items() if not label.startswith("none")}
    # every rank of every launch ends with the same parameters as its peers (DDP) ...
    for label, ranks in {**two, **four}.items():
        assert all(rank["digests"] == ranks[0]["digests"] for rank in ranks), label
        assert all(rank["in_sync_ok"] and rank["in_sync_entries"] > 4 for rank in ranks), label
    # ... and under ipyrepro, the same as every other launch of the same world size: spawn, spawn, torchrun
    assert two["spawn-a"][0]["digests"] == two["spawn-b"][0]["digests"] == two["torchrun"][0]["digests"]
    assert four["fork4-a"][0]["digests"] == four["fork4-b"][0]["digests"]
    assert four["fork4-a"][0]["digests"] != two["spawn-a"][0]["digests"]  # other world size, other data split
    # without ipyrepro's seeding two launches differ
    assert two["none-a"][0]["digests"] != two["none-b"][0]["digests"]
    # the children took the seed the kernel exported, and seeded each rank differently
    for label, ranks in seeded.items():
        assert {rank["seed_env"] for rank in ranks} == {"7"}, label
        assert len({rank["rank_seed"] for rank in ranks}) == len(ranks), label
        assert len({tuple(rank["per_rank"]) for rank in ranks}) == len(ranks), label
    assert [r["per_rank"] for r in two["spawn-a"]] == [r["per_rank"] for r in two["torchrun"]]
    # forked and unseeded: every rank inherits the kernel's NumPy and torch states and draws the same "random"
    # augmentations (Python's `random` re-seeds itself in a forked child)
    for label in ("none-a", "none-b"):
        inherited = [rank["per_rank"][1:] for rank in two[label]]
        assert inherited[0] == inherited[1], label
    # a planted change on rank 1 is named, with the rank, on every rank
    for ranks in (two["spawn-a"], two["torchrun"], four["fork4-a"]):
        for rank in ranks:
            assert not rank["planted_ok"]
            assert list(rank["planted_differences"]) == ["3.weight"]
            assert rank["planted_differences"]["3.weight"]["ranks"] == [1]
            assert "3.weight" in rank["planted_text"] and "rank 1 differs from" in rank["planted_text"]
    assert four["fork4-a"][2]["planted_differences"]["3.weight"]["groups"] == [[0, 2, 3], [1]]
    # within a subgroup of ranks 0 and 1 (group=...), the same change is named between those two
    for rank in four["fork4-a"][:2]:
        assert rank["subgroup_differences"]["3.weight"]["groups"] == [[0], [1]]
    assert four["fork4-a"][2]["subgroup_differences"] is None


BATCHES = """
from torch.utils.data import DataLoader
from augmented import Augmented
loader = DataLoader(Augmented(), batch_size=4, shuffle=True, num_workers=2, multiprocessing_context={method!r})
print(json.dumps([batch.tolist() for batch in loader]))
"""


def test_dataloader_workers_give_the_same_batches_when_a_cell_is_rerun(k: Kernel) -> None:
    run(k, "%repro on --seed 3")
    for method in ("fork", "spawn"):
        code = BATCHES.format(method=method)
        first = run(k, code, cell_id=f"loader-{method}")
        run(k, "import torch; torch.rand(100)", cell_id="between")
        assert run(k, code, cell_id=f"loader-{method}") == first, method
        assert len(json.loads(first)) == 3
    run(k, "%repro off")
    code = BATCHES.format(method="fork")
    assert run(k, code, cell_id="loader-fork") != run(k, code, cell_id="loader-fork")  # not seeded: they differ
    no_processes_left(k)


def test_persistent_workers_across_cells_warn_once_with_the_fix(k: Kernel) -> None:
    run(k, "%repro on --seed 3")
    create = (
        "from torch.utils.data import DataLoader\nfrom augmented import Augmented\n"
        "loader = DataLoader(Augmented(), batch_size=4, num_workers=1, persistent_workers=True,"
        " multiprocessing_context='fork')"
    )
    run(k, create, cell_id="create")
    iterate = "print(json.dumps([batch.tolist() for batch in loader]))"
    first = k.run(iterate, cell_id="iterate", timeout=CELL_TIMEOUT)
    second = k.run(iterate, cell_id="iterate", timeout=CELL_TIMEOUT)
    assert first.status == second.status == "ok"
    assert first.stdout != second.stdout  # the workers' RNG streams went on: the problem the warning is about
    assert "persistent_workers=True" in first.stderr and "Fix: persistent_workers=False" in first.stderr
    assert "persistent_workers" not in second.stderr  # once
    status = json.loads(run(k, "%repro status --json"))
    assert any("persistent_workers=True" in text for text in status["warnings"])
    run(k, "del loader; import gc; gc.collect()")
    status = json.loads(run(k, "%repro status --json"))
    assert not any("persistent_workers" in text for text in status["warnings"])
    run(k, "%repro off")
    no_processes_left(k)
