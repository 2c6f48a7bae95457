"""ipyrepro's demo: the notebook traps it fixes, shown in real Jupyter kernels.

Run with `bash scripts/demo` on a fresh machine, or `python scripts/demo.py`
once ipyrepro is installed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

from ipyrepro.notebooks.kernelrun import running_kernel

QUIET = ["--IPKernelApp.log_level=ERROR"]  # no start-up chatter from the kernels
DRAW = "import torch\nx = torch.randn(3)\nx.tolist()"
TRAIN = textwrap.dedent(
    """
    import torch
    model = torch.nn.Linear(4, 1)
    data = torch.randn(64, 4)
    loss = model(data).pow(2).mean()
    round(loss.item(), 6)
    """
)

PLANTED = textwrap.dedent(
    """
    %%repro --runs 3
    import numpy as np, torch
    weights = torch.randn(4)                          # seeded by ipyrepro: the same every run
    rng = np.random.default_rng()                     # planted bug: a fresh OS seed every run
    noise = torch.as_tensor(rng.normal(size=4))
    """
).lstrip()


def heading(text: str) -> None:
    print(f"\n=== {text} ===")


def run_notebook(setup: str | None) -> list[str]:
    """Cells A and B, then A again: what a notebook user does all day."""
    with running_kernel(extra_arguments=QUIET) as kernel:
        if setup:
            kernel.execute(setup, "setup")
        return [
            kernel.execute(DRAW, "cell-A").text(),
            kernel.execute(TRAIN, "cell-B").text(),
            kernel.execute(DRAW, "cell-A").text(),
            kernel.execute(TRAIN, "cell-B").text(),
        ]


def show(results: list[str]) -> None:
    for label, value in zip(("A", "B", "A again", "B again"), results):
        print(f"  cell {label:<8} -> {value}")
    same = results[0] == results[2] and results[1] == results[3]
    print(f"  reruns reproduce: {'yes' if same else 'NO'}")


def main() -> None:
    os.environ.setdefault("IPYTHONDIR", tempfile.mkdtemp(prefix="ipyrepro-demo-"))

    heading("1. A plain kernel: rerunning cells draws new random numbers")
    show(run_notebook(None))

    heading("2. The same cells after `%load_ext ipyrepro` and `%repro on --seed 42`")
    show(run_notebook("%load_ext ipyrepro\n%repro on --seed 42"))

    heading("3. What is in force: `%repro`")
    with running_kernel(extra_arguments=QUIET) as kernel:
        kernel.execute("%load_ext ipyrepro\n%repro on --seed 42", "setup")
        kernel.execute("import torch\ntorch.backends.cudnn.benchmark = True  # a stray line in some cell", "stray")
        print(textwrap.indent(kernel.execute("import ipyrepro\nprint(ipyrepro.status())").stdout, "  "))

    heading("4. `%%repro` reruns a cell and names what differs (a planted unseeded RNG)")
    with running_kernel(extra_arguments=QUIET) as kernel:
        kernel.execute("%load_ext ipyrepro\n%repro on --seed 0", "setup")
        reply = kernel.execute(PLANTED, "planted")
        print(textwrap.indent(reply.text() or reply.stdout, "  "))

    notebook = Path(__file__).resolve().parent.parent / "notebooks" / "04-out-of-order.ipynb"
    heading(f"5. `ipyrepro check {notebook.name}`: the whole notebook, twice, in fresh kernels")
    check = subprocess.run(
        [sys.executable, "-m", "ipyrepro", "check", str(notebook), "--quiet"], capture_output=True, text=True
    )
    print(textwrap.indent(check.stdout.strip(), "  "))
    print(f"  exit status {check.returncode} (0: every run matched, 1: something differed, 2: error)")


if __name__ == "__main__":
    main()
