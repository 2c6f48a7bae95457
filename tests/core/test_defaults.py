"""One rule for settings nobody gave: explicit > in force > the kernel's (IPYREPRO_*) > built-in.

The same rule through every face that runs in this process: the resolver itself, `enable()`,
`%repro on` in a real IPython shell, and what status says after `%%repro` in `source` mode.
"""

from __future__ import annotations

import os

import pytest
import torch

import ipyrepro
from ipyrepro.core.defaults import BUILT_IN, ChildSettings, Settings, resolve_settings, settings_from_env
from ipyrepro.core.seeding import derive_cell_seed, derive_source_seed
from ipyrepro.core.state import STATE

KERNEL_VARS = {"IPYREPRO_SEED": "42", "IPYREPRO_RESEED": "source", "IPYREPRO_DETERMINISTIC": "warn"}


@pytest.fixture
def kernel_vars(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """This process as the reproducible kernel (`ipyrepro kernel install --seed 42 --reseed source`) starts it."""
    for name, value in KERNEL_VARS.items():
        monkeypatch.setenv(name, value)
    return KERNEL_VARS


@pytest.fixture
def no_kernel_vars(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in KERNEL_VARS:
        monkeypatch.delenv(name, raising=False)


def run(ip, code: str, cell_id: str | None = None):
    result = ip.run_cell(code, cell_id=cell_id)
    if result.error_in_exec is not None:
        raise result.error_in_exec
    return result.result


# -- the rule itself ---------------------------------------------------------------------------


def test_each_setting_comes_from_the_first_source_that_says() -> None:
    kernel = ChildSettings(seed=42, reseed="source", deterministic="warn")
    assert resolve_settings(ChildSettings(), None, kernel) == Settings(42, "source", "warn")
    in_force = ChildSettings(reseed="fixed")
    assert resolve_settings(ChildSettings(seed=7), in_force, kernel) == Settings(7, "fixed", "warn")
    assert resolve_settings(ChildSettings(), ChildSettings(seed=3), ChildSettings()) == Settings(3, "cell", "error")
    assert resolve_settings(ChildSettings(), None, ChildSettings()) == BUILT_IN == Settings(0, "cell", "error")
    # seed 0 and `off` are answers, not gaps
    assert resolve_settings(ChildSettings(seed=0, reseed="off"), None, kernel) == Settings(0, "off", "warn")


def test_the_kernel_is_read_only_when_a_setting_is_left_open(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IPYREPRO_SEED", "ten")
    full = ChildSettings(seed=1, reseed="cell", deterministic="error")
    assert resolve_settings(full) == Settings(1, "cell", "error")  # the bad variable never mattered
    asked = []
    resolve_settings(full, None, lambda: asked.append(1) or ChildSettings())
    assert asked == []
    with pytest.raises(ValueError, match=r"IPYREPRO_SEED='ten'.*fix or unset it"):
        resolve_settings(ChildSettings(reseed="cell"))


def test_the_kernels_variables_are_validated_with_the_variable_named() -> None:
    assert settings_from_env(KERNEL_VARS) == ChildSettings(42, "source", "warn")
    assert settings_from_env({}) == ChildSettings()
    with pytest.raises(ValueError, match="IPYREPRO_RESEED='sometimes'"):
        settings_from_env({"IPYREPRO_RESEED": "sometimes"})
    with pytest.raises(ValueError, match="IPYREPRO_DETERMINISTIC='maybe'"):
        settings_from_env({"IPYREPRO_DETERMINISTIC": "maybe"})


# -- enable() ------------------------------------------------------------------------------------


def test_enable_follows_the_kernel_then_keeps_what_is_in_force(kernel_vars) -> None:
    status = ipyrepro.enable()
    assert (status.seed, status.reseed, status.deterministic_algorithms) == (42, "source", "warn")
    ipyrepro.enable(5, warn_only=False, reseed="fixed")
    status = ipyrepro.enable()  # a second `on` keeps what the first one set, not the kernel's
    assert (status.seed, status.reseed, status.deterministic_algorithms) == (5, "fixed", "error")


def test_a_second_enable_keeps_warn_only_and_the_seed(no_kernel_vars) -> None:
    ipyrepro.enable(9, warn_only=True)
    status = ipyrepro.enable()
    assert (status.seed, status.reseed, status.deterministic_algorithms) == (9, "cell", "warn")
    assert ipyrepro.enable(warn_only=False).deterministic_algorithms == "error"


def test_without_the_kernels_variables_the_built_in_defaults_apply(no_kernel_vars) -> None:
    status = ipyrepro.enable()
    assert (status.seed, status.reseed, status.deterministic_algorithms) == (0, "cell", "error")


def test_a_mode_chosen_while_off_is_kept_by_enable(no_kernel_vars) -> None:
    ipyrepro.set_reseed("fixed")
    assert ipyrepro.enable().reseed == "fixed"


def test_a_seed_set_while_off_is_the_seed_in_force(kernel_vars) -> None:
    ipyrepro.seed_all(8)
    assert ipyrepro.enable().seed == 8


# -- %repro on in a real IPython shell -----------------------------------------------------------


def test_a_notebooks_own_repro_on_keeps_the_kernels_seed_and_mode(ip, kernel_vars, capsys) -> None:
    run(ip, "%repro on")
    out = capsys.readouterr().out
    assert "ipyrepro ON: seed 42, re-seed source, deterministic algorithms: on (warn on nondeterministic ops)" in out
    code = "import torch\nx = torch.rand(3)"
    run(ip, code)
    expected = torch.rand(3, generator=torch.Generator().manual_seed(derive_source_seed(42, code)))
    assert torch.equal(ip.user_ns["x"], expected)


def test_repro_on_after_the_preloads_on_changes_nothing_it_did_not_name(ip, no_kernel_vars) -> None:
    run(ip, "%repro on --seed 42 --reseed source --warn-only")  # what a reproducible kernel runs first
    os.environ.pop("IPYREPRO_SEED")  # what it exported does not matter: it is in force
    run(ip, "%repro on")
    status = STATE.status()
    assert (status.seed, status.reseed, status.deterministic_algorithms) == (42, "source", "warn")
    run(ip, "%repro on --seed 3 --no-warn-only")
    status = STATE.status()
    assert (status.seed, status.reseed, status.deterministic_algorithms) == (3, "source", "error")


def test_repro_on_keeps_a_mode_chosen_while_off(ip, no_kernel_vars) -> None:
    run(ip, "%repro reseed fixed")
    run(ip, "%repro on")
    assert STATE.status().reseed == "fixed"


def test_repro_on_options_say_where_their_defaults_come_from(ip, capsys) -> None:
    run(ip, "%repro on -h")
    text = " ".join(capsys.readouterr().out.split())
    assert "IPYREPRO_SEED" in text and "--no-warn-only" in text and "in force" in text


# -- status after %%repro ------------------------------------------------------------------------

BODY = "import torch\ny = torch.rand(2)\n"


def test_status_after_cell_magic_in_source_mode_shows_the_seed_the_runs_used(ip, no_kernel_vars) -> None:
    run(ip, "%repro on --seed 4 --reseed source")
    report = run(ip, "%%repro\n" + BODY)
    status = STATE.status()
    assert report.ok and report.seed == derive_source_seed(4, BODY)
    assert status.cell_seed == report.seed and status.derivation == "source"
    assert f"last cell seed {report.seed}, from its code" in str(status)
    # and the namespace is as if the cell ran without %%repro
    run(ip, BODY)
    assert torch.equal(ip.user_ns["y"], torch.rand(2, generator=torch.Generator().manual_seed(report.seed)))


def test_status_after_cell_magic_with_a_given_seed_shows_that_seed(ip, no_kernel_vars) -> None:
    run(ip, "%repro on --seed 4")
    report = run(ip, "%%repro --seed 17\n" + BODY, cell_id="given")
    status = STATE.status()
    assert report.seed == 17 and status.cell_seed == 17 and status.derivation == "given"
    assert "last cell seed 17, given to %%repro" in str(status)
    run(ip, "z = 1", cell_id="next")  # the next cell is re-seeded as always
    assert STATE.status().cell_seed == derive_cell_seed(4, "next")
