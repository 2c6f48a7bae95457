"""The panel's master switch follows the same rule as `%repro on`: a re-seed mode chosen while off is
kept, an empty seed field takes the kernel's seed, a typed seed wins."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

import ipyrepro
from ipyrepro.core.seeding import derive_cell_seed
from ipyrepro.core.state import STATE
from ipyrepro.jupyter.panel import ReproPanel


@pytest.fixture
def panel(monkeypatch: pytest.MonkeyPatch) -> Iterator[ReproPanel]:
    for name in ("IPYREPRO_SEED", "IPYREPRO_RESEED", "IPYREPRO_DETERMINISTIC"):
        monkeypatch.delenv(name, raising=False)
    widget = ipyrepro.panel()
    yield widget
    widget.close()


@pytest.mark.parametrize("mode", ["source", "fixed", "cell"])
def test_a_mode_chosen_while_off_is_kept_when_switching_on(ip, panel, mode: str) -> None:
    assert panel.master.value is False
    panel.reseed.value = mode
    panel.master.value = True
    assert STATE.enabled and STATE.reseed == mode
    assert panel.reseed.value == mode and panel.master.description.startswith("ON")
    assert f"re-seed before each cell</td><td style='text-align:left'><code>{mode}" in panel.status_view.value


def test_switching_on_with_an_empty_seed_takes_the_kernels(ip, panel, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IPYREPRO_SEED", "42")
    monkeypatch.setenv("IPYREPRO_RESEED", "source")
    assert panel.seed.value == ""
    panel.master.value = True
    assert (STATE.seed, STATE.reseed) == (42, "source") and panel.seed.value == "42"


def test_a_typed_seed_wins_over_the_kernels(ip, panel, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IPYREPRO_SEED", "42")
    panel.seed.value = "7"
    panel.master.value = True
    assert STATE.seed == 7 and panel.seed.value == "7"
    result = ip.run_cell("import torch\nx = torch.rand(2)", cell_id="c1")
    assert result.success
    generator = torch.Generator().manual_seed(derive_cell_seed(7, "c1"))
    assert torch.equal(ip.user_ns["x"], torch.rand(2, generator=generator))


def test_a_bad_typed_seed_changes_nothing(ip, panel) -> None:
    panel.reseed.value = "fixed"
    panel.seed.value = "seven"
    panel.master.value = True
    assert not STATE.enabled and panel.master.value is False
    assert "not a valid seed" in panel.seed_error.value and STATE.reseed == "fixed"
