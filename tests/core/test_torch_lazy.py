"""`on` never imports torch, yet torch draws and runs with exactly what eager application gives.

Each scenario runs twice in fresh interpreters: once with `import torch` before ipyrepro does
anything (eager: what ipyrepro did before issue 23) and once without (deferred to torch's import,
through a one-shot import hook). Both must print the same draws, flags and inductor setting; the
deferred run must also show that torch was not imported until the user's cell imported it.
Expected draws come from `torch.Generator().manual_seed(seed)` here, the seeds from ipyrepro's
documented derivations.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from ipyrepro.core.lazytorch import PENDING_TEXT
from ipyrepro.core.processes import derive_rank_seed
from ipyrepro.core.seeding import derive_cell_seed, derive_source_seed
from ipyrepro.core.validation import CHILD_VARS

PRELUDE = """
import json, sys
{eager}
import ipyrepro
from ipyrepro.core.state import STATE
def imported():
    return "torch" in sys.modules
def hooked():
    return any(getattr(f, "name", None) == "torch" for f in sys.meta_path)
def flags():
    import torch
    return [torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic,
            torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()]
def draw():
    import torch
    return torch.rand(3).tolist()
out = {{}}
"""

SHELL = """
from IPython.testing.globalipapp import start_ipython
ip = start_ipython()
def cell(code, cell_id=None):
    result = ip.run_cell(code, store_history=True, cell_id=cell_id)
    result.raise_error()
"""


def run_fresh(script: str, *, eager: bool, shell: bool = False) -> dict:
    """Run PRELUDE (+ a real IPython shell) + script in a new Python; the script fills `out`."""
    prelude = PRELUDE.format(eager="import torch" if eager else "")
    code = prelude + (SHELL if shell else "") + textwrap.dedent(script) + "\nprint('RESULT' + json.dumps(out))\n"
    environment = {name: value for name, value in os.environ.items() if name not in CHILD_VARS}  # a fresh start
    environment.pop("CUBLAS_WORKSPACE_CONFIG", None)
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=environment, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    line = next(line for line in done.stdout.splitlines() if line.startswith("RESULT"))
    return json.loads(line.removeprefix("RESULT"))


def both(script: str, *, shell: bool = False) -> tuple[dict, dict]:
    """The scenario run eagerly and deferred; returns (eager, deferred)."""
    return run_fresh(script, eager=True, shell=shell), run_fresh(script, eager=False, shell=shell)


def drawn(seed: int, count: int = 3, skip: int = 0) -> list[float]:
    """What `torch.manual_seed(seed)` then `torch.rand` draws (after `skip` draws)."""
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(skip + count, generator=generator)[skip:].tolist()


ON = [False, True, True, False]  # benchmark, cudnn.deterministic, deterministic algorithms, warn only
DEFAULTS = [False, False, False, False]
FIRST = "import torch\nx = torch.rand(3).tolist()"
SECOND = "y = torch.rand(3).tolist()"


@pytest.mark.parametrize("mode", ["off", "fixed", "cell", "source"])
def test_on_before_import_torch_gives_the_draws_and_flags_of_eager_application(mode: str) -> None:
    script = f"""
        cell("%load_ext ipyrepro")
        cell("%repro on --seed 5 --reseed {mode}")
        out["after_on"], out["hooked"] = imported(), hooked()
        cell("%repro")
        cell("%repro status --json")
        out["after_status"] = imported()
        cell({FIRST!r}, cell_id="first")
        out["x"], out["flags"], out["hooked_after"] = ip.user_ns["x"], flags(), hooked()
        cell({SECOND!r}, cell_id="second")
        out["y"] = ip.user_ns["y"]
        out["status"] = STATE.status().to_dict()["deterministic_algorithms"]
    """
    eager, deferred = both(script, shell=True)
    assert (deferred["after_on"], deferred["hooked"], deferred["after_status"]) == (False, True, False)
    assert deferred["hooked_after"] is False  # one-shot: gone once it fired
    for key in ("after_on", "hooked", "after_status", "hooked_after"):
        eager.pop(key), deferred.pop(key)
    assert deferred == eager
    seeds = {
        "off": (5, 5),
        "fixed": (5, 5),
        "cell": (derive_cell_seed(5, "first"), derive_cell_seed(5, "second")),
        "source": (derive_source_seed(5, FIRST), derive_source_seed(5, SECOND)),
    }[mode]
    assert deferred["x"] == drawn(seeds[0])
    assert deferred["y"] == (drawn(5, skip=3) if mode == "off" else drawn(seeds[1]))
    assert deferred["flags"] == ON
    assert deferred["status"] == "error"


def test_import_in_the_same_cell_as_on_and_warn_only() -> None:
    script = """
        cell("%load_ext ipyrepro")
        cell("%repro on --seed 11 --reseed off --warn-only\\nimport torch\\nx = torch.rand(3).tolist()")
        out["x"], out["flags"] = ip.user_ns["x"], flags()
        out["y"] = draw()
    """
    eager, deferred = both(script, shell=True)
    assert deferred == eager
    assert deferred["x"] == drawn(11)
    assert deferred["y"] == drawn(11, skip=3)
    assert deferred["flags"] == [False, True, True, True]


def test_a_cell_magic_importing_torch_compares_equal_runs_and_leaves_the_last_runs_stream() -> None:
    script = """
        cell("%load_ext ipyrepro")
        cell("%repro on --reseed off")
        report = ip.run_cell_magic("repro", "--seed 13 --runs 3", "import torch\\nx = torch.rand(3).tolist()")
        out["ok"], out["entries"] = report.ok, [entry.name for entry in report.entries]
        out["x"], out["y"], out["flags"] = ip.user_ns["x"], draw(), flags()
    """
    eager, deferred = both(script, shell=True)
    assert deferred == eager
    assert deferred["ok"] is True and "x" in deferred["entries"]
    assert deferred["x"] == drawn(13)
    assert deferred["y"] == drawn(13, skip=3)


def test_rank_seeding_before_the_import_gives_the_ranks_seed() -> None:
    script = """
        ipyrepro.enable(3, rank=2)
        out["imported"] = imported()
        out["x"], out["flags"] = draw(), flags()
    """
    eager, deferred = both(script)
    assert deferred.pop("imported") is False
    eager.pop("imported")
    assert deferred == eager
    assert deferred["x"] == drawn(derive_rank_seed(3, 2))


def test_seed_and_reseed_magics_before_the_import() -> None:
    script = """
        cell("%load_ext ipyrepro")
        cell("%repro seed 21")
        out["hooked"] = hooked()
        out["x"], out["flags"] = draw(), flags()
    """
    eager, deferred = both(script, shell=True)
    assert deferred.pop("hooked") is True
    eager.pop("hooked")
    assert deferred == eager
    assert deferred["x"] == drawn(21)
    assert deferred["flags"] == DEFAULTS  # `seed` alone sets no flags


def test_rollback_on_a_failing_seeder_leaves_what_was_pending_before() -> None:
    script = """
        def refuse(seed):
            raise RuntimeError("plugin refuses")
        ipyrepro.seed_all(9)
        seeders = STATE.reseeder.seeders
        seeders.append(refuse)
        try:
            ipyrepro.enable(3)
        except RuntimeError as error:
            out["error"] = str(error)
        seeders.remove(refuse)
        out["enabled"] = STATE.enabled
        out["imported"] = imported()
        out["x"], out["flags"] = draw(), flags()
    """
    eager, deferred = both(script)
    assert deferred.pop("imported") is False
    eager.pop("imported")
    assert deferred == eager
    assert deferred["error"] == "plugin refuses" and deferred["enabled"] is False
    assert deferred["x"] == drawn(9)
    assert deferred["flags"] == DEFAULTS


def test_rollback_with_nothing_pending_takes_the_hook_out() -> None:
    out = run_fresh(
        """
        def refuse(seed):
            raise RuntimeError("plugin refuses")
        STATE.reseeder.seeders.append(refuse)
        try:
            ipyrepro.enable(3)
        except RuntimeError:
            pass
        out["imported"], out["hooked"] = imported(), hooked()
        out["x"], out["flags"] = draw(), flags()
        """,
        eager=False,
    )
    assert out["imported"] is False and out["hooked"] is False
    assert out["flags"] == DEFAULTS
    assert out["x"] != drawn(3)  # torch's own import seeds from the OS


@pytest.mark.parametrize("leave", ["%repro off", "%unload_ext ipyrepro"])
def test_off_or_unload_before_the_import_gives_what_eager_leaves(leave: str) -> None:
    script = f"""
        cell("%load_ext ipyrepro")
        cell("%repro on --seed 4 --reseed fixed")
        cell({leave!r})
        out["imported"] = imported()
        out["x"], out["flags"] = draw(), flags()
        import torch._inductor.config as config
        out["inductor"] = config.deterministic
        out["cublas"] = __import__("os").environ.get("CUBLAS_WORKSPACE_CONFIG")
    """
    eager, deferred = both(script, shell=True)
    assert deferred.pop("imported") is False
    eager.pop("imported")
    assert deferred == eager
    assert deferred["x"] == drawn(4)  # `off` restores flags, not RNG states: torch stays seeded, as eagerly
    assert deferred["flags"] == (DEFAULTS if leave == "%repro off" else ON)
    assert deferred["inductor"] is False  # inductor's own default: unloading takes its hook out too
    assert deferred["cublas"] == (None if leave == "%repro off" else ":4096:8")


def test_checkpoint_and_restore_keep_what_was_pending() -> None:
    script = """
        ipyrepro.seed_all(9)
        checkpoint = STATE.checkpoint()
        ipyrepro.enable(4)
        STATE.restore(checkpoint)
        out["imported"] = imported()
        out["x"], out["flags"] = draw(), flags()
    """
    eager, deferred = both(script)
    assert deferred.pop("imported") is False
    eager.pop("imported")
    assert deferred == eager
    assert deferred["x"] == drawn(9)
    assert deferred["flags"] == DEFAULTS


def test_restore_after_an_import_in_between_gives_the_state_the_pending_seed_would_have_given() -> None:
    out = run_fresh(
        """
        ipyrepro.seed_all(9)
        checkpoint = STATE.checkpoint()
        ipyrepro.enable(4)
        out["in_between"], out["flags_in_between"] = draw(), flags()
        STATE.restore(checkpoint)
        out["x"], out["flags"] = draw(), flags()
        """,
        eager=False,
    )
    assert out["in_between"] == drawn(4) and out["flags_in_between"] == ON
    assert out["x"] == drawn(9)
    assert out["flags"] == DEFAULTS


def test_status_and_panel_say_torch_is_pending_without_importing_it() -> None:
    out = run_fresh(
        """
        cell("%load_ext ipyrepro")
        cell("%repro on --seed 5")
        status = STATE.status()
        out["text"], out["json"] = str(status), json.loads(status.to_json())
        out["html"] = status._repr_html_()
        panel = ipyrepro.panel()
        out["panel"] = panel.status_view.value
        out["panel_toggles"] = [panel.benchmark.value, panel.cudnn_deterministic.value, panel.algorithms.value]
        out["imported"] = imported()
        cell("import torch")
        out["after"] = str(STATE.status())
        """,
        eager=False,
        shell=True,
    )
    assert out["imported"] is False
    assert PENDING_TEXT in out["text"] and PENDING_TEXT in out["html"] and PENDING_TEXT in out["panel"]
    assert out["json"]["torch_imported"] is False
    assert out["json"]["deterministic_algorithms"] == "error" and out["json"]["cudnn_deterministic"] is True
    assert out["panel_toggles"] == [False, True, "error"]
    assert not out["json"]["warnings"]  # pending is not drift
    assert PENDING_TEXT not in out["after"]
    assert "deterministic algorithms  on (raise on nondeterministic ops)" in out["after"]


def test_configure_before_the_import_changes_what_waits() -> None:
    script = """
        ipyrepro.enable(2)
        ipyrepro.configure(cudnn_benchmark=True, deterministic_algorithms="warn")
        out["drift"] = sorted(STATE.status().drift)
        out["imported"] = imported()
        out["flags"], out["x"] = flags(), draw()
    """
    eager, deferred = both(script)
    assert deferred.pop("imported") is False
    eager.pop("imported")
    assert deferred == eager
    assert deferred["flags"] == [True, True, True, True]
    assert deferred["drift"] == ["cudnn_benchmark", "deterministic_algorithms"]
    assert deferred["x"] == drawn(2)


def test_preloaded_kernel_setup_and_loading_the_extension_do_not_import_torch() -> None:
    out = run_fresh(
        """
        cell("%load_ext ipyrepro.preload")
        cell("%repro on --seed 0 --reseed cell")
        cell("%load_ext ipyrepro")
        cell("import numpy as np\\nv = np.random.rand(2).tolist()", cell_id="c1")
        out["imported"] = imported()
        """,
        eager=False,
        shell=True,
    )
    assert out["imported"] is False


def test_an_extra_step_runs_after_the_flags_and_a_failing_one_never_breaks_the_import() -> None:
    out = run_fresh(
        """
        from ipyrepro.core.lazytorch import TORCH
        ipyrepro.enable(8)
        seen = []
        TORCH.apply_on_import("profile", lambda torch: seen.append(torch.backends.cudnn.deterministic))
        TORCH.apply_on_import("broken", lambda torch: 1 / 0)
        out["x"] = draw()  # imports torch
        out["seen"], out["flags"] = seen, flags()
        out["errors"] = STATE.status().warnings
        """,
        eager=False,
    )
    assert out["seen"] == [True]  # the flags were in force when the extra step ran
    assert out["x"] == drawn(8) and out["flags"] == ON  # the seed still applied after the failing step
    assert len(out["errors"]) == 1 and "import torch (broken)" in out["errors"][0]
    assert "ZeroDivisionError" in out["errors"][0]
