"""`enable`/`disable` through the Python API: what `on` applies and what `off` restores."""

from __future__ import annotations

import os
import warnings

import pytest
import torch

import ipyrepro
from ipyrepro.core.flags import Flags
from ipyrepro.core.state import STATE


def test_enable_applies_the_full_recipe() -> None:
    os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)
    status = ipyrepro.enable(42)
    assert torch.backends.cudnn.benchmark is False
    assert torch.backends.cudnn.deterministic is True
    assert torch.are_deterministic_algorithms_enabled()
    assert not torch.is_deterministic_algorithms_warn_only_enabled()
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    assert (status.enabled, status.seed, status.reseed) == (True, 42, "cell")


def test_enable_options_pick_warn_only_the_small_workspace_and_the_reseed_mode() -> None:
    os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)
    status = ipyrepro.enable(1, warn_only=True, cublas=":16:8", reseed="fixed")
    assert status.deterministic_algorithms == "warn"
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":16:8"
    assert status.reseed == "fixed"
    assert ipyrepro.enable(1, reseed="source").reseed == "source"
    assert ipyrepro.enable(2).reseed == "source"  # a second enable keeps the mode unless told
    ipyrepro.disable()
    assert ipyrepro.enable(3).reseed == "cell"


def test_enable_keeps_a_deterministic_cublas_value_the_user_set() -> None:
    os.environ["CUBLAS_WORKSPACE_CONFIG"] = ":16:8"
    ipyrepro.enable(cublas=":4096:8")
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":16:8"


def test_enable_replaces_a_nondeterministic_cublas_value() -> None:
    os.environ["CUBLAS_WORKSPACE_CONFIG"] = ":0:0"
    ipyrepro.enable()
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    ipyrepro.disable()
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":0:0"


def test_enable_seeds_every_generator() -> None:
    ipyrepro.enable(5)
    first = torch.rand(2).tolist()
    ipyrepro.seed_all(5)
    assert torch.rand(2).tolist() == first


def test_disable_restores_exactly_what_was_in_force_before_enable() -> None:
    torch.backends.cudnn.benchmark = True
    torch.backends.cudnn.deterministic = False
    torch.use_deterministic_algorithms(True, warn_only=True)
    os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)
    ipyrepro.set_reseed("fixed")
    before = Flags.read()
    ipyrepro.enable(3)
    ipyrepro.disable()
    assert Flags.read() == before
    assert "CUBLAS_WORKSPACE_CONFIG" not in os.environ
    assert ipyrepro.status().reseed == "fixed"


def test_enable_twice_then_disable_still_restores_the_original_state() -> None:
    torch.backends.cudnn.benchmark = True
    before = Flags.read()
    ipyrepro.enable(1)
    ipyrepro.enable(2, warn_only=True)
    ipyrepro.disable()
    assert Flags.read() == before


@pytest.mark.parametrize(
    "kwargs",
    [{"seed": -1}, {"seed": 2**32}, {"cublas": ":1:x"}, {"reseed": "nope"}, {"warn_only": "yes"}],
)
def test_bad_enable_arguments_change_nothing(kwargs: dict) -> None:
    before = Flags.read()
    with pytest.raises(ValueError):
        ipyrepro.enable(**kwargs)
    assert Flags.read() == before
    assert not STATE.enabled and STATE.saved is None


def test_configure_validates_everything_before_changing_anything() -> None:
    before = Flags.read()
    with pytest.raises(ValueError):
        ipyrepro.configure(cudnn_benchmark=True, deterministic_algorithms="sometimes")
    assert Flags.read() == before


def test_configure_changes_single_settings_and_unsets_cublas() -> None:
    ipyrepro.enable()
    status = ipyrepro.configure(cudnn_benchmark=True, deterministic_algorithms="warn", cublas_workspace_config=None)
    assert torch.backends.cudnn.benchmark is True
    assert status.deterministic_algorithms == "warn"
    assert status.cublas_workspace_config is None
    assert set(status.drift) == {"cudnn_benchmark", "deterministic_algorithms", "cublas_workspace_config"}


def test_drift_made_by_user_code_is_warned_once_after_the_cell(ip) -> None:
    ip.run_cell("%repro on")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ip.run_cell("import torch; torch.backends.cudnn.benchmark = True")
        ip.run_cell("x = 1")
    drift = [w for w in caught if issubclass(w.category, ipyrepro.ReproWarning)]
    assert len(drift) == 1
    assert "cudnn.benchmark" in str(drift[0].message) and "Fix:" in str(drift[0].message)


def test_cells_after_a_drift_build_no_status_until_a_watched_flag_changes_again(ip, monkeypatch) -> None:
    from ipyrepro.core.status import Status

    reads = []
    read = Status.read.__func__
    monkeypatch.setattr(Status, "read", classmethod(lambda cls, state: reads.append(1) or read(cls, state)))
    ip.run_cell("%repro on")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ip.run_cell("import torch; torch.backends.cudnn.benchmark = True")
        built = len(reads)
        for _ in range(5):
            ip.run_cell("x = 1")
        assert len(reads) == built  # the drift is known: the hooks read a few flags, no status
        ip.run_cell("torch.use_deterministic_algorithms(True, warn_only=True)")
    drift = [str(w.message) for w in caught if issubclass(w.category, ipyrepro.ReproWarning)]
    assert len(reads) > built
    assert len(drift) == 2 and "cudnn.benchmark" in drift[0] and "use_deterministic_algorithms" in drift[1]


def test_a_drift_undone_and_done_again_in_one_cell_each_is_not_warned_twice(ip) -> None:
    ip.run_cell("%repro on")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ip.run_cell("import torch; torch.backends.cudnn.benchmark = True")
        ip.run_cell("torch.backends.cudnn.benchmark = False")
        ip.run_cell("torch.backends.cudnn.benchmark = True")
    assert len([w for w in caught if issubclass(w.category, ipyrepro.ReproWarning)]) == 1


def test_cells_rerun_in_any_order_start_from_their_own_seed_in_every_mode(ip) -> None:
    from ipyrepro.core.seeding import derive_cell_seed, derive_source_seed

    derivations = {
        "cell": lambda base, cell_id, code: derive_cell_seed(base, cell_id),
        "source": lambda base, cell_id, code: derive_source_seed(base, code),
        "fixed": lambda base, cell_id, code: base,
    }
    for mode, derive in derivations.items():
        ip.run_line_magic("repro", f"on --seed 7 --reseed {mode}")
        for cell_id, code in [("a", "x = 1"), ("b", "y = 2"), ("a", "x = 1"), ("b", "y = 2  "), ("c", "x = 1")]:
            ip.run_cell(code, cell_id=cell_id)
            assert tuple(STATE.last_cell) == (derive(7, cell_id, code), cell_id, mode)
        ip.run_line_magic("repro", "on --seed 8")  # a new base seed: nothing derived from 7 is reused
        ip.run_cell("x = 1", cell_id="a")
        assert tuple(STATE.last_cell) == (derive(8, "a", "x = 1"), "a", mode)


def test_a_change_asked_for_through_configure_is_shown_as_drift_but_not_warned() -> None:
    ipyrepro.enable()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        status = ipyrepro.configure(cudnn_benchmark=True)
    assert "cudnn_benchmark" in status.drift and any("cudnn.benchmark" in text for text in status.warnings)
    assert not [w for w in caught if issubclass(w.category, ipyrepro.ReproWarning)]


def test_subscribers_hear_changes_and_are_held_weakly() -> None:
    calls = []

    class View:
        def refresh(self) -> None:
            calls.append(1)

    view = View()
    STATE.subscribe(view.refresh)
    ipyrepro.seed_all(1)
    assert calls == [1]
    del view
    ipyrepro.seed_all(2)
    assert calls == [1]


def test_restore_puts_back_exported_variables_the_rank_and_the_import_hook_exactly() -> None:
    """The pytest marker's and fixture's scope: a test that turns ipyrepro on leaves nothing behind."""
    import sys

    from ipyrepro.core.processes import CHILD_VARS

    for name in CHILD_VARS:
        os.environ.pop(name, None)
    hooks_before = list(sys.meta_path)
    status_before = ipyrepro.status()
    checkpoint = STATE.checkpoint()
    ipyrepro.enable(3, warn_only=True, reseed="source", rank=1)
    STATE.before_cell(None, "x = 1")
    assert os.environ["IPYREPRO_SEED"] == "3"
    STATE.restore(checkpoint)
    assert {name: os.environ.get(name) for name in CHILD_VARS} == dict.fromkeys(CHILD_VARS)
    assert sys.meta_path == hooks_before  # no import hook waits for inductor's config
    assert ipyrepro.status() == status_before  # no rank note, no last cell
    assert STATE.rank is None and STATE.rank_seed is None
    ipyrepro.enable()  # and nothing of the test's settings is inherited through the environment
    assert (STATE.seed, STATE.reseed, STATE.target.deterministic_algorithms) == (0, "cell", "error")
