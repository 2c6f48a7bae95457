"""The docs' `ipyrepro check` examples come from scripts/docs-examples: every block is one it knows, filled in."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def load_script():
    spec = importlib.util.spec_from_file_location("docs_examples", ROOT / "scripts" / "docs_examples.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_docs_example_block_is_produced_by_the_script_and_filled_in() -> None:
    script = load_script()
    shown = []
    for page in script.PAGES:
        for match in script.BLOCK.finditer((ROOT / page).read_text(encoding="utf-8")):
            name, body = match.group("name"), match.group("body")
            assert name in script.EXAMPLES, (page, name)
            shown.append(name)
            if name == "environment-patterns":  # from ipyrepro itself: exactly what the script writes
                assert body == script.EXAMPLES[name](), page
            else:  # a real run's report: the command, the header, the verdict
                lines = body.strip("`\n").splitlines()
                assert lines[0].startswith("$ ipyrepro check ") and lines[1].startswith("ipyrepro check "), (page, name)
                assert lines[-1].split(":")[0] in ("OK", "DIFFERS", "ERROR"), (page, name)
    assert sorted(shown) == sorted(script.EXAMPLES)


def test_the_stable_form_ignores_only_the_numbers_a_run_draws() -> None:
    script = load_script()
    assert script._stable("-0.2614 vs +0.5171, 2 runs") == script._stable("-0.9 vs +0.1, 3 runs")
    assert script._stable("cell 5 differs") != script._stable("cell 5 matched")
