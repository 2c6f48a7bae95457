"""The documentation site builds with --strict, shows the executed tour and the API, and the README fits a page."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"

pytest.importorskip("mkdocs", reason="the docs extra is not installed: pip install -e '.[docs]'")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`mkdocs build --strict` once (the tour notebooks run under the reproducible kernel, cached in build/)."""
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NO_MKDOCS_2_WARNING": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return out


def _text(page: Path) -> str:
    return re.sub(r"<[^>]+>", "", page.read_text(encoding="utf-8"))


@pytest.mark.kernel
def test_every_docs_page_is_built_and_in_the_nav(site: Path) -> None:
    pages = {p.relative_to(ROOT / "docs").with_suffix("").as_posix() for p in (ROOT / "docs").glob("*.md")}
    for page in pages:
        built = site / ("index.html" if page == "index" else f"{page}/index.html")
        assert built.exists(), page
    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    assert all(f"{page}.md" in nav for page in pages), "--strict warns about pages outside the nav"


@pytest.mark.kernel
def test_the_tour_is_published_with_outputs_produced_under_ipyrepro(site: Path) -> None:
    quick = _text(site / "tour" / "01-quick-start" / "index.html")
    assert "%repro on" in quick
    out_of_order = _text(site / "tour" / "04-out-of-order" / "index.html")
    executed = json.loads((ROOT / "docs" / "tour" / "04-out-of-order.ipynb").read_text(encoding="utf-8"))
    code = [cell for cell in executed["cells"] if cell["cell_type"] == "code"]
    assert all(cell["execution_count"] for cell in code), "every code cell ran"
    assert "tensor(" in out_of_order, "the rendered page shows the cells' outputs"


@pytest.mark.kernel
def test_the_api_reference_is_built_from_the_docstrings(site: Path) -> None:
    api = (site / "api" / "index.html").read_text(encoding="utf-8")
    for name in ("enable", "disable", "configure", "seed_all", "seed_rank", "status", "compare", "CompareReport"):
        assert f'id="ipyrepro.{name}"' in api, name
    import ipyrepro

    first_line = ipyrepro.seed_all.__doc__.strip().splitlines()[0]
    assert first_line.split(";")[0] in _text(site / "api" / "index.html")


def test_the_readme_fits_a_page_with_the_fresh_machine_commands_in_its_first_screen() -> None:
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 200
    first_screen = "\n".join(lines[:40])
    assert "bash scripts/demo" in first_screen and "bash scripts/test" in first_screen
    assert (ROOT / "scripts" / "demo").exists() and (ROOT / "scripts" / "test").exists()
    for target in re.findall(r"\]\((docs/[^)#]+)", "\n".join(lines)):
        assert (ROOT / target).exists(), f"README links to a missing page: {target}"
