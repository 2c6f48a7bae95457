"""`ipyrepro check PATH…`: folders and several notebooks, the summary, --json's list, --html DIR, --junit;
jupytext text notebooks. Real kernels."""

from __future__ import annotations

import contextlib
import io
import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import jsonschema
import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from ipyrepro.cli import main
from ipyrepro.notebooks.checkjson import SCHEMA_VERSION, validate
from ipyrepro.notebooks.many import many_schema
from ipyrepro.notebooks.notebookfile import NotebookError, load_notebook

pytestmark = pytest.mark.kernel

DIFFERS = "sub/differs <b>&.ipynb"
PERCENT = """\
# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     name: python3
#     display_name: Python 3
# ---

# %%
import os

# %% [markdown]
# Two draws from the OS: they differ.

# %%
print(os.urandom(4).hex())
"""


def write(path: Path, *sources: str) -> Path:
    notebook = new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3"}})
    notebook.cells = [new_markdown_cell("# A notebook")] + [
        new_code_cell(source, id=f"c{number}") for number, source in enumerate(sources)
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(notebook, path)
    return path


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("many") / "notebooks"
    write(root / "good.ipynb", "x = 21", "print(x * 2)")
    write(root / DIFFERS, "import os", "print(os.urandom(4).hex())", "x = 1", "os.urandom(2)")
    write(root / ".ipynb_checkpoints" / "good-checkpoint.ipynb", "import os", "print(os.urandom(8).hex())")
    write(root / ".venv" / "lib" / "inside.ipynb", "raise SystemExit(3)")
    (root / "a_percent.py").write_text(PERCENT)
    (root / "helper.py").write_text("print('a module, not a notebook')\n")
    (root / "README.md").write_text("# Notes\n\n```python\n1/0\n```\n")
    return root


@pytest.fixture(scope="module")
def checked(folder: Path) -> dict:
    """One check of the whole folder with every output: the JSON, the HTML folder, the JUnit file."""
    out, err = io.StringIO(), io.StringIO()
    html, junit = folder.parent / "html", folder.parent / "check.xml"
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["check", str(folder), "--json", "--html", str(html), "--junit", str(junit), "--jobs", "2"])
    return {"code": code, "json": json.loads(out.getvalue()), "html": html, "junit": junit, "err": err.getvalue()}


def test_a_folder_exits_with_the_worst_and_names_the_real_notebooks_not_the_copies(folder: Path, capsys) -> None:
    assert main(["check", str(folder), "--quiet", "--no-causes", "--no-state"]) == 1
    out = capsys.readouterr().out
    table = out[out.index("Summary:") :]
    rows = [line.split("  ")[0] for line in table.splitlines()[3:-1]]
    assert rows == [str(folder / "a_percent.py"), str(folder / "good.ipynb"), str(folder / DIFFERS)]
    assert "checkpoint" not in out and "inside.ipynb" not in out and "helper.py" not in out
    good = next(line for line in table.splitlines() if "good.ipynb" in line)
    assert "OK" in good and "2 of 2" in good
    differs = next(line for line in table.splitlines() if "differs" in line)
    assert "DIFFERS" in differs and "4 of 4" in differs and "cell 3 of 5" in differs
    assert table.splitlines()[-1] == "DIFFERS: 3 notebooks (1 OK, 2 DIFFERS)."
    # each notebook's own report comes first, in full
    assert f"ipyrepro check {folder / 'good.ipynb'}:" in out and "OK: all 2 code cells matched." in out


def test_json_is_one_document_with_a_list_of_reports(checked: dict, folder: Path) -> None:
    document = checked["json"]
    jsonschema.validate(document, many_schema())
    assert document["schema"] == 2 and document["exit_code"] == 1
    assert [row["verdict"] for row in document["summary"]] == ["DIFFERS", "OK", "DIFFERS"]
    assert document["summary"][2]["first_divergence"]["position"] == 3
    for report in document["reports"]:
        validate(report)  # each is one notebook's report, as `check NB --json` prints it
        assert report["schema"] == SCHEMA_VERSION
    assert [report["notebook"] for report in document["reports"]] == [row["notebook"] for row in document["summary"]]
    # the progress names each notebook, and no more than --jobs 2 kernels ran at once in all
    assert f"{folder / 'good.ipynb'}: run 1 of 2: starting kernel 'python3'" in checked["err"]
    running, most = 0, 0
    for line in checked["err"].splitlines():
        running += ("starting kernel" in line) - (": done, " in line or ": stopped after" in line)
        most = max(most, running)
    assert most == 2


def test_jupytext_cells_are_numbered_as_jupytext_splits_them(checked: dict) -> None:
    percent = checked["json"]["reports"][0]
    assert [cell["label"] for cell in percent["cells"]] == [
        "cell 1 of 3 (code cell 1 of 2)",
        "cell 3 of 3 (code cell 2 of 2)",
    ]
    assert [d["cell"]["position"] for d in percent["differences"]] == [3]


def test_html_dir_has_a_report_per_notebook_and_an_escaped_index(checked: dict) -> None:
    html: Path = checked["html"]
    assert sorted(path.name for path in html.iterdir()) == [
        "a_percent.py.html",
        "good.ipynb.html",
        "index.html",
        "sub__differs <b>&.ipynb.html",
    ]
    index = (html / "index.html").read_text()
    assert "content=\"default-src 'none'; img-src data:; style-src 'unsafe-inline'\"" in index
    assert "<script" not in index and "<b>&" not in index
    assert "differs &lt;b&gt;&amp;.ipynb" in index
    assert "href='sub__differs%20%3Cb%3E%26.ipynb.html'" in index
    assert "cell 3 of 5" in index


def test_junit_has_a_testcase_per_compared_cell_and_a_failure_per_differing_cell(checked: dict) -> None:
    root = ET.parse(checked["junit"]).getroot()
    assert root.tag == "testsuites"
    suites = root.findall("testsuite")
    assert [suite.get("name") for suite in suites] == [row["notebook"] for row in checked["json"]["summary"]]
    differs = suites[2]
    cases = differs.findall("testcase")
    assert len(cases) == 4 and differs.get("tests") == "4"
    failures = [case for case in cases if case.find("failure") is not None]
    assert [case.get("name") for case in failures] == [
        "cell 3 of 5 (code cell 2 of 4, id 'c1')",
        "cell 5 of 5 (code cell 4 of 4, id 'c3')",
    ]
    assert differs.get("failures") == "2" and differs.get("errors") == "0"
    assert "--- run 1" in failures[0].find("failure").text and "+++ run 2" in failures[0].find("failure").text
    assert {case.get("classname") for case in cases} == {differs.get("name")}
    assert root.get("tests") == "8" and root.get("failures") == "3" and root.get("errors") == "0"


def test_junit_has_an_error_per_unexpected_exception(tmp_path: Path) -> None:
    path = write(tmp_path / "raises.ipynb", "x = 1", "x / 0", "print(x)")
    junit = tmp_path / "out.xml"
    assert main(["check", str(path), "--junit", str(junit), "--quiet", "--no-causes", "--no-state"]) == 2
    suite = ET.parse(junit).getroot().find("testsuite")
    errors = [case for case in suite.findall("testcase") if case.find("error") is not None]
    assert [case.get("name") for case in errors] == ["cell 3 of 4 (code cell 2 of 3, id 'c1')"]
    error = errors[0].find("error")
    assert error.get("type") == "ZeroDivisionError" and "division by zero" in error.get("message")
    assert suite.get("errors") == "1" and suite.get("tests") == "3"


def test_a_jupytext_file_against_saved_says_it_has_no_saved_outputs(tmp_path: Path, capsys) -> None:
    path = tmp_path / "nb.py"
    path.write_text(PERCENT)
    assert main(["check", str(path), "--against-saved", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "nb.py is a text notebook: it holds no saved outputs" in err and len(err.strip().splitlines()) == 1


def test_light_and_markdown_notebooks_are_read_through_jupytext(tmp_path: Path) -> None:
    light = tmp_path / "light.py"
    light.write_text("x = 1\n\n\nprint(x)\n")
    cells, _ = load_notebook(light)
    assert [(cell.source, cell.label()) for cell in cells] == [
        ("x = 1", "cell 1 of 2 (code cell 1 of 2)"),
        ("print(x)", "cell 2 of 2 (code cell 2 of 2)"),
    ]
    page = tmp_path / "page.md"
    page.write_text("# Title\n\n```python\ny = 2\n```\n\nText.\n\n```python\nprint(y)\n```\n")
    cells, _ = load_notebook(page)
    assert [(cell.source, cell.where()) for cell in cells] == [("y = 2", "cell 2 of 4"), ("print(y)", "cell 4 of 4")]


def test_without_jupytext_a_text_notebook_is_a_one_line_error_naming_the_extra(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "nb.py"
    path.write_text(PERCENT)
    monkeypatch.setitem(sys.modules, "jupytext", None)  # as on a machine without it
    with pytest.raises(NotebookError) as error:
        load_notebook(path)
    assert (
        str(error.value)
        == f"{path} is a text notebook (.py); reading it needs jupytext: pip install 'ipyrepro[jupytext]'"
    )


def test_paths_that_name_no_notebook_are_usage_errors(tmp_path: Path, capsys) -> None:
    (tmp_path / "empty").mkdir()
    assert main(["check", str(tmp_path / "empty"), str(tmp_path / "x.ipynb")]) == 2
    assert "no notebooks in this folder" in capsys.readouterr().err
    write(tmp_path / "a.ipynb", "1")
    with pytest.raises(SystemExit):
        main(["check", str(tmp_path / "a.ipynb"), str(tmp_path / "a.ipynb"), "--save", str(tmp_path / "f.json")])
    (tmp_path / "file").write_text("")
    assert main(["check", str(tmp_path / "a.ipynb"), str(tmp_path), "--html", str(tmp_path / "file")]) == 2
    assert "it is a file" in capsys.readouterr().err
    before = (tmp_path / "a.ipynb").read_bytes()
    for paths in ([str(tmp_path / "a.ipynb")], [str(tmp_path / "a.ipynb"), str(tmp_path / "empty")]):
        (tmp_path / "empty" / "b.ipynb").write_bytes(before)
        assert main(["check", *paths, "--junit", str(tmp_path / "a.ipynb"), "--quiet"]) == 2
        err = capsys.readouterr().err
        assert "--junit" in err and "is the notebook" in err and "would overwrite it; give another file" in err
    assert (tmp_path / "a.ipynb").read_bytes() == before
