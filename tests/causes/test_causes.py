"""Causes at their lines: planted sources of nondeterminism, named by kind and line (or file:line), and
seeded look-alikes that must not be accused. All in the in-process IPython shell, via `%%repro`."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import ipyrepro
from ipyrepro.causes import diagnosis
from ipyrepro.causes.shell import KERNEL_MARKER
from ipyrepro.comparison import findings
from tests.reports import unwrapped

# An earlier cell: functions whose draws sit at known lines of this cell (1-based).
SETUP = """\
import datetime, os, random, secrets, threading, time, uuid
import numpy as np
import torch
def fn_rng():
    return np.random.default_rng().random()
def fn_random():
    return random.Random().random()
def fn_urandom():
    return os.urandom(8)
def fn_clock():
    return time.time()
def fn_torch_seed():
    torch.seed()
    return torch.rand(2)
def fn_thread(out):
    t = threading.Thread(target=lambda: out.append(uuid.uuid4().hex))
    t.start(); t.join()
    return out
def fn_benchmark():
    torch.backends.cudnn.benchmark = True
def fn_put():
    return torch.zeros(4).put_(torch.tensor([0, 1]), torch.ones(2))
def fn_hash(words):
    return [w for w in set(words)]
def fn_seeded():
    return np.random.default_rng(0).random() + random.Random(1).random()
class Noisy(torch.utils.data.Dataset):
    def __len__(self):
        return 4
    def __getitem__(self, i):
        return float(np.random.default_rng().random())
def init_worker(worker_id):
    np.random.seed()
class Legacy(torch.utils.data.Dataset):
    def __len__(self):
        return 4
    def __getitem__(self, i):
        return float(np.random.rand())
"""

_SETUP_NAMES = [line.split()[1].split("(")[0] for line in SETUP.splitlines() if line.startswith(("def ", "class "))] + [
    "datetime",
    "os",
    "random",
    "secrets",
    "threading",
    "time",
    "uuid",
    "np",
    "torch",
]

# (id, cell, expected causes as (kind, cell line or None, line in SETUP or None)), strongest first.
PLANTED = [
    # 1. generators created without a seed, and re-seeding from the OS
    ("default_rng", "x = 1\na = np.random.default_rng().random()", [("unseeded-generator", 2, None)]),
    ("SeedSequence", "a = np.random.SeedSequence().entropy", [("unseeded-generator", 1, None)]),
    (
        "under %time",
        "x = 1\n%time a = np.random.default_rng().random()\n%time b = os.urandom(3)",
        [("unseeded-generator", 2, None), ("entropy", 3, None)],
    ),
    (
        "Generator(PCG64())",
        "b = 2\n\ng = np.random.Generator(np.random.PCG64())\na = g.random()",
        [("unseeded-generator", 3, None)],
    ),
    ("MT19937", "a = np.random.Generator(np.random.MT19937()).random()", [("unseeded-generator", 1, None)]),
    ("Random()", "a = random.Random().random()", [("unseeded-generator", 1, None)]),
    ("random.seed()", "random.seed()\na = random.random()", [("unseeded-generator", 1, None)]),
    ("np.random.seed()", "np.random.seed()\na = np.random.rand()", [("unseeded-generator", 1, None)]),
    ("torch.seed()", "torch.seed()\na = torch.rand(3)", [("unseeded-generator", 1, None)]),
    (
        "Generator().seed()",
        "g = torch.Generator()\ng.seed()\na = torch.rand(3, generator=g)",
        [("unseeded-generator", 2, None)],
    ),
    ("fn: default_rng", "x = 1\na = fn_rng()", [("unseeded-generator", 2, 5)]),
    ("fn: Random()", "a = fn_random()", [("unseeded-generator", 1, 7)]),
    ("fn: torch.seed()", "a = fn_torch_seed()", [("unseeded-generator", 1, 13)]),
    # 2. entropy read directly
    ("os.urandom", "a = os.urandom(8)", [("entropy", 1, None)]),
    ("secrets", "a = secrets.token_hex(8)", [("entropy", 1, None)]),
    ("SystemRandom", "a = random.SystemRandom().random()", [("entropy", 1, None)]),
    ("uuid4", "a = str(uuid.uuid4())", [("entropy", 1, None)]),
    ("uuid1", "a = str(uuid.uuid1())", [("entropy", 1, None)]),
    ("fn: os.urandom", "a = fn_urandom()", [("entropy", 1, 9)]),
    # 3. the clock, listed after stronger causes
    ("time.time", "a = time.time()", [("clock", 1, None)]),
    ("perf_counter_ns", "a = time.perf_counter_ns()", [("clock", 1, None)]),
    ("datetime.now", "a = datetime.datetime.now()", [("clock", 1, None)]),
    ("fn: clock", "a = fn_clock()", [("clock", 1, 11)]),
    # 5. torch ops without a deterministic implementation (tick() makes the runs differ)
    (
        "put_",
        "z = torch.zeros(4)\nout = z.put_(torch.tensor([0, 1]), torch.ones(2)) + tick()",
        [("nondeterministic-op", 2, None)],
    ),
    ("fn: put_", "out = fn_put() + tick()", [("nondeterministic-op", 1, 22)]),
    # 6. threads and processes
    (
        "thread",
        "out = []\nt = threading.Thread(target=lambda: out.append(os.urandom(4)))\nt.start()\nt.join()",
        [("entropy", 2, None), ("concurrency", 3, None)],
    ),
    (
        "executor",
        "from concurrent.futures import ThreadPoolExecutor\nwith ThreadPoolExecutor(2) as pool:\n"
        "    a = list(pool.map(lambda i: time.time_ns() + i, range(4)))",
        [("concurrency", 3, None), ("clock", 3, None)],
    ),
    (
        "process",
        "import multiprocessing\np = multiprocessing.Process(target=int)\np.start()\np.join()\nb = os.urandom(2)",
        [("entropy", 5, None), ("concurrency", 3, None)],
    ),
    ("fn: thread", "a = fn_thread([])", [("entropy", None, 16), ("concurrency", 1, 17)]),
    (
        "DataLoader workers",
        "loader = torch.utils.data.DataLoader(Noisy(), num_workers=2)\nxs = [float(b) for b in loader]",
        [("unseeded-generator", 2, 31), ("concurrency", 2, None)],
    ),
    (
        "DataLoader worker_init_fn",
        "loader = torch.utils.data.DataLoader(Legacy(), num_workers=1, worker_init_fn=init_worker)\n"
        "xs = [float(b) for b in loader]",
        [("unseeded-generator", 2, 33), ("concurrency", 2, None)],
    ),
    # 7. settings changed inside the cell (tick() makes the runs differ)
    ("cudnn.benchmark", "x = tick()\ntorch.backends.cudnn.benchmark = True", [("setting", 2, None)]),
    (
        "use_deterministic_algorithms(False)",
        "torch.use_deterministic_algorithms(False)\nx = tick()",
        [("setting", 1, None)],
    ),
    ("fn: benchmark", "fn_benchmark()\nx = tick()", [("setting", 1, 20)]),
    # two at once: strongest first whatever the line order
    (
        "clock + default_rng",
        "t = time.time()\na = np.random.default_rng().random()",
        [
            ("unseeded-generator", 2, None),
            ("clock", 1, None),
        ],
    ),
    (
        "urandom + random.seed()",
        "a = os.urandom(2)\nrandom.seed()\nb = random.random()",
        [
            ("unseeded-generator", 2, None),
            ("entropy", 1, None),
        ],
    ),
    (
        "fn + cell",
        "a = fn_clock()\nb = fn_rng() + np.random.default_rng().random()",
        [
            ("unseeded-generator", 2, 5),
            ("unseeded-generator", 2, None),
            ("clock", 1, 11),
        ],
    ),
    (
        "torch.cuda.seed() + urandom",
        "torch.cuda.seed()\na = os.urandom(4)",
        [
            ("unseeded-generator", 1, None),
            ("entropy", 2, None),
        ],
    ),
]

# 4. string hash order (needs PYTHONHASHSEED unset), each with a draw that makes the runs differ.
HASH_ORDER = [
    (
        "set literal",
        "a = [w for w in {'pear', 'fig', 'kiwi'}]\nb = os.urandom(2)",
        [
            ("entropy", 2, None),
            ("hash-order", 1, None),
        ],
    ),
    (
        "set(words)",
        "words = ['pear', 'fig']\nseen = set(words)\nfor w in seen:\n    print(w)\nb = os.urandom(2)",
        [
            ("entropy", 5, None),
            ("hash-order", 3, None),
        ],
    ),
    (
        "dict.fromkeys",
        "seen = {'pear', 'fig', 'kiwi'}\nd = dict.fromkeys(seen)\nb = os.urandom(2)",
        [("entropy", 3, None), ("hash-order", 2, None)],
    ),
    (
        "fn: set(words)",
        "a = fn_hash(['pear', 'fig', 'kiwi'])\nb = time.time()",
        [
            ("hash-order", 1, 24),
            ("clock", 2, None),
        ],
    ),
]

# Seeded look-alikes next to one real cause (os.urandom on the last line): only that one is named.
SEEDED = [
    "a = np.random.default_rng(0).random()",
    "a = np.random.default_rng(np.random.randint(2**32)).random()",
    "a = np.random.SeedSequence(1).entropy",
    "a = np.random.Generator(np.random.PCG64(1)).random()",
    "a = np.random.RandomState(3).rand()",
    "a = random.Random(1).random()",
    "a = random.Random(random.getrandbits(64)).random()",
    "random.seed(3)\na = random.random()",
    "np.random.seed(3)\na = np.random.rand()",
    "g = torch.Generator().manual_seed(0)\na = torch.rand(2, generator=g)",
    "torch.manual_seed(0)\na = torch.rand(2)",
    "a = fn_seeded()",
    "a = sorted({'pear', 'fig', 'kiwi'})",
    "a = [x for x in {3, 1, 2}]",
    "a = [k for k in {'pear': 1, 'fig': 2}]",
    "a = 'fig' in {'pear', 'fig'}",
    "flag = 0\nif flag:\n    a = np.random.default_rng().random()",  # never ran
    "flag = 0\nif flag:\n    for w in {'pear', 'fig'}:\n        print(w)",
    "torch.backends.cudnn.benchmark = False\ntorch.backends.cudnn.deterministic = True",
]


@pytest.fixture
def shell(ip: Any) -> Any:
    result = ip.run_cell(SETUP)
    assert result.success
    ip.run_cell("def tick(_count=[0]):\n    _count[0] += 1\n    return _count[0]")
    yield ip
    for name in (
        *_SETUP_NAMES,
        "tick",
        "a",
        "b",
        "g",
        "t",
        "x",
        "z",
        "out",
        "xs",
        "loader",
        "words",
        "seen",
        "w",
        "p",
        "d",
    ):
        ip.user_ns.pop(name, None)


def _repro(shell: Any, cell: str) -> Any:
    return shell.run_cell_magic("repro", "", cell)


def _setup_line(location: str | None) -> int | None:
    return int(location.rsplit(":", 1)[1]) if location else None


def _assert_causes(report: Any, expected: list[tuple[str, int | None, int | None]]) -> None:
    assert not report.ok, report
    seen = [(cause.kind, cause.line, _setup_line(cause.location)) for cause in report.causes]
    assert seen == expected, str(report)
    setup_lines = SETUP.splitlines()
    for cause, (_, _, setup_line) in zip(report.causes, expected):
        assert cause.detail and cause.fix
        if setup_line is not None:
            assert cause.code == setup_lines[setup_line - 1].strip()
            assert ":" in cause.location and "<ipython-input-" in cause.location


@pytest.mark.parametrize(("cell", "expected"), [case[1:] for case in PLANTED], ids=[case[0] for case in PLANTED])
def test_planted_causes_are_named_at_their_line(shell: Any, cell: str, expected: list[Any]) -> None:
    report = _repro(shell, cell)
    _assert_causes(report, expected)
    lines = cell.splitlines()
    for cause in report.causes:
        if cause.line is not None and cause.location is None:
            assert cause.code == lines[cause.line - 1].strip()


@pytest.mark.parametrize(("cell", "expected"), [c[1:] for c in HASH_ORDER], ids=[c[0] for c in HASH_ORDER])
def test_string_hash_order_is_named_when_pythonhashseed_is_not_fixed(
    shell: Any, monkeypatch: pytest.MonkeyPatch, cell: str, expected: list[Any]
) -> None:
    monkeypatch.delenv("PYTHONHASHSEED", raising=False)
    _assert_causes(_repro(shell, cell), expected)
    monkeypatch.setenv("PYTHONHASHSEED", "0")  # fixed: the order is the same in every process
    report = _repro(shell, cell)
    assert [cause.kind for cause in report.causes] == [kind for kind, *_ in expected if kind != "hash-order"]


@pytest.mark.parametrize("cell", SEEDED)
def test_seeded_look_alikes_are_not_accused(shell: Any, monkeypatch: pytest.MonkeyPatch, cell: str) -> None:
    monkeypatch.delenv("PYTHONHASHSEED", raising=False)
    assert _repro(shell, cell).ok  # on its own it reproduces
    planted = len(cell.splitlines()) + 1
    report = _repro(shell, f"{cell}\nu = os.urandom(4)")
    _assert_causes(report, [("entropy", planted, None)])


def test_a_persistent_dataloader_iterator_from_an_earlier_cell_is_named(shell: Any) -> None:
    shell.run_cell("loader = torch.utils.data.DataLoader(Noisy(), num_workers=1, persistent_workers=True)")
    shell.run_cell("first = [float(b) for b in loader]")
    report = _repro(shell, "x = 1\nxs = [float(b) for b in loader]")
    assert [(cause.kind, cause.line) for cause in report.causes] == [("concurrency", 2)], str(report)
    assert "survived from an earlier cell" in report.causes[0].detail
    assert "persistent_workers=False" in report.causes[0].fix
    shell.user_ns.pop("first", None)


def test_a_last_expression_is_shown_as_written(shell: Any) -> None:
    report = _repro(shell, "x = 1\nnp.random.default_rng().random()")
    assert [(cause.kind, cause.line, cause.code) for cause in report.causes] == [
        ("unseeded-generator", 2, "np.random.default_rng().random()")
    ]


def test_nothing_is_traced_when_the_cell_reproduces(shell: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the tracer ran although nothing differed")

    monkeypatch.setattr(diagnosis, "trace", refuse)
    report = _repro(shell, "a = np.random.default_rng(0).random()\nb = torch.rand(2)")
    assert report.ok and report.causes == [] and report.diagnosis is None


def test_report_shows_causes_first_and_the_generic_advice_only_without_one(shell: Any) -> None:
    report = _repro(shell, "t = time.time()\na = np.random.default_rng().random()")
    text = str(report)
    assert text.index("Causes (strongest first):") < text.index("Diagnosis:")
    assert "unseeded-generator at line 2: `a = np.random.default_rng().random()`" in text
    assert "Fix: pass a seed: `np.random.default_rng(seed)`" in text
    assert diagnosis.UNSEEDED_HINT not in text
    html = report._repr_html_()
    assert html.index("Causes (strongest first)") < html.index("Diagnosis")
    assert report.to_dict()["causes"][0]["kind"] == "unseeded-generator"
    unexplained = _repro(shell, "a = tick()")  # a counter the snapshot cannot reset: no source to name
    assert not unexplained.ok and unexplained.causes == []
    assert diagnosis.UNSEEDED_HINT in str(unexplained)


def test_the_diagnostic_run_restores_namespace_rngs_and_settings(shell: Any) -> None:
    torch.backends.cudnn.benchmark = False
    shell.run_cell("n = [0]")
    cell = "torch.backends.cudnn.benchmark = not torch.backends.cudnn.benchmark\nn.append(1)\nb = os.urandom(2)"
    report = _repro(shell, cell)
    assert [(cause.kind, cause.line) for cause in report.causes] == [("entropy", 3), ("setting", 1)]
    # two runs toggled the flag twice; the diagnostic run's third toggle was undone
    assert torch.backends.cudnn.benchmark is False
    assert shell.user_ns["n"] == [0, 1]
    shell.user_ns.pop("n", None)
    cell = (
        "random.seed()\nnp.random.seed()\ntorch.seed()\n"
        "st = (random.getstate(), np.random.get_state()[1].tobytes(), torch.get_rng_state())"
    )
    report = _repro(shell, cell)
    assert [cause.kind for cause in report.causes] == ["unseeded-generator"] * 3
    st = shell.user_ns.pop("st")  # what the last real run left; the diagnostic run re-seeded from the OS again
    assert random.getstate() == st[0]
    assert np.random.get_state()[1].tobytes() == st[1]
    assert torch.equal(torch.get_rng_state(), st[2])


def test_compare_names_the_file_and_line_of_a_callable(tmp_path: Path) -> None:
    def step() -> dict[str, Any]:
        rng = np.random.default_rng()
        return {"a": rng.random(), "seeded": np.random.default_rng(0).random()}

    report = ipyrepro.compare(step)
    assert [(cause.kind, cause.line) for cause in report.causes] == [("unseeded-generator", None)]
    location = report.causes[0].location
    assert location == f"{__file__}:{step.__code__.co_firstlineno + 1}"
    assert report.causes[0].code == "rng = np.random.default_rng()"
    assert ipyrepro.compare(lambda: np.random.default_rng(0).random()).causes == []


def test_causes_round_trip_and_rank() -> None:
    cause = findings.Cause("clock", 3, None, "t = time.time()", "d", "f")
    assert findings.Cause.from_dict(cause.to_dict()) == cause
    ranked = findings.ranked([cause, findings.Cause("entropy", 9, None, "", "d", "f")])
    assert [c.kind for c in ranked] == ["entropy", "clock"]
    assert set(findings.KINDS) == {
        "unseeded-generator",
        "entropy",
        "clock",
        "hash-order",
        "nondeterministic-op",
        "concurrency",
        "setting",
        "earlier-cell",  # read from the code, against the saved outputs (notebooks/savedcauses.py)
        "file-read",
        "package-version",
    }


@pytest.mark.kernel
def test_check_names_the_causes_of_two_cells_and_proves_hash_order(tmp_path: Path) -> None:
    import json

    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    from ipyrepro.notebooks.check import check

    notebook = new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3"}})
    notebook.cells = [
        new_code_cell("import numpy as np\nwords = ['pear', 'apple', 'fig', 'kiwi', 'plum']", id="setup"),
        new_code_cell("x = 1\ny = np.random.default_rng().integers(1000)\nprint(y)", id="unseeded"),
        new_code_cell("print(y * 2)", id="downstream"),
        new_code_cell("seen = set(words)\nprint([w for w in seen])", id="hash-order"),
        new_code_cell("print(np.random.default_rng(0).integers(1000), sorted(set(words)))", id="seeded"),
    ]
    path = tmp_path / "planted.ipynb"
    nbformat.write(notebook, path)
    checked = check(path)
    assert checked.exit_code == 1  # hash order alone would not fail it: the checked runs fix PYTHONHASHSEED
    report = json.loads(checked.to_json())
    assert [d["cell"]["id"] for d in report["differences"]] == ["unseeded", "downstream"]
    found = {entry["cell"]["id"]: entry for entry in report["causes"]}
    assert set(found) == {"unseeded", "downstream", "hash-order"}
    assert [(c["kind"], c["line"], c["code"]) for c in report["differences"][0]["causes"]] == [
        ("unseeded-generator", 2, "y = np.random.default_rng().integers(1000)")
    ]
    assert report["differences"][1]["causes"] == []
    assert not found["unseeded"]["hash_order_only"] and found["hash-order"]["hash_order_only"]
    hash_order = found["hash-order"]["causes"]
    assert [(c["kind"], c["line"], c["code"]) for c in hash_order] == [("hash-order", 2, "print([w for w in seen])")]
    assert "PYTHONHASHSEED changed (0 in the checked runs, 1 in one more kernel)" in hash_order[0]["detail"]
    assert report["causes_run"] == "done"
    text = str(checked)
    # The unseeded cell is also the first whose state differs: its cause is listed there, with its cell; the
    # downstream cell says what it inherits instead of "none ran in this cell".
    assert "First divergence: cell 2 of 5 (its output differs): y differs (run 1 vs run 2)" in text
    assert "    cause: unseeded-generator at cell 2 of 5, line 2: `y = np.random.default_rng().integers(1000)`" in text
    assert "    inherits y from cell 2 of 5" in text and "none ran in this cell" not in text
    assert report["differences"][0]["causes"][0]["cell"] == 2 and report["differences"][0]["causes"][0][
        "variables"
    ] == ["y"]
    assert "Reproduces here only because PYTHONHASHSEED is fixed" in text


@pytest.mark.kernel
def test_check_as_is_without_a_hash_seed_names_hash_order_from_the_code(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    from ipyrepro.notebooks.check import check

    monkeypatch.delenv("PYTHONHASHSEED", raising=False)  # every kernel hashes strings differently
    words = [f"word{i}" for i in range(30)]  # 30! orders: two kernels never agree by chance
    notebook = new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3"}})
    notebook.cells = [new_code_cell(f"words = {words!r}\nfor w in set(words):\n    print(w)", id="loop")]
    path = tmp_path / "hash.ipynb"
    nbformat.write(notebook, path)
    report = check(path, as_is=True)
    assert [d.cell.cell_id for d in report.differences] == ["loop"]
    assert report.causes is not None and report.causes.status == "done" and report.causes.hash_seeds is None
    assert [(c.kind, c.line, c.code) for c in report.cell_causes(0)] == [("hash-order", 2, "for w in set(words):")]


@pytest.mark.kernel
def test_repro_in_a_real_kernel_names_the_cell_line_and_the_earlier_cells_file_and_line() -> None:
    import json

    from ..kernels import kernel

    with kernel() as k:
        k.ok("%load_ext ipyrepro\nimport numpy as np\ndef draw():\n    return np.random.default_rng().random()")
        reply = k.ok("%%repro\nx = 1\na = draw()\nb = np.random.default_rng().random()")
        assert "Causes (strongest first):" in reply.text()
        found = json.loads(k.ok("import json\nprint(json.dumps([c.to_dict() for c in _.causes]))").stdout)
    assert [(c["kind"], c["line"]) for c in found] == [("unseeded-generator", 2), ("unseeded-generator", 3)]
    assert found[0]["location"].endswith(".py:4") and found[0]["code"] == "return np.random.default_rng().random()"
    assert found[1]["location"] is None and found[1]["code"] == "b = np.random.default_rng().random()"


@pytest.mark.cuda
def test_a_racing_cuda_op_is_named_at_the_line_that_called_it(shell: Any) -> None:
    cell = (
        "index = torch.zeros(100_000, dtype=torch.long, device='cuda')\n"
        "values = torch.rand(100_000, device='cuda')\n"
        "total = torch.zeros(1, device='cuda').index_add_(0, index, values)"
    )
    report = shell.run_cell_magic("repro", "--runs 5", cell)
    if report.ok:
        pytest.skip("the atomics happened to add in the same order in every run")
    assert ("nondeterministic-op", 3) in [(cause.kind, cause.line) for cause in report.causes], str(report)
    for name in ("index", "values", "total"):
        shell.user_ns.pop(name, None)


@pytest.mark.parametrize("mode", ["source", "cell"])
def test_the_diagnostic_helper_traces_the_cell_from_the_cells_own_seed(
    shell: Any, capsys: pytest.CaptureFixture[str], mode: str
) -> None:
    """`ipyrepro check`'s causes kernel sends a helper with the cell's id: in `source` mode (and `cell` mode
    without an id) the hook seeds the helper from the helper's code, yet the traced run must draw what the
    cell draws. Here the cell takes an unseeded generator only from its own seed, not from the helper's."""
    import json

    from ipyrepro.core.seeding import derive_source_seed
    from ipyrepro.notebooks.checkcauses import _helper

    def draw(code: str) -> float:
        return random.Random(derive_source_seed(0, code)).random()

    for step in range(1, 1000):
        cell = f"import random\nif random.random() < {step / 1000}:\n    g = np.random.default_rng()\n"
        helper = _helper("trace", cell)
        if draw(cell) < step / 1000 <= draw(helper):
            break
    shell.run_line_magic("repro", f"on --reseed {mode}")
    capsys.readouterr()
    shell.run_cell(helper, store_history=False, cell_id="c1" if mode == "source" else None)
    line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith(KERNEL_MARKER))
    found = json.loads(line[len(KERNEL_MARKER) :])
    assert [(cause["kind"], cause["line"]) for cause in found] == [("unseeded-generator", 3)]


# `ipyrepro check --as-is`: draws from global RNGs that nothing seeded. (cell id, source, expected causes as
# (kind, line, location suffix or None, code)); the `seeded` variant puts a seeding cell first.
GLOBAL_SETUP = "import random\nimport numpy as np\nimport torch\ndef draw():\n    return torch.randn(2)"
GLOBAL_DRAWS = [
    ("python", "x = 1\nprint(random.random())", [("unseeded-generator", 2, None, "print(random.random())")]),
    ("numpy", "y = 2\nprint(np.random.rand())", [("unseeded-generator", 2, None, "print(np.random.rand())")]),
    (
        "torch",
        "z = 3\nprint(torch.rand(2))\nprint(torch.rand(2))",  # named once, at the first draw
        [("unseeded-generator", 2, None, "print(torch.rand(2))")],
    ),
    # a function an earlier cell defined: located at that cell and line, not the kernel's temporary file
    ("function", "print(draw())", [("unseeded-generator", 1, "cell 1, line 5", "return torch.randn(2)")]),
    (
        "module-init",
        "lin = torch.nn.Linear(3, 2)\nprint(lin.weight)",
        [("unseeded-generator", 1, None, "lin = torch.nn.Linear(3, 2)")],
    ),
    (
        "dropout",  # a module in training mode draws; the same in eval mode does not
        "train = torch.nn.Dropout(0.5)\nevaluate = torch.nn.Dropout(0.5).eval()\nprint(evaluate(torch.ones(8)))\n"
        "print(train(torch.ones(8)))",
        [("unseeded-generator", 4, None, "print(train(torch.ones(8)))")],
    ),
    (
        "shuffling-loader",
        "loader = torch.utils.data.DataLoader(list(range(8)), shuffle=True)\nprint([int(b) for b in loader])",
        [("unseeded-generator", 2, None, "print([int(b) for b in loader])")],
    ),
    (
        "own-generator",  # differs through default_rng() only: the draws with their own generator are not accused
        "g = torch.Generator().manual_seed(0)\nprint(torch.rand(2, generator=g), random.Random(1).random())\n"
        "print(np.random.default_rng().random())",
        [("unseeded-generator", 3, None, "print(np.random.default_rng().random())")],
    ),
]
GLOBAL_DRAWS.append(
    (
        "seeded-in-cell",  # last: from here on torch's generator is seeded
        "torch.manual_seed(1)\nprint(torch.rand(1))\nprint(np.random.default_rng().random())",
        [("unseeded-generator", 3, None, "print(np.random.default_rng().random())")],
    )
)
GLOBAL_SEEDING = "random.seed(0)\nnp.random.seed(0)\ntorch.manual_seed(0)"
SEEDED_DRAWS = (  # in the seeded notebook: differs through default_rng() only, after draws from the seeded RNGs
    "print(random.random(), np.random.rand(), torch.rand(1), torch.nn.Linear(1, 1).weight)\n"
    "print(np.random.default_rng().random())"
)


def _global_rng_notebook(path: Path, *, seeded: bool) -> Path:
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    notebook = new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3"}})
    notebook.cells = [new_code_cell(GLOBAL_SETUP, id="setup")]
    if seeded:
        notebook.cells.append(new_code_cell(GLOBAL_SEEDING, id="seeding"))
    notebook.cells += [new_code_cell(source, id=cell_id) for cell_id, source, _ in GLOBAL_DRAWS]
    if seeded:
        notebook.cells.append(new_code_cell(SEEDED_DRAWS, id="seeded-draws"))
    nbformat.write(notebook, path)
    return path


def _found_causes(report: Any) -> dict[str, list[tuple[Any, ...]]]:
    assert report.causes is not None and report.causes.status == "done", report.causes
    found = {}
    for difference in report.differences:
        found[difference.cell.cell_id] = [
            (c.kind, c.line, c.location, c.code) for c in report.cell_causes(difference.cell.index)
        ]
    return found


def _matches(found: list[tuple[Any, ...]], expected: list[tuple[Any, ...]]) -> bool:
    return len(found) == len(expected) and all(
        (kind, line, code) == (want_kind, want_line, want_code)
        and (location is None if suffix is None else (location or "").endswith(suffix))
        for (kind, line, location, code), (want_kind, want_line, suffix, want_code) in zip(found, expected)
    )


@pytest.mark.kernel
def test_check_as_is_names_draws_from_global_rngs_that_nothing_seeded(tmp_path: Path) -> None:
    from ipyrepro.notebooks.check import check

    report = check(_global_rng_notebook(tmp_path / "unseeded.ipynb", seeded=False), as_is=True)
    found = _found_causes(report)
    assert set(found) == {cell_id for cell_id, _, _ in GLOBAL_DRAWS}
    for cell_id, _, expected in GLOBAL_DRAWS:
        assert _matches(found[cell_id], expected), (cell_id, found[cell_id])
    text = unwrapped(str(report))
    assert "`torch.rand(2)` draws from torch's default generator, which nothing in this notebook seeded" in text
    assert "Fix: seed it once at the top: `np.random.seed(0)` (and `random.seed(0)`, `torch.manual_seed(0)`)" in text


@pytest.mark.kernel
def test_check_as_is_does_not_accuse_global_rngs_an_earlier_cell_seeded(tmp_path: Path) -> None:
    from ipyrepro.notebooks.check import check

    report = check(_global_rng_notebook(tmp_path / "seeded.ipynb", seeded=True), as_is=True)
    found = _found_causes(report)
    assert list(found) == ["own-generator", "seeded-in-cell", "seeded-draws"]  # everything else reproduces
    assert _matches(found["own-generator"], GLOBAL_DRAWS[-2][2]), found
    assert _matches(found["seeded-in-cell"], GLOBAL_DRAWS[-1][2]), found
    assert _matches(found["seeded-draws"], [("unseeded-generator", 2, None, SEEDED_DRAWS.splitlines()[1])]), found
