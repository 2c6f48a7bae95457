"""The pytest plugin with state digests: a failing cell names the silent cell where the state first differed and
what it inherits from there; `--ipyrepro-no-state` (or the ini key) gives the output-only report."""

from __future__ import annotations

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook


def silent_draw(folder) -> None:
    notebook = new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3"}})
    notebook.cells = [
        new_code_cell("import random\nx = random.random()", id="draw"),
        new_markdown_cell("Printed only later"),
        new_code_cell("print(round(x, 6))", id="show"),
    ]
    nbformat.write(notebook, folder / "silent.ipynb")


@pytest.mark.kernel
def test_a_failing_cell_names_the_first_divergence_and_what_it_inherits(pytester: pytest.Pytester) -> None:
    silent_draw(pytester.path)
    pytester.makeini("[pytest]\nipyrepro_as_is = true\n")
    result = pytester.runpytest("--ipyrepro", "silent.ipynb", "-p", "no:randomly")
    result.assert_outcomes(passed=1, failed=1)
    text = result.stdout.str()
    assert "First divergence: cell 1 of 3 (prints nothing): x differs (run 1 vs run 2)" in text
    assert "inherits x from cell 1 of 3" in text
    assert "cause: unseeded-generator at cell 1 of 3, line 2: `x = random.random()`" in text

    pytester.makeini("[pytest]\nipyrepro_as_is = true\nipyrepro_no_state = true\n")
    result = pytester.runpytest("--ipyrepro", "silent.ipynb", "-p", "no:randomly")
    result.assert_outcomes(passed=1, failed=1)
    assert "First divergence:" not in result.stdout.str() and "inherits x from" not in result.stdout.str()


@pytest.mark.kernel
def test_the_plugin_fixtures_show_no_false_state_divergence(tmp_path) -> None:
    from ipyrepro.notebooks.check import check
    from tests.testing.test_pytest_plugin import notebook_folder

    folder = notebook_folder(tmp_path)
    for name in ("reproducible", "planted", "tolerance", "tags"):
        report = check(folder / f"{name}.ipynb", as_is=True, rtol=1e-6, causes=False)
        assert report.state.compared and not report.state.errors, str(report)
        # planted.ipynb differs in an output it never stores; nothing it holds differs
        assert report.state.first is None and not report.state.cells, str(report)
