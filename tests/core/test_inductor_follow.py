"""`on` never imports inductor, yet inductor's `deterministic` config follows ipyrepro on every path.

Each test runs in a fresh interpreter, since whether inductor is imported is a per-process fact.
`torch.compile(backend="eager")` exercises the import path (dynamo imports inductor's config)
without compiling C++.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from ipyrepro.core.torchinfo import inductor_follows_deterministic_algorithms

pytestmark = pytest.mark.skipif(
    not inductor_follows_deterministic_algorithms(),
    reason="before torch 2.10, use_deterministic_algorithms leaves inductor's config alone",
)

PRELUDE = """
import json, sys
import torch
from IPython.testing.globalipapp import start_ipython
ip = start_ipython()
ip.user_ns["torch"] = torch
def cell(code):
    result = ip.run_cell(code, store_history=True)
    result.raise_error()
def config():
    module = sys.modules.get("torch._inductor.config")
    return None if module is None else module.deterministic
def hooked():
    return any(getattr(f, "name", None) == "torch._inductor.config" for f in sys.meta_path)
out = {}
"""


def run_fresh(script: str, **env: str) -> dict:
    """Run PRELUDE + script in a new Python with a real IPython shell; the script fills `out`."""
    code = PRELUDE + textwrap.dedent(script) + "\nprint('RESULT' + json.dumps(out))\n"
    environment = {name: value for name, value in os.environ.items() if name != "TORCHINDUCTOR_DETERMINISTIC"}
    environment.update(env)
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=environment, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    line = next(line for line in done.stdout.splitlines() if line.startswith("RESULT"))
    return json.loads(line.removeprefix("RESULT"))


def test_on_leaves_inductor_unimported_and_compile_in_a_later_cell_gets_ipyrepros_value() -> None:
    out = run_fresh("""
        cell("%load_ext ipyrepro")
        cell("%repro on")
        cell("%repro status")
        out["after_on"] = "torch._inductor" in sys.modules
        out["flag"] = [torch.are_deterministic_algorithms_enabled(), torch._C._get_deterministic_algorithms_warn_only()]
        out["hooked"] = hooked()
        cell("f = torch.compile(lambda x: x * 2 + 1, backend='eager'); y = f(torch.ones(3))")
        out["compiled"] = ip.user_ns["y"].tolist()
        out["config_after_compile"] = config()
        out["hooked_after_import"] = hooked()
        import ipyrepro
        out["status"] = ipyrepro.status().to_dict()["inductor_deterministic"]
        out["status_text"] = str(ipyrepro.status())
        cell("%repro off")
        out["config_after_off"] = config()
    """)
    assert out["after_on"] is False
    assert out["flag"] == [True, False]
    assert out["hooked"] is True
    assert out["compiled"] == [3.0, 3.0, 3.0]
    assert out["config_after_compile"] is True
    assert out["hooked_after_import"] is False
    assert out["status"] is True
    assert "inductor deterministic" in out["status_text"]
    assert out["config_after_off"] is False


def test_compile_in_the_same_cell_as_on_gets_ipyrepros_value_and_off_restores_the_import_default() -> None:
    out = run_fresh(
        """
        cell("%load_ext ipyrepro")
        cell("%repro on --warn-only\\nf = torch.compile(lambda x: x + 1, backend='eager')\\ny = f(torch.zeros(2))")
        out["config"] = config()
        out["warn_only"] = torch.is_deterministic_algorithms_warn_only_enabled()
        cell("%repro off")
        out["config_after_off"] = config()
        out["flag_after_off"] = torch.are_deterministic_algorithms_enabled()
        """,
        TORCHINDUCTOR_DETERMINISTIC="1",  # inductor's own default is True here: off must put that back
    )
    assert out == {"config": True, "warn_only": True, "config_after_off": True, "flag_after_off": False}


def test_inductor_imported_before_on_is_set_now_and_off_restores_its_value() -> None:
    out = run_fresh("""
        import torch._inductor.config as inductor_config
        inductor_config.deterministic = False
        cell("%load_ext ipyrepro")
        cell("%repro on")
        out["on"] = config()
        import ipyrepro
        out["status"] = ipyrepro.status().to_dict()["inductor_deterministic"]
        cell("%repro off")
        out["off"] = config()
        inductor_config.deterministic = True  # the user's own choice, before a second on/off
        cell("%repro on")
        cell("%repro off")
        out["kept"] = config()
        out["hooked"] = hooked()
    """)
    assert out == {"on": True, "status": True, "off": False, "kept": True, "hooked": False}


def test_off_or_unload_before_any_import_removes_the_hook_and_inductor_keeps_its_default() -> None:
    out = run_fresh("""
        cell("%load_ext ipyrepro")
        cell("%repro on")
        cell("%repro off")
        out["after_off"] = hooked()
        cell("%repro on")
        cell("%unload_ext ipyrepro")
        out["after_unload"] = hooked()
        out["flag"] = torch.are_deterministic_algorithms_enabled()
        import torch._inductor.config
        out["config"] = config()
    """)
    assert out == {"after_off": False, "after_unload": False, "flag": True, "config": False}


def test_configure_changes_follow_into_inductor_like_use_deterministic_algorithms() -> None:
    out = run_fresh("""
        import ipyrepro
        ipyrepro.configure(deterministic_algorithms="warn")
        out["unimported"] = "torch._inductor.config" not in sys.modules
        import torch._inductor.config
        out["imported"] = config()
        ipyrepro.configure(deterministic_algorithms="off")
        out["off"] = config()
        torch.use_deterministic_algorithms(True, warn_only=True)  # torch's own function, for comparison
        reference = (config(), torch._C._get_deterministic_algorithms_warn_only())
        ipyrepro.configure(deterministic_algorithms="off")
        ipyrepro.configure(deterministic_algorithms="warn")
        out["same_as_torch"] = (config(), torch._C._get_deterministic_algorithms_warn_only()) == reference
    """)
    assert out == {"unimported": True, "imported": True, "off": False, "same_as_torch": True}


def test_a_checkpoint_restore_leaves_no_hook_and_inductor_keeps_its_own_values() -> None:
    """The pytest marker's scope: inductor imported after the test keeps its default, and one imported
    during the test gets back the value it had before the test (here: the import default)."""
    out = run_fresh(
        """
        from ipyrepro.core.state import STATE
        checkpoint = STATE.checkpoint()
        STATE.enable(0)
        STATE.restore(checkpoint)
        out["hooked"] = hooked()
        checkpoint = STATE.checkpoint()
        STATE.enable(0)
        import torch._inductor.config
        STATE.configure(deterministic_algorithms="off")
        out["during"] = config()
        STATE.restore(checkpoint)
        out["after"] = config()
        """,
        TORCHINDUCTOR_DETERMINISTIC="1",  # inductor's own default is True here
    )
    assert out == {"hooked": False, "during": False, "after": True}


def test_a_diagnostic_rerun_with_ipyrepro_off_leaves_no_hook_and_inductor_keeps_its_default() -> None:
    """`%%repro` diagnoses a difference with deterministic algorithms on for one rerun: that scoped change
    must not leave a hook that later overrides inductor's own (here environment-set) default."""
    out = run_fresh(
        """
        cell("%load_ext ipyrepro")
        report = ip.run_cell_magic("repro", "", "x = __import__('os').urandom(8)")
        out["differs"] = not report.ok
        out["hooked"] = hooked()
        import torch._inductor.config
        out["config"] = config()
        """,
        TORCHINDUCTOR_DETERMINISTIC="1",  # inductor's own default is True here
    )
    assert out == {"differs": True, "hooked": False, "config": True}


def test_off_puts_back_a_hook_that_waited_before_on() -> None:
    """configure() while off gives inductor the setting when it is imported, as torch would; `on` then `off`
    keep that: inductor imported afterwards still gets it."""
    out = run_fresh("""
        import ipyrepro
        ipyrepro.configure(deterministic_algorithms="warn")
        ipyrepro.enable(0)
        ipyrepro.disable()
        out["hooked"] = hooked()
        import torch._inductor.config
        out["config"] = config()
    """)
    assert out == {"hooked": True, "config": True}
