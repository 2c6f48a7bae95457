"""`on` never imports `numpy.random`, yet NumPy's global RNG draws exactly what eager seeding gives.

Each test runs in a fresh interpreter (after `import torch`, as a notebook does), since whether
`numpy.random` is imported is a per-process fact and this test session imported it long ago.
Expected draws come from `np.random.RandomState(seed)` here, the seeds from ipyrepro's documented
derivations.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import types

import numpy as np
import pytest

from ipyrepro.core.importhook import after_import
from ipyrepro.core.seeding import derive_cell_seed, derive_source_seed
from ipyrepro.core.validation import CHILD_VARS
from ipyrepro.distributed import derive_rank_seed

PRELUDE = """
import json, sys
import torch
import ipyrepro
from ipyrepro.core.state import STATE
def imported():
    return "numpy.random" in sys.modules
def hooked():
    return any(getattr(f, "name", None) == "numpy.random" for f in sys.meta_path)
def draw():
    import numpy as np
    return np.random.rand(3).tolist()
out = {}
"""

SHELL = """
from IPython.testing.globalipapp import start_ipython
ip = start_ipython()
def cell(code, cell_id=None):
    result = ip.run_cell(code, store_history=True, cell_id=cell_id)
    result.raise_error()
"""


def run_fresh(script: str, *, shell: bool = False) -> dict:
    """Run PRELUDE (+ a real IPython shell) + script in a new Python; the script fills `out`."""
    code = PRELUDE + (SHELL if shell else "") + textwrap.dedent(script) + "\nprint('RESULT' + json.dumps(out))\n"
    environment = {name: value for name, value in os.environ.items() if name not in CHILD_VARS}  # a fresh start
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=environment, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    line = next(line for line in done.stdout.splitlines() if line.startswith("RESULT"))
    return json.loads(line.removeprefix("RESULT"))


def eager(seed: int, count: int = 3) -> list[float]:
    """What `np.random.seed(seed); np.random.rand(count)` draws."""
    return np.random.RandomState(seed).random_sample(count).tolist()


FIRST = "import numpy as np\nx = np.random.rand(3).tolist()"
SECOND = "y = np.random.rand(3).tolist()"


@pytest.mark.parametrize("mode", ["fixed", "cell", "source"])
def test_on_leaves_numpy_random_unimported_and_a_later_import_draws_the_cells_seed(mode: str) -> None:
    out = run_fresh(
        f"""
        cell("%load_ext ipyrepro")
        cell("%repro on --seed 5 --reseed {mode}")
        out["after_on"] = imported()
        out["hooked"] = hooked()
        cell("%repro status")
        cell("%repro status --json")
        cell("%repro env --json")
        out["after_reports"] = imported()
        cell({FIRST!r}, cell_id="first")
        out["x"], out["x_seed"] = ip.user_ns["x"], STATE.last_cell.seed
        out["hooked_after_import"] = hooked()
        cell({SECOND!r}, cell_id="second")
        out["y"], out["y_seed"] = ip.user_ns["y"], STATE.last_cell.seed
        """,
        shell=True,
    )
    seeds = {
        "fixed": (5, 5),
        "cell": (derive_cell_seed(5, "first"), derive_cell_seed(5, "second")),
        "source": (derive_source_seed(5, FIRST), derive_source_seed(5, SECOND)),
    }[mode]
    assert out["after_on"] is False
    assert out["hooked"] is True
    assert out["after_reports"] is False
    assert (out["x_seed"], out["y_seed"]) == seeds
    assert out["x"] == eager(seeds[0])
    assert out["hooked_after_import"] is False  # one-shot: gone once it fired
    assert out["y"] == eager(seeds[1])  # from then on re-seeded directly


def test_an_import_in_the_same_cell_as_on_draws_the_base_seed() -> None:
    out = run_fresh(
        """
        cell("%load_ext ipyrepro")
        cell("%repro on --seed 11 --reseed off\\nimport numpy as np\\nx = np.random.rand(3).tolist()")
        out["x"] = ip.user_ns["x"]
        out["y"] = draw()  # no re-seeding: the same stream goes on
        """,
        shell=True,
    )
    assert out["x"] == eager(11)
    assert out["y"] == eager(11, 6)[3:]


def test_a_cell_magic_importing_numpy_random_compares_equal_runs_and_leaves_the_last_runs_stream() -> None:
    out = run_fresh(
        """
        cell("%load_ext ipyrepro")
        cell("%repro on --reseed off")
        report = ip.run_cell_magic("repro", "--seed 13 --runs 3", "import numpy as np\\nx = np.random.rand(3).tolist()")
        out["ok"], out["entries"] = report.ok, [entry.name for entry in report.entries]
        out["x"] = ip.user_ns["x"]
        out["y"] = draw()
        """,
        shell=True,
    )
    assert out["ok"] is True
    assert "x" in out["entries"]
    assert out["x"] == eager(13)
    assert out["y"] == eager(13, 6)[3:]


def test_seed_all_then_import_draws_np_random_seed_draws() -> None:
    out = run_fresh("""
        ipyrepro.seed_all(7)
        out["imported"], out["hooked"] = imported(), hooked()
        out["x"] = draw()
    """)
    assert out == {"imported": False, "hooked": True, "x": eager(7)}


def test_rank_seeding_before_the_import_gives_the_ranks_seed() -> None:
    out = run_fresh("""
        ipyrepro.enable(3, rank=2)
        out["imported"] = imported()
        out["x"] = draw()
    """)
    assert out == {"imported": False, "x": eager(derive_rank_seed(3, 2))}


@pytest.mark.parametrize("leave", ["%repro off", "%unload_ext ipyrepro"])
def test_off_or_unload_before_the_import_removes_the_hook_and_numpy_is_not_seeded_by_ipyrepro(leave: str) -> None:
    out = run_fresh(
        f"""
        cell("%load_ext ipyrepro")
        cell("%repro on --seed 4 --reseed fixed")
        cell({leave!r})
        out["hooked"] = hooked()
        out["x"] = draw()
        """,
        shell=True,
    )
    assert out["hooked"] is False
    assert out["x"] != eager(4)  # OS entropy, as NumPy's own import leaves it


def test_rollback_and_checkpoint_restore_keep_the_pending_seed_or_the_state_it_would_have_given() -> None:
    out = run_fresh("""
        def refuse(seed):
            raise RuntimeError("plugin refuses")
        def import_then_refuse(seed):
            import numpy.random
            raise RuntimeError("plugin refuses after importing numpy.random")
        seeders = STATE.reseeder.seeders

        # `on` fails with nothing pending: the hook `on` put in is taken out again.
        seeders.append(refuse)
        try:
            ipyrepro.enable(3)
        except RuntimeError:
            pass
        seeders.remove(refuse)
        out["rollback"] = [imported(), hooked()]

        # checkpoint/restore (the pytest marker) around an `on`: nothing pending again.
        checkpoint = STATE.checkpoint()
        ipyrepro.enable(4)
        out["on"] = hooked()
        STATE.restore(checkpoint)
        out["restored"] = [imported(), hooked()]

        # seed 9 pending: a checkpoint/restore around `on` keeps 9 pending (not 4).
        ipyrepro.seed_all(9)
        checkpoint = STATE.checkpoint()
        ipyrepro.enable(4)
        STATE.restore(checkpoint)

        # `on` fails after a plugin imported numpy.random (seeding it with on's seed 3): the rollback
        # leaves the state it had before `on`, i.e. what its import would have given then: seed 9's.
        seeders.append(import_then_refuse)
        try:
            ipyrepro.enable(3)
        except RuntimeError:
            pass
        seeders.remove(import_then_refuse)
        out["imported"], out["hooked"] = imported(), hooked()
        out["x"] = draw()
    """)
    assert out["rollback"] == [False, False]
    assert out["on"] is True
    assert out["restored"] == [False, False]
    assert out["imported"] is True
    assert out["hooked"] is False
    assert out["x"] == eager(9)


def test_restore_after_an_import_in_between_gives_the_state_the_pending_seed_would_have_given() -> None:
    out = run_fresh("""
        ipyrepro.seed_all(9)
        checkpoint = STATE.checkpoint()
        ipyrepro.enable(4)
        out["in_between"] = draw()
        STATE.restore(checkpoint)
        out["x"] = draw()
        ipyrepro.disable()
    """)
    assert out["in_between"] == eager(4)
    assert out["x"] == eager(9)


def test_restore_with_nothing_pending_after_an_import_in_between_reseeds_from_entropy() -> None:
    out = run_fresh("""
        checkpoint = STATE.checkpoint()
        ipyrepro.enable(4)
        out["in_between"] = draw()
        STATE.restore(checkpoint)
        out["hooked"] = hooked()
        out["x"] = draw()
    """)
    assert out["in_between"] == eager(4)
    assert out["hooked"] is False
    assert out["x"] not in (eager(4), eager(4, 6)[3:])


def test_a_first_import_under_the_causes_tracer_is_no_cause_and_draws_the_pending_seed(tmp_path) -> None:
    user_file = tmp_path / "user_code.py"
    user_file.write_text("import numpy as np\nx = np.random.rand(3).tolist()\n")
    out = run_fresh(f"""
        from ipyrepro.causes import tracer as causes
        ipyrepro.enable(6)
        path = {str(user_file)!r}
        code = compile(open(path).read(), path, "exec")
        namespace = {{}}
        with causes.trace() as tracer:
            exec(code, namespace)
        out["causes"] = [cause.detail for cause in causes.result(tracer)]
        out["x"] = namespace["x"]
    """)
    assert out == {"causes": [], "x": eager(6)}


# -- the import hook itself, in this process, on a module made for it -------------------------------


def _module_file(tmp_path, monkeypatch, name: str) -> None:
    (tmp_path / f"{name}.py").write_text("VALUE = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, name, raising=False)


def test_import_hook_calls_back_once_after_the_modules_code_and_leaves_no_trace(tmp_path, monkeypatch) -> None:
    name = "ipyrepro_hooked_module"
    _module_file(tmp_path, monkeypatch, name)
    seen: list[types.ModuleType] = []
    hook = after_import(name, lambda module: seen.append(module) or setattr(module, "VALUE", module.VALUE + 1))
    try:
        assert hook in sys.meta_path
        module = __import__(name)
        assert seen == [module]
        assert module.VALUE == 2  # ran after the module's own code
        assert hook not in sys.meta_path
        assert type(module.__loader__).__name__ == "SourceFileLoader"
        assert module.__spec__.loader is module.__loader__
        del sys.modules[name]
        __import__(name)
        assert len(seen) == 1  # one-shot
    finally:
        hook.remove()


def test_a_removed_import_hook_never_calls_back(tmp_path, monkeypatch) -> None:
    name = "ipyrepro_unhooked_module"
    _module_file(tmp_path, monkeypatch, name)
    seen: list[types.ModuleType] = []
    hook = after_import(name, seen.append)
    hook.remove()
    assert hook not in sys.meta_path
    __import__(name)
    assert seen == []
