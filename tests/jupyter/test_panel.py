"""The widget panel, headless: clicks change the real state, and every change shows in every open panel."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest
import torch

import ipyrepro
from ipyrepro.core.seeding import derive_cell_seed, derive_source_seed
from ipyrepro.core.state import STATE, CellSeed
from ipyrepro.jupyter.panel import ReproPanel

from ..kernels import kernel


@pytest.fixture
def panel() -> Iterator[ReproPanel]:
    widget = ipyrepro.panel()
    yield widget
    widget.close()


def run(ip, code: str, cell_id: str | None = None) -> None:
    result = ip.run_cell(code, cell_id=cell_id)
    if result.error_in_exec is not None:
        raise result.error_in_exec


def first_draw() -> float:
    return torch.rand(1).item()


def errors_text(panel: ReproPanel) -> str:
    return "".join(output.get("text", "") for output in panel.errors.outputs)


# -- clicks change the real state -------------------------------------------------------


def test_benchmark_and_cudnn_deterministic_toggles_set_torch_flags(panel) -> None:
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = False
    panel.refresh()
    panel.benchmark.value = True
    assert torch.backends.cudnn.benchmark is True
    panel.cudnn_deterministic.value = True
    assert torch.backends.cudnn.deterministic is True
    panel.benchmark.value = False
    assert torch.backends.cudnn.benchmark is False


def test_deterministic_algorithm_choices_set_torch_mode(panel) -> None:
    panel.algorithms.value = "warn"
    assert torch.are_deterministic_algorithms_enabled()
    assert torch.is_deterministic_algorithms_warn_only_enabled()
    panel.algorithms.value = "error"
    assert torch.are_deterministic_algorithms_enabled()
    assert not torch.is_deterministic_algorithms_warn_only_enabled()
    panel.algorithms.value = "off"
    assert not torch.are_deterministic_algorithms_enabled()


def test_cublas_choices_set_and_unset_the_variable(panel) -> None:
    panel.cublas.value = ":16:8"
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":16:8"
    panel.cublas.value = ":4096:8"
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    panel.cublas.value = "unset"
    assert "CUBLAS_WORKSPACE_CONFIG" not in os.environ


def test_reseed_choice_sets_the_mode_used_before_cells(ip, panel) -> None:
    panel.reseed.value = "fixed"
    assert STATE.reseed == "fixed"
    run(ip, "x = 1", cell_id="c1")
    assert STATE.last_cell.seed == 0
    panel.reseed.value = "source"
    assert STATE.reseed == "source"
    run(ip, "x = 1", cell_id="c1")
    assert STATE.last_cell == CellSeed(derive_source_seed(0, "x = 1"), "c1", "source")
    assert "source" in panel.reseed.options and len(panel.reseed.tooltips) == len(panel.reseed.options)


def test_master_toggle_turns_on_with_the_typed_seed_and_off_restores(panel) -> None:
    torch.backends.cudnn.benchmark = True
    os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)
    panel.refresh()
    panel.seed.value = "123"
    panel.master.value = True
    assert STATE.enabled and STATE.seed == 123 and STATE.reseed == "cell"
    assert torch.backends.cudnn.benchmark is False and torch.backends.cudnn.deterministic is True
    assert torch.are_deterministic_algorithms_enabled()
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    assert panel.benchmark.value is False and panel.algorithms.value == "error" and panel.cublas.value == ":4096:8"
    panel.master.value = False
    assert not STATE.enabled
    assert torch.backends.cudnn.benchmark is True and panel.benchmark.value is True
    assert "CUBLAS_WORKSPACE_CONFIG" not in os.environ and panel.cublas.value == "unset"


def test_apply_seed_seeds_every_rng_now(panel) -> None:
    torch.manual_seed(5)
    expected = first_draw()
    torch.manual_seed(999)
    panel.seed.value = "5"
    panel.apply_seed.click()
    assert STATE.seed == 5
    assert first_draw() == expected
    assert panel.seed_error.value == ""


@pytest.mark.parametrize("text", ["abc", "-1", "4294967296", "1.5", ""])
def test_bad_seed_shows_an_inline_error_and_changes_nothing(panel, text: str) -> None:
    STATE.seed_all(7)
    panel.seed.value = text
    torch.manual_seed(11)
    expected = first_draw()
    torch.manual_seed(11)
    panel.apply_seed.click()
    assert "Nothing was changed" in panel.seed_error.value
    assert STATE.seed == 7
    assert first_draw() == expected
    assert panel.seed.value == text  # the user's text stays there to be corrected


def test_bad_seed_keeps_the_master_toggle_off(panel) -> None:
    torch.backends.cudnn.benchmark = True
    panel.refresh()
    panel.seed.value = "minus one"
    panel.master.value = True
    assert "not a valid seed" in panel.seed_error.value
    assert not STATE.enabled and panel.master.value is False
    assert torch.backends.cudnn.benchmark is True


def test_typing_a_bad_seed_shows_the_error_before_applying(panel) -> None:
    panel.seed.value = "12x"
    assert "not a valid seed" in panel.seed_error.value
    panel.seed.value = "12"
    assert panel.seed_error.value == ""


def test_a_failing_change_is_shown_in_the_panel_not_swallowed(panel) -> None:
    def broken_seeder(seed: int) -> None:  # a third-party `ipyrepro.seeders` entry that fails
        raise RuntimeError("the other library's RNG is broken")

    STATE.reseeder.seeders.append(broken_seeder)
    panel.seed.value = "3"
    panel.apply_seed.click()
    text = errors_text(panel)
    assert "RuntimeError" in text and "the other library's RNG is broken" in text
    panel.seed.value = "4"
    STATE.reseeder.seeders.remove(broken_seeder)
    panel.apply_seed.click()
    assert errors_text(panel) == ""  # the next action starts with a clean slate


# -- state changes elsewhere show in the panel ---------------------------------------------


def test_magic_changes_show_after_the_cell_runs(ip, panel) -> None:
    run(ip, "%repro on --seed 77 --warn-only --cublas :16:8")
    assert panel.master.value is True and panel.seed.value == "77"
    assert panel.algorithms.value == "warn" and panel.cublas.value in (":16:8", ":4096:8")
    assert panel.cublas.value == os.environ["CUBLAS_WORKSPACE_CONFIG"]
    run(ip, "%repro reseed off")
    assert panel.reseed.value == "off"
    run(ip, "%repro off")
    assert panel.master.value is False


def test_direct_torch_assignment_in_a_cell_shows_and_is_highlighted_as_drift(ip, panel) -> None:
    run(ip, "%repro on")
    assert "ipyrepro-drift" not in panel.benchmark._dom_classes
    run(ip, "import torch\ntorch.backends.cudnn.benchmark = True")
    assert panel.benchmark.value is True
    assert "ipyrepro-drift" in panel.benchmark._dom_classes and panel.benchmark.layout.border
    assert "drifted" in panel.status_view.value and "torch.backends.cudnn.benchmark is now True" in (
        panel.status_view.value
    )
    run(ip, "torch.backends.cudnn.benchmark = False")
    assert panel.benchmark.value is False and "ipyrepro-drift" not in panel.benchmark._dom_classes


def test_api_changes_show_at_once_without_a_cell(panel) -> None:
    ipyrepro.configure(cudnn_benchmark=True, deterministic_algorithms="warn")
    assert panel.benchmark.value is True and panel.algorithms.value == "warn"
    ipyrepro.seed_all(31)
    assert panel.seed.value == "31"


def test_several_panels_stay_in_sync(ip) -> None:
    first, second = ipyrepro.panel(), ipyrepro.panel()
    try:
        first.benchmark.value = not torch.backends.cudnn.benchmark
        assert second.benchmark.value == first.benchmark.value == torch.backends.cudnn.benchmark
        second.reseed.value = "fixed"
        assert first.reseed.value == "fixed"
        run(ip, "import torch\ntorch.backends.cudnn.deterministic = not torch.backends.cudnn.deterministic")
        assert first.cudnn_deterministic.value == second.cudnn_deterministic.value
        assert first.cudnn_deterministic.value == torch.backends.cudnn.deterministic
    finally:
        first.close()
        second.close()


def test_refreshing_panels_applies_nothing_back() -> None:
    """A refresh that set widget values must not feed them back into the state as new changes."""

    def notifications_during_on() -> int:
        torch.backends.cudnn.benchmark = True
        os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)
        count = [0]

        def counter() -> None:
            count[0] += 1

        unsubscribe = STATE.subscribe(counter)
        STATE.enable(1)  # changes every flag the panels show
        STATE.disable()
        unsubscribe()
        return count[0]

    without_panels = notifications_during_on()
    panels = [ipyrepro.panel(), ipyrepro.panel()]
    try:
        assert notifications_during_on() == without_panels
        assert panels[0].benchmark.value is True  # `off` restored it, and the panels show it
    finally:
        for widget in panels:
            widget.close()


def test_status_area_shows_cell_seed_hash_seed_versions_and_warnings(ip, panel) -> None:
    run(ip, "%repro on --seed 9")
    run(ip, "y = 2", cell_id="the-cell")
    html = panel.status_view.value
    assert f"last cell seed {derive_cell_seed(9, 'the-cell')}" in html
    assert "PYTHONHASHSEED" in html and f"torch {torch.__version__}" in html
    assert "CUDA" in html
    run(ip, "torch.use_deterministic_algorithms(False)")
    assert "Warning:" in panel.status_view.value and "torch.use_deterministic_algorithms is now off" in (
        panel.status_view.value
    )


def test_looking_never_initialises_cuda(ip, fake_gpu) -> None:
    widget = ipyrepro.panel()
    try:
        assert "available, not initialised" in widget.status_view.value
        widget.master.value = True
        widget.benchmark.value = True
        widget.cublas.value = ":16:8"
        widget.seed.value = "8"
        widget.apply_seed.click()
        run(ip, "x = 3", cell_id="c")
        assert widget.master.value is True
        assert errors_text(widget) == ""
    finally:
        widget.close()
    assert fake_gpu.lazy_init_calls == []


def test_every_control_has_a_tooltip_and_every_choice_its_own(panel) -> None:
    controls = (
        panel.master,
        panel.seed,
        panel.apply_seed,
        panel.benchmark,
        panel.cudnn_deterministic,
        panel.algorithms,
        panel.cublas,
        panel.reseed,
    )
    for control in controls:
        assert control.tooltip and len(control.tooltip) > 40
    for choice in (panel.algorithms, panel.cublas, panel.reseed):
        assert len(choice.tooltips) == len(choice.options) and all(choice.tooltips)
    assert "slower" in panel.algorithms.tooltips[2] and "slower" in panel.master.tooltip


def test_closed_panel_stops_following_the_state() -> None:
    widget = ipyrepro.panel()
    widget.close()
    ipyrepro.configure(cudnn_benchmark=not widget.benchmark.value)  # must not touch the closed widgets
    assert widget.benchmark.value != torch.backends.cudnn.benchmark


# -- where it is shown ------------------------------------------------------------------


def test_repro_panel_in_a_terminal_prints_the_text_status(ip, capsys) -> None:
    result = ip.run_line_magic("repro", "panel")
    assert "can't draw widgets" in capsys.readouterr().out
    assert "ipyrepro is OFF" in str(result)


def test_a_panel_left_last_in_a_terminal_cell_prints_the_text_status(ip, capsys) -> None:
    run(ip, "import ipyrepro\nipyrepro.panel()")
    out = capsys.readouterr().out
    assert "widgets need JupyterLab or Notebook" in out and "ipyrepro is OFF" in out and "PYTHONHASHSEED" in out


def test_import_ipyrepro_does_not_import_ipywidgets() -> None:
    code = "import sys, ipyrepro; assert 'ipywidgets' not in sys.modules, 'ipywidgets imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.kernel
def test_repro_panel_in_a_kernel_displays_the_widget_and_follows_cells() -> None:
    with kernel() as k:
        reply = k.ok("%load_ext ipyrepro\n%repro panel")
        assert any("application/vnd.jupyter.widget-view+json" in data for data in reply.data)
        k.ok("import torch\ntorch.backends.cudnn.benchmark = True")
        shown = k.ok(
            "from ipyrepro.core.state import STATE\n"
            "[ref().__self__.benchmark.value for ref in STATE._listeners if ref()]"
        ).text()
        assert shown == "[True]"


def test_a_cell_that_changes_nothing_shown_does_not_redraw_the_panel(ip, panel, monkeypatch) -> None:
    run(ip, "%repro on --seed 3 --reseed fixed")
    run(ip, "x = 1")  # the last cell seed is now shown; from here on nothing shown changes
    redraws = []
    read_status = STATE.status
    monkeypatch.setattr(STATE, "status", lambda: (redraws.append(1), read_status())[1])  # a redraw reads it
    run(ip, "y = 2")
    run(ip, "import random; z = random.random()")  # draws from an RNG, which the panel does not show
    assert redraws == []


def test_a_cell_that_changes_only_a_precision_flag_still_redraws_the_panel(ip, panel) -> None:
    saved = torch.get_float32_matmul_precision()
    try:
        run(ip, "import torch; torch.set_float32_matmul_precision('high')")
        assert "float32_matmul_precision=high" in panel.status_view.value
        run(ip, "torch.set_float32_matmul_precision('medium')")
        assert "float32_matmul_precision=medium" in panel.status_view.value
        run(ip, "torch.set_float32_matmul_precision('highest')")  # torch's default: the row names no flag
        assert "float32_matmul_precision" not in panel.status_view.value
    finally:
        torch.set_float32_matmul_precision(saved)


def test_a_cell_that_sets_an_environment_variable_shown_redraws_the_panel(ip, panel, monkeypatch) -> None:
    monkeypatch.delenv("CUDA_LAUNCH_BLOCKING", raising=False)
    run(ip, "import os")
    assert "CUDA_LAUNCH_BLOCKING</td><td style='text-align:left'><code>unset" in panel.status_view.value
    run(ip, "os.environ['CUDA_LAUNCH_BLOCKING'] = '1'")
    assert "CUDA_LAUNCH_BLOCKING</td><td style='text-align:left'><code>1" in panel.status_view.value


@pytest.mark.kernel
def test_check_this_notebook_checks_the_kernels_notebook_file(ip, panel, tmp_path, capsys, monkeypatch) -> None:
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    panel.check.click()
    assert "which notebook this kernel belongs to is not known" in capsys.readouterr().out

    notebook = new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3"}})
    notebook.cells = [new_code_cell("print(6 * 7)")]
    nbformat.write(notebook, tmp_path / "mine.ipynb")
    ip.user_ns["__vsc_ipynb_file__"] = str(tmp_path / "mine.ipynb")  # as VS Code tells the kernel
    panel.check.click()
    out = capsys.readouterr().out
    assert f"ipyrepro check {tmp_path / 'mine.ipynb'}: 2 run(s)" in out and "OK: all 1 code cells matched." in out
    assert not panel.check.disabled and errors_text(panel) == ""
