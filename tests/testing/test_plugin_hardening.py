"""Seeder plugins that raise: `on` is all or nothing, hooks survive even SystemExit, warnings come once per cause."""

from __future__ import annotations

import sys
import textwrap
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
from IPython.core.error import UsageError

from ipyrepro import ReproWarning
from ipyrepro.core.flags import Flags
from ipyrepro.core.state import STATE

PLUGIN = """
import numpy as np

def seed(seed):
    if MODE[0] == "value":
        raise ValueError(f"cannot seed with {seed}")  # the seed in the message: a new text every cell
    if MODE[0] == "numpy":
        np.random.seed(seed + 2**32)  # NumPy's own error
    if MODE[0] == "exit":
        raise SystemExit(3)
    if MODE[0] == "rank" and seed != 7:
        raise RuntimeError("not this rank's seed")

MODE = ["ok"]
"""


@pytest.fixture
def plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A seeder registered the real way: a distribution with an `ipyrepro.seeders` entry point on sys.path."""
    (tmp_path / "badseeder.py").write_text(textwrap.dedent(PLUGIN))
    info = tmp_path / "badseeder-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: badseeder\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[ipyrepro.seeders]\nbad = badseeder:seed\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    STATE.reset()  # loads the seeders again, now with the plugin (before `ip` loads the extension)
    import badseeder

    yield badseeder
    sys.modules.pop("badseeder", None)
    STATE.reset()


@pytest.mark.parametrize("mode, error", [("value", ValueError), ("numpy", ValueError), ("exit", SystemExit)])
def test_on_is_all_or_nothing_and_a_plugins_error_is_reported_as_itself(
    plugin: Any, ip: Any, mode: str, error: type
) -> None:
    flags, rng = Flags.read(), torch.get_rng_state()
    plugin.MODE[0] = mode
    with pytest.raises(error) as raised:
        ip.run_line_magic("repro", "on --seed 7")
    assert not isinstance(raised.value, UsageError)
    assert "seeder plugin 'bad'" in "".join(getattr(raised.value, "__notes__", []))
    assert not STATE.enabled and STATE.seed is None and STATE.reseed == "off" and STATE.saved is None
    assert Flags.read() == flags and torch.equal(torch.get_rng_state(), rng)
    plugin.MODE[0] = "ok"
    ip.run_line_magic("repro", "on --seed 7")
    assert STATE.enabled and STATE.seed == 7


def test_on_with_a_rank_is_all_or_nothing_for_exported_variables_and_the_inductor_hook(plugin: Any) -> None:
    """The plugin raises only for the rank's seed, after the base seed was applied and exported: the
    variables, and the import hook that waited for inductor before `on`, are as before."""
    import os

    import ipyrepro
    from ipyrepro.core.processes import CHILD_VARS

    ipyrepro.configure(deterministic_algorithms="warn")  # as torch would, inductor follows: a hook waits for it
    exported, hooks = {name: os.environ.get(name) for name in CHILD_VARS}, list(sys.meta_path)
    plugin.MODE[0] = "rank"
    with pytest.raises(RuntimeError, match="not this rank's seed"):
        ipyrepro.enable(7, rank=1)
    assert {name: os.environ.get(name) for name in CHILD_VARS} == exported and sys.meta_path == hooks
    assert not STATE.enabled and STATE.seed is None and STATE.rank is None and STATE.rank_seed is None


def test_a_plugin_that_raises_warns_once_per_error_type_not_per_message(plugin: Any, ip: Any) -> None:
    ip.run_line_magic("repro", "on --seed 7")
    plugin.MODE[0] = "value"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for index in range(5):
            ip.run_cell("y = 1", cell_id=f"cell-{index}")  # a new seed, so a new message, every cell
    texts = [str(w.message) for w in caught if issubclass(w.category, ReproWarning)]
    assert len(texts) == 1 and "the seeder plugin 'bad' raised ValueError" in texts[0]
    plugin.MODE[0] = "numpy"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ip.run_cell("y = 2", cell_id="other")
    assert len([w for w in caught if issubclass(w.category, ReproWarning)]) == 0  # same plugin, same type


def test_systemexit_from_a_plugin_in_a_hook_breaks_no_later_cell(plugin: Any, ip: Any) -> None:
    ip.run_line_magic("repro", "on --seed 7")
    plugin.MODE[0] = "exit"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ReproWarning)
        assert ip.run_cell("z = 41 + 1", cell_id="a").success and ip.user_ns["z"] == 42
        assert ip.run_cell("%repro reseed off", cell_id="b").success and STATE.reseed == "off"
        assert any("SystemExit" in text for text in STATE.hook_errors)
        assert ip.run_cell("%unload_ext ipyrepro", cell_id="c").success
        assert ip.run_cell("%load_ext ipyrepro", cell_id="d").success
    ip.user_ns.pop("z", None)


def test_a_plugin_failing_between_reruns_leaves_the_namespace_as_before(plugin: Any, ip: Any) -> None:
    ip.run_cell("xs = [0]")
    plugin.MODE[0] = "value"
    with pytest.raises(ValueError, match="cannot seed") as raised:
        ip.run_cell_magic("repro", "--runs 2 --seed 1", "xs.append(1)\nnew = 1")
    assert "restored to its state before the cell" in "".join(raised.value.__notes__)
    assert ip.user_ns["xs"] == [0] and "new" not in ip.user_ns
    ip.user_ns.pop("xs")
