"""`pytest --ipyrepro -v` shows the check's progress in a few lines; `--ipyrepro-html DIR` writes the web report."""

from __future__ import annotations

import re

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

pytestmark = pytest.mark.kernel


def _notebook(folder, name: str, cells: int, planted: bool) -> None:
    notebook = new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3"}})
    notebook.cells = [new_markdown_cell("# A long notebook")]
    notebook.cells += [new_code_cell(f"v{n} = {n} + 1\nv{n}", id=f"c{n}") for n in range(cells)]
    if planted:
        notebook.cells.append(new_code_cell("import numpy as np\nnp.random.default_rng().random()", id="planted"))
    folder.mkdir(exist_ok=True)
    nbformat.write(notebook, folder / name)


def test_verbose_shows_a_handful_of_progress_lines_and_html_is_written(pytester: pytest.Pytester) -> None:
    _notebook(pytester.path / "notebooks", "long.ipynb", 60, planted=True)
    result = pytester.runpytest_subprocess(
        "--ipyrepro", "notebooks", "-v", "-p", "no:randomly", "--ipyrepro-html", "html-report"
    )
    result.assert_outcomes(passed=60, failed=1)
    output = result.outlines + result.errlines
    runs = [line for line in output if re.match(r"run \d", line)]
    assert sorted(line.split(":")[0] for line in runs) == ["run 1", "run 1 of 2", "run 2", "run 2 of 2"], runs
    causes = [line for line in output if line.startswith("causes: ")]  # the causes run, as a line of its own
    assert causes[0].startswith("causes: starting one more kernel") and causes[-1].startswith("causes: done in")
    assert len(causes) <= 3
    page = pytester.path / "html-report" / "notebooks__long.html"
    text = page.read_text(encoding="utf-8")
    assert "DIFFERS" in text and "id='cell-61'" in text and "unseeded-generator" in text


def test_without_verbose_there_is_no_progress(pytester: pytest.Pytester) -> None:
    _notebook(pytester.path / "notebooks", "short.ipynb", 3, planted=False)
    result = pytester.runpytest_subprocess("--ipyrepro", "notebooks", "-p", "no:randomly")
    result.assert_outcomes(passed=3)
    assert not [line for line in result.outlines + result.errlines if re.match(r"run \d", line)]
    assert not (pytester.path / "html-report").exists()


def test_an_html_folder_that_cannot_be_made_is_a_usage_error(pytester: pytest.Pytester) -> None:
    _notebook(pytester.path / "notebooks", "short.ipynb", 1, planted=False)
    (pytester.path / "taken").write_text("a file, not a folder")
    result = pytester.runpytest_subprocess("--ipyrepro", "notebooks", "--ipyrepro-html", "taken/sub")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "--ipyrepro-html 'taken/sub'" in "\n".join(result.errlines)
