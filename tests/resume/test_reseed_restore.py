"""The restore rule in a real IPython shell: after a restore, the cell that was running at the capture is not
re-seeded when it runs next (it continues from the restored states, whatever ran in between); every other
cell re-seeds; status shows the pending restore until then."""

from __future__ import annotations

import json
import warnings

import pytest

import ipyrepro

DRAW = "import random, torch\ndrawn = (random.random(), torch.rand(2).tolist())"
# The training cell: the first time, it draws, captures the states mid-way (the "save") and draws on. Run
# again after the restore it skips to the capture point, as a loop driven by a loader's place does.
TRAIN = (
    "import random, torch, ipyrepro\n"
    "if 'saved' not in globals():\n"
    "    torch.rand(4), random.random()\n"
    "    saved = ipyrepro.rng_state()\n" + DRAW
)


@pytest.fixture(autouse=True)
def _fresh_names(ip):
    """The global shell is shared between tests: no `saved` from an earlier one."""
    ip.user_ns.pop("saved", None)
    yield
    ip.user_ns.pop("saved", None)


def _cell(ip, code: str, cell_id: str):
    result = ip.run_cell(code, store_history=True, cell_id=cell_id)
    assert result.success, result.error_in_exec or result.error_before_exec
    return result


def _drawn(ip, code: str, cell_id: str) -> tuple:
    _cell(ip, code, cell_id)
    return ip.user_ns["drawn"]


@pytest.mark.parametrize("mode", ["cell", "source"])
def test_the_cell_running_at_the_capture_continues_from_the_restored_states(ip, capsys, mode):
    _cell(ip, f"%repro on --seed 5 --reseed {mode}", "setup")
    continued = _drawn(ip, TRAIN, "train")
    other = _drawn(ip, DRAW, "other")
    _cell(ip, "report = ipyrepro.set_rng_state(saved)", "load")

    status = ipyrepro.status()
    assert status.pending_restore is not None
    assert status.pending_restore["cell_id"] == "train" and status.pending_restore["derivation"] == mode
    assert "pending restore" in str(status)
    assert _drawn(ip, DRAW, "other") == other  # another cell in between re-seeds as usual
    capsys.readouterr()
    _cell(ip, "%repro status --json", "look")  # a look at status does not spoil the restore
    assert json.loads(capsys.readouterr().out)["pending_restore"]["derivation"] == mode

    # cell mode: the same cell id; source mode: the same code, whatever id the frontend sends
    rerun = _drawn(ip, TRAIN, "train" if mode == "cell" else "a-new-id")
    assert rerun == continued
    assert ipyrepro.status().pending_restore is None
    assert _drawn(ip, TRAIN, "train" if mode == "cell" else "a-new-id") != continued  # re-seeded again


def test_without_a_restore_the_rerun_cell_is_re_seeded(ip):
    """The control: the same cells without the restore draw from the cell's seed, not from the capture."""
    _cell(ip, "%repro on --seed 5 --reseed cell", "setup")
    continued = _drawn(ip, TRAIN, "train")
    assert _drawn(ip, TRAIN, "train") != continued


def test_a_state_captured_outside_any_cell_sets_no_pending_restore(ip):
    saved = ipyrepro.rng_state()  # ipyrepro off: no cell seed
    _cell(ip, "%repro on --seed 5", "setup")
    ipyrepro.set_rng_state(saved)
    assert ipyrepro.status().pending_restore is None
    assert ipyrepro.status().seed == 5  # the saving run had no ipyrepro seed: the one in force stays


def test_a_restore_brings_back_the_base_seed_and_mode_of_the_save(ip):
    _cell(ip, "%repro on --seed 11 --reseed source", "setup")
    _cell(ip, "import ipyrepro\nsaved = ipyrepro.rng_state()", "save")
    saved = ip.user_ns["saved"]
    _cell(ip, "%repro on --seed 0 --reseed cell", "setup-again")
    ipyrepro.set_rng_state(saved)
    status = ipyrepro.status()
    assert (status.seed, status.reseed) == (11, "source")


def test_the_panel_shows_the_pending_restore_until_its_cell_runs(ip):
    panel = ipyrepro.panel()
    _cell(ip, "%repro on --seed 5", "setup")
    continued = _drawn(ip, TRAIN, "train")
    _cell(ip, "ipyrepro.set_rng_state(saved)", "load")
    assert "pending restore" in panel.status_view.value
    assert _drawn(ip, TRAIN, "train") == continued
    assert "pending restore" not in panel.status_view.value


def test_another_cell_is_told_once_which_cell_the_restore_waits_for(ip):
    _cell(ip, "%repro on --seed 5 --reseed cell", "setup")
    continued = _drawn(ip, TRAIN, "train")
    _cell(ip, "report = ipyrepro.set_rng_state(saved)", "load")
    with pytest.warns(ipyrepro.ReproWarning, match=r"wait for the cell with id 'train' \(which begins `import random"):
        _drawn(ip, DRAW, "other")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _drawn(ip, DRAW, "other-again")
        assert "the cell with id 'train'" in str(ipyrepro.status())
        assert _drawn(ip, TRAIN, "train") == continued
    assert not [w for w in caught if "re-seeded as usual" in str(w.message)]  # once
