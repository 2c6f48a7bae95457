"""MkDocs hook: the tour notebooks, executed under the reproducible kernel, become pages of the site.

Before each build every notebook in notebooks/ is run cell by cell in a fresh kernel installed by
`ipyrepro kernel install` (into a private prefix, so the user's own kernels are untouched), sending each
cell's id as JupyterLab does, and the executed copy is written to docs/tour/ for mkdocs-jupyter to render.
The published outputs are therefore themselves produced under `%repro on`. Executed copies are cached
in build/docs-tour/ under a hash of the notebook and of ipyrepro's sources, so a rebuild with nothing
changed executes nothing.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import logging
import re
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
TARGET = ROOT / "docs" / "tour"
CACHE = ROOT / "build" / "docs-tour"
KERNEL = "ipyrepro-docs"
CELL_TIMEOUT = 600
PICTURE = ROOT / "docs" / "panel.png"
TOUR_LINK = re.compile(r"\]\((\d\d-[\w-]+)\.ipynb\)")  # a Markdown link to another tour notebook
WIDGET = "application/vnd.jupyter.widget-view+json"

log = logging.getLogger("mkdocs.hooks.docs_tour")


def on_pre_build(config: Any, **_: Any) -> None:
    """Execute (or take from the cache) every tour notebook and write it under docs/tour/."""
    TARGET.mkdir(parents=True, exist_ok=True)
    CACHE.mkdir(parents=True, exist_ok=True)
    sources = sorted(NOTEBOOKS.glob("*.ipynb"))
    for stale in TARGET.glob("*.ipynb"):
        if not (NOTEBOOKS / stale.name).exists():
            stale.unlink()
    with tempfile.TemporaryDirectory(prefix="ipyrepro-docs-") as prefix:
        manager = None
        for source in sources:
            cached = CACHE / f"{source.stem}-{_fingerprint(source)}.ipynb"
            if not cached.exists():
                if manager is None:
                    manager = _reproducible_kernel(Path(prefix))
                log.info("Executing %s under the reproducible kernel", source.name)
                executed = execute(json.loads(source.read_text(encoding="utf-8")), source.parent, manager)
                cached.write_text(json.dumps(executed, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
            target = TARGET / source.name
            text = json.dumps(
                for_the_site(json.loads(cached.read_text(encoding="utf-8"))), indent=1, ensure_ascii=False
            )
            if not target.exists() or target.read_text(encoding="utf-8") != text:  # `mkdocs serve` watches docs/
                target.write_text(text, encoding="utf-8")


def for_the_site(notebook: dict[str, Any]) -> dict[str, Any]:
    """Links between tour notebooks point at their pages, and a panel's widget output becomes its picture.

    In Jupyter a link `02-panel.ipynb` opens the notebook; on the site the page is `../02-panel/`. A static
    page cannot run widgets, so where a cell displayed the panel the page shows docs/panel.png, the real panel
    in JupyterLab (`scripts/docs-pictures` retakes it).
    """
    page = copy.deepcopy(notebook)
    picture = PICTURE.read_bytes() if PICTURE.exists() else None
    for cell in page["cells"]:
        if cell["cell_type"] == "markdown":
            source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
            cell["source"] = _toc_anchors(TOUR_LINK.sub(r"](../\1/)", source))
        elif picture is not None:
            cell["outputs"] = [_as_picture(output, picture) for output in cell.get("outputs", [])]
    return page


def _toc_anchors(markdown: str) -> str:
    """An anchor where the page's table of contents points for a heading with code in it.

    mkdocs-jupyter's contents leave a heading's code spans out of its anchor (`from-a-cell` for
    "`torchrun` from a cell") while the heading itself gets them (`torchrun-from-a-cell`).
    """
    lines = []
    for line in markdown.split("\n"):
        heading = re.match(r"^#{1,6}\s+(.*`.*)$", line)
        if heading:
            words = re.sub(r"[^\w\s-]", "", re.sub(r"`[^`]*`", "", heading.group(1))).strip().lower()
            anchor = re.sub(r"[\s-]+", "-", words)
            lines += [f'<a id="{anchor}"></a>', ""]
        lines.append(line)
    return "\n".join(lines)


def _as_picture(output: dict[str, Any], picture: bytes) -> dict[str, Any]:
    if WIDGET not in output.get("data", {}):
        return output
    alt = "The panel in JupyterLab (a static page cannot run widgets)"
    return {**output, "data": {"image/png": base64.b64encode(picture).decode("ascii"), "text/plain": alt}}


def execute(notebook: dict[str, Any], cwd: Path, kernel_spec_manager: Any) -> dict[str, Any]:
    """Run `notebook`'s code cells in order in one fresh reproducible kernel; return a copy with outputs."""
    from ipyrepro.notebooks.kernelrun import running_kernel

    executed = copy.deepcopy(notebook)
    with running_kernel(KERNEL, kernel_spec_manager=kernel_spec_manager, cwd=cwd) as kernel:
        for cell in executed["cells"]:
            if cell["cell_type"] != "code":
                continue
            code = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
            result = kernel.execute(code, cell.get("id"), timeout=CELL_TIMEOUT)
            cell["outputs"], cell["execution_count"] = result.outputs, result.execution_count
            if result.status != "ok" and "raises-exception" not in cell.get("metadata", {}).get("tags", []):
                raise RuntimeError(f"tour notebook cell {cell.get('id')!r} failed: {result.error_text}")
    return executed


def _reproducible_kernel(prefix: Path) -> Any:
    """A kernelspec manager that sees only the reproducible kernel, installed into `prefix`."""
    from jupyter_client.kernelspec import KernelSpecManager

    from ipyrepro.notebooks.kernelspec import install

    folder = install(KERNEL, seed=0, prefix=prefix, display_name="Python 3 (ipyrepro docs)")
    return KernelSpecManager(kernel_dirs=[str(folder.parent)])


def _fingerprint(source: Path) -> str:
    """Changes when the notebook or anything in ipyrepro changes (its outputs could then change)."""
    digest = hashlib.blake2b(source.read_bytes(), digest_size=8)
    for path in sorted((ROOT / "ipyrepro").rglob("*.py")):
        digest.update(path.relative_to(ROOT).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()
