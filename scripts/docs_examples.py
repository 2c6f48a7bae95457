"""The `ipyrepro check` examples in the docs, regenerated from real runs so they cannot go stale.

Each example is a notebook written here as its author would have saved it, checked by the real
`ipyrepro check` command in fresh kernels in a temporary folder; its report replaces the block between
`<!-- docs-example: NAME -->` and `<!-- /docs-example -->` in the page. The environment patterns table
comes from ipyrepro itself. `--check` exits 1 when a page's blocks are not what a run gives (numbers drawn
from the OS aside, the command is the same), without writing anything.

    bash scripts/docs-examples            # rewrite the blocks
    bash scripts/docs-examples --check    # CI: is every block present and produced by this version?
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BLOCK = re.compile(r"(<!-- docs-example: (?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- /docs-example -->)", re.DOTALL)


def _notebook(cells: list, **metadata) -> nbformat.NotebookNode:
    nb = new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3"}, **metadata})
    nb.cells = cells
    return nb


def analysis(folder: Path) -> Path:
    """The first example of checking-notebooks.md: one cell draws from an unseeded generator."""
    nb = _notebook(
        [
            new_markdown_cell("# Analysis"),
            new_code_cell("import numpy as np", id="imports"),
            new_code_cell("data = np.arange(10) ** 2\ndata.sum()", id="data"),
            new_markdown_cell("A random sample of the data:"),
            new_code_cell("np.random.default_rng().random()", id="5481c5db"),
            new_code_cell("len(data)", id="length"),
            new_code_cell("print('done')", id="done"),
        ]
    )
    return _write(nb, folder / "analysis.ipynb")


def mlp(folder: Path) -> Path:
    """state-digests.md: weights drawn unseeded in cells that print nothing, printed much later."""
    loop = (
        "C.requires_grad_(); W1.requires_grad_()\n"
        "for step in range(20):\n"
        "    emb = C[torch.arange(8) % 27]\n"
        "    ix = torch.randint(0, 27, (8,))\n"
        "    loss = ((torch.tanh(emb @ W1).sum(1) - ix.float() / 27) ** 2).mean()\n"
        "    C.grad = W1.grad = None\n"
        "    loss.backward()\n"
        "    with torch.no_grad():\n"
        "        C -= 0.1 * C.grad\n"
        "        W1 -= 0.1 * W1.grad"
    )
    nb = _notebook(
        [
            new_markdown_cell("# A tiny MLP"),
            new_code_cell("import torch", id="cell-1"),
            new_code_cell("C = torch.randn((27, 2))", id="cell-2"),
            new_markdown_cell("## Weights and training"),
            new_code_cell("W1 = torch.randn((2, 10))", id="cell-4"),
            new_code_cell(loop, id="cell-5"),
            new_code_cell("print(f'{loss.item():.6f}')", id="cell-6"),
            new_code_cell("print(tuple(W1.shape))", id="cell-7"),
            new_code_cell("print(C[0].tolist())", id="cell-8"),
        ]
    )
    return _write(nb, folder / "mlp.ipynb")


def fundamentals(folder: Path) -> Path:
    """checking-notebooks.md's worked example: a course notebook saved on a CUDA machine with torch 1.12, its
    author's seed, and a data file that changed since."""

    def result(text: str, count: int) -> nbformat.NotebookNode:
        return new_output("execute_result", data={"text/plain": text}, execution_count=count)

    def stdout(text: str) -> nbformat.NotebookNode:
        return new_output("stream", name="stdout", text=text)

    cells = [
        new_markdown_cell("# 00. PyTorch fundamentals"),
        new_code_cell("import torch\ntorch.__version__", id="version", execution_count=1),
        new_code_cell(
            'device = "cuda" if torch.cuda.is_available() else "cpu"\nprint(f"Using device: {device}")',
            id="device",
            execution_count=2,
        ),
        new_markdown_cell("## Random tensors, reproducibly"),
        new_code_cell("torch.manual_seed(42)\nx = torch.rand(3).to(device)\nx", id="seeded", execution_count=3),
        new_code_cell("print(torch.rand(2))", id="after-seed", execution_count=4),
        new_code_cell("labels = open('labels.txt').read().split()\nprint(labels)", id="labels", execution_count=5),
        new_code_cell("import numpy as np\nnp.random.rand(2).round(4)", id="unseeded", execution_count=6),
    ]
    saved = [
        result("'1.12.1+cu113'", 1),
        stdout("Using device: cuda\n"),
        result("tensor([0.8823, 0.9150, 0.3829], device='cuda:0')", 3),
        stdout("tensor([0.9593, 0.3904])\n"),
        stdout("['cat', 'dog']\n"),
        result("array([0.5488, 0.7152])", 6),
    ]
    for cell, output in zip([cell for cell in cells if cell.cell_type == "code"], saved):
        cell.outputs = [output]
    (folder / "labels.txt").write_text("cat dog bird\n")  # one more label since the notebook was saved
    return _write(_notebook(cells), folder / "fundamentals.ipynb")


def edited(folder: Path) -> Path:
    """check-reports.md: the tests' deliberate-error.ipynb with one saved output edited (`tensor(2)` to `tensor(3)`)."""
    nb = nbformat.read(ROOT / "tests" / "notebooks" / "saved" / "deliberate-error.ipynb", as_version=4)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    code[2].outputs[0]["data"]["text/plain"] = "tensor(3)"
    return _write(nb, folder / "edited.ipynb")


def _saved(name: str) -> Callable[[Path], Path]:
    """A notebook of the tests' saved/ folder, as its author saved it (check-reports.md)."""

    def copy(folder: Path) -> Path:
        return _write(nbformat.read(ROOT / "tests" / "notebooks" / "saved" / name, as_version=4), folder / name)

    return copy


def sampling(folder: Path) -> Path:
    """check-reports.md: a draw from an unseeded generator."""
    nb = _notebook(
        [
            new_markdown_cell("# Sampling"),
            new_code_cell("import numpy as np", id="imports"),
            new_markdown_cell("One sample:"),
            new_code_cell("np.random.default_rng().random()", id="unseeded"),
        ]
    )
    return _write(nb, folder / "sampling.ipynb")


def _write(nb: nbformat.NotebookNode, path: Path) -> Path:
    nbformat.write(nb, path)
    return path


def _check(make: Callable[[Path], Path], *options: str) -> Callable[[], str]:
    def run() -> str:
        with tempfile.TemporaryDirectory(prefix="ipyrepro-docs-") as folder:
            path = make(Path(folder))
            command = ["ipyrepro", "check", path.name, "--quiet", *options]
            env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
            done = subprocess.run(
                [sys.executable, "-m", *command[0:1], *command[1:]],
                cwd=folder,
                env=env,
                capture_output=True,
                text=True,
                check=False,
            )
            body = done.stdout.rstrip("\n")
        return f"```\n$ {' '.join(command[:3] + list(options))}\n{body}\n```\n"

    return run


def _patterns() -> str:
    from ipyrepro.notebooks.savedenv import docs_table

    return docs_table() + "\n"


EXAMPLES: dict[str, Callable[[], str]] = {
    "check-analysis": _check(analysis),
    "state-digests-mlp": _check(mlp, "--as-is"),
    "against-saved-fundamentals": _check(fundamentals, "--against-saved"),
    "against-saved-edited": _check(edited, "--against-saved"),
    "hidden-state": _check(_saved("hidden-state.ipynb")),
    "deliberate-error": _check(_saved("deliberate-error.ipynb")),
    "optional-package": _check(_saved("optional-package.ipynb")),
    "optional-package-against-saved": _check(_saved("optional-package.ipynb"), "--against-saved"),
    "sampling": _check(sampling),
    "hidden-state-stop-on-error": _check(_saved("hidden-state.ipynb"), "--stop-on-error", "--as-is"),
    "environment-patterns": _patterns,
}
PAGES = ("docs/checking-notebooks.md", "docs/state-digests.md", "docs/check-reports.md")


def _stable(text: str) -> str:
    """The text without the numbers a run draws from the OS: what `--check` compares."""
    return re.sub(r"[-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?", "N", text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only say whether the pages are up to date")
    args = parser.parse_args(argv)
    produced: dict[str, str] = {}
    stale = []
    for page in PAGES:
        path = ROOT / page
        text = path.read_text(encoding="utf-8")

        def replace(match: re.Match[str], page: str = page) -> str:
            name = match.group("name")
            if name not in EXAMPLES:
                raise SystemExit(f"{page}: no example named {name!r} (known: {', '.join(EXAMPLES)})")
            if name not in produced:
                produced[name] = EXAMPLES[name]()
            if _stable(produced[name]) != _stable(match.group("body")):
                stale.append(f"{page}: {name}")
            return match.group(1) + produced[name] + match.group(4)

        new = BLOCK.sub(replace, text)
        if not args.check and new != text:
            path.write_text(new, encoding="utf-8")
    missing = set(EXAMPLES) - set(produced)
    if missing:
        print(f"examples no page shows: {', '.join(sorted(missing))}", file=sys.stderr)
        return 1
    if args.check and stale:
        print("stale examples (run bash scripts/docs-examples):\n  " + "\n  ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
