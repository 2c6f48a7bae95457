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
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
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
    assert "python -m venv" in first_screen and "pip install -e ." in first_screen
    assert "pip install torch --index-url https://download.pytorch.org/whl/cpu" in first_screen
    assert "torch==2.13.0" not in first_screen  # on PyPI that exact pin is the CUDA build, with nvidia-* packages
    assert (ROOT / "scripts" / "demo").exists() and (ROOT / "scripts" / "test").exists()
    for target in re.findall(r"\]\((docs/[^)#]+)", "\n".join(lines)):
        assert (ROOT / target).exists(), f"README links to a missing page: {target}"


def _internal_links(site: Path) -> list[tuple[Path, str]]:
    """(page, href or src) of every link and image on every built page that points inside the site."""
    links = []
    for page in site.rglob("*.html"):
        for target in re.findall(r"""(?:href|src)=["']([^"']+)["']""", page.read_text(encoding="utf-8")):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("//"):
                continue  # https:, mailto:, data:, javascript: ...: not the site's
            links.append((page, target))
    return links


@pytest.mark.kernel
def test_every_internal_link_of_the_built_site_resolves(site: Path) -> None:
    broken = []
    for page, target in _internal_links(site):
        path, _, anchor = target.partition("#")
        path = path.split("?")[0]
        if not path:
            resolved = page
        elif path.startswith("/"):  # 404.html links from the site's root: it is served at any depth
            resolved = (site / path.lstrip("/")).resolve()
        else:
            resolved = (page.parent / path).resolve()
        if resolved.is_dir():
            resolved = resolved / "index.html"
        if not resolved.exists():
            broken.append(f"{page.relative_to(site)} -> {target}")
        elif anchor and resolved.suffix == ".html":
            ids = re.findall(r"""\bid=["']([^"']+)["']""", resolved.read_text(encoding="utf-8"))
            if anchor not in ids:
                broken.append(f"{page.relative_to(site)} -> {target} (no such anchor)")
    assert not broken, "\n".join(sorted(set(broken)))


@pytest.mark.kernel
def test_every_public_name_is_on_the_api_page_and_every_tour_notebook_in_the_nav(site: Path) -> None:
    import ipyrepro

    api = (site / "api" / "index.html").read_text(encoding="utf-8")
    missing = [name for name in ipyrepro.__all__ if f'id="ipyrepro.{name}"' not in api]
    assert not missing, f"not on docs/api.md: {missing}"
    assert 'id="ipyrepro.distributed.check_in_sync"' in api
    assert "see README" not in _text(site / "api" / "index.html")  # cross-references are links, not prose
    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    for notebook in sorted((ROOT / "notebooks").glob("*.ipynb")):
        assert f"tour/{notebook.name}" in nav, notebook.name
        assert (site / "tour" / notebook.stem / "index.html").exists(), notebook.name
    panel_tour = (site / "tour" / "02-panel" / "index.html").read_text(encoding="utf-8")
    assert "data:image/png;base64," in panel_tour, "the panel tour shows the real panel's picture"
    assert "widgets need JupyterLab or Notebook" not in _text(site / "tour" / "02-panel" / "index.html")


@pytest.mark.kernel
def test_the_cli_reference_has_every_option_of_every_subcommand(site: Path) -> None:
    import argparse

    from ipyrepro.cli import build_parser

    page = _text(site / "cli" / "index.html")

    def walk(parser: argparse.ArgumentParser, name: str) -> None:
        assert f"{name}" in page, name
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub_name, sub in action.choices.items():
                    walk(sub, f"{name} {sub_name}")
            for option in action.option_strings:
                if option not in ("-h", "--help"):
                    assert option in page, f"{name} {option} is missing from the CLI reference"

    walk(build_parser(), "ipyrepro")


def test_the_docs_and_readme_speak_of_the_project_not_of_how_it_was_made() -> None:
    pages = [README, *(ROOT / "docs").glob("*.md")]
    for page in pages:
        text = page.read_text(encoding="utf-8")
        for phrase in (r"\blent\b", r"second draw", r"the session that", r"\bProven\b"):
            assert not re.search(phrase, text), f"{page.name}: {phrase}"
    gpu = (ROOT / "docs" / "gpu-check.md").read_text(encoding="utf-8")
    assert "Results on a GPU: not yet published" in gpu and "scripts/gpu-check" in gpu
    assert "scripts/docs-pictures" in (ROOT / "docs" / "check-reports.md").read_text(encoding="utf-8")
