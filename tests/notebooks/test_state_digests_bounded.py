"""`ipyrepro check`'s state digests on what users really hold: self-referencing and shared structures, millions of
strings, a lazy module, a NumPy notebook under a tolerance. Digests stay bounded, stay on, and import nothing."""

from __future__ import annotations

import time
from pathlib import Path

from tests.notebooks.test_state_digests import check_json, write_notebook


def test_self_and_shared_references_finish_within_the_timeout(tmp_path: Path, capsys) -> None:
    path = write_notebook(
        tmp_path / "loops.ipynb",
        [
            ("code", "a = []\na.append(a)\na.append(a)"),
            ("markdown", "Forty levels of sharing: 2**40 paths, 41 objects"),
            ("code", "x = [1]\nfor _ in range(40):\n    x = [x, x]"),
            ("code", "print('next')"),
        ],
    )
    code, report = check_json(capsys, str(path), "--as-is", "--timeout", "40")
    assert code == 0, report
    assert report["state"]["compared"] and not report["state"]["errors"], report["state"]
    assert [cell["position"] for cell in report["state"]["digest_cells"]] == [1, 3, 4]
    assert all(max(cell["seconds"]) < 5 for cell in report["state"]["digest_cells"]), report["state"]


def test_two_million_strings_cost_little_more_than_no_state(tmp_path: Path, capsys) -> None:
    path = write_notebook(
        tmp_path / "tokens.ipynb",
        [
            ("code", "tokens = [f'tok{i % 50000}' for i in range(2_000_000)]"),
            ("code", "vocabulary = sorted(set(tokens))"),
            ("code", "counts = [len(token) for token in tokens[:1000]]"),
            ("code", "print(len(tokens), len(vocabulary))"),
        ],
    )
    start = time.perf_counter()
    code, plain = check_json(capsys, str(path), "--as-is", "--no-state", "--no-causes")
    baseline = time.perf_counter() - start
    assert code == 0, plain
    start = time.perf_counter()
    code, report = check_json(capsys, str(path), "--as-is", "--no-causes")
    digested = time.perf_counter() - start
    assert code == 0, report
    assert digested <= 1.5 * baseline + 5, f"{digested:.1f} s with digests, {baseline:.1f} s without"
    assert not report["state"]["skipped"].get("tokens"), report["state"]["skipped"]


def test_a_lazy_module_keeps_digests_on_and_the_later_divergence_is_named(tmp_path: Path, capsys) -> None:
    path = write_notebook(
        tmp_path / "lazy.ipynb",
        [
            ("code", "import torch\nhead = torch.nn.LazyLinear(4)"),
            ("code", "print('built')"),
            ("code", "noise = torch.randn(3)"),
            ("code", "print('done')"),
        ],
    )
    code, report = check_json(capsys, str(path), "--as-is", "--no-causes")
    state = report["state"]
    assert state["compared"] and not state["errors"], state
    assert report["first_divergence"]["position"] == 3, report["first_divergence"]
    assert report["first_divergence"]["variables"] == ["noise"]
    assert "head" not in state["skipped"], state["skipped"]


def test_a_tolerance_on_a_numpy_notebook_imports_no_torch(tmp_path: Path, capsys) -> None:
    path = write_notebook(
        tmp_path / "numpy.ipynb",
        [
            ("code", "import sys\nimport numpy as np\nweights = np.linspace(0.0, 1.0, 50)"),
            ("code", "history = [float(w) for w in weights]"),
            ("code", "assert 'torch' not in sys.modules, 'torch was imported'\nprint(weights.sum())"),
        ],
    )
    code, report = check_json(capsys, str(path), "--as-is", "--no-causes", "--rtol", "1e-6")
    assert code == 0, report
    assert [(cell["outcome"], cell["raised"]) for cell in report["cells"]] == [("matched", False)] * 3, report["cells"]
    assert report["state"]["compared"] and not report["state"]["errors"], report["state"]
