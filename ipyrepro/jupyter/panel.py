"""The control panel: ipywidgets over the one state object, showing what is really in force.

A click calls the same API as `%repro` (enable/disable/configure/seed_all/set_reseed);
every change there, and every cell (through the post_run_cell hook), refreshes every
open panel from a live `Status` read. No polling threads. ipywidgets is imported only
here, so `import ipyrepro` and the CLI work without a kernel.
"""

from __future__ import annotations

import html
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import ipywidgets as widgets

from ..core.flags import DETERMINISTIC_MODES
from ..core.seeding import RESEED_MODES, SEED_LIMIT, validate_seed
from ..core.state import STATE, ReproState
from ..core.status import Status
from ..core.torchinfo import DETERMINISTIC_CUBLAS_VALUES

UNSET = "unset"  # the cuBLAS choice that removes the variable; ToggleButtons can't hold None as a value
CUBLAS_CHOICES = (UNSET, *DETERMINISTIC_CUBLAS_VALUES)
DRIFT_BORDER = "2px solid #f0ad4e"

TIPS = {
    "master": (
        "Reproducible mode: seeds Python, NumPy and PyTorch, makes cuDNN and PyTorch use deterministic "
        "algorithms, sets CUBLAS_WORKSPACE_CONFIG and re-seeds before each cell (same as `%repro on`). "
        "Turning it off restores exactly what was in force before (`%repro off`). "
        "Cost: some GPU operations run slower, and ops with no deterministic version raise an error."
    ),
    "seed": (
        "The base seed: a whole number from 0 to 4294967295 (2**32 - 1). Type it, then press 'Apply seed'. "
        "Same seed, same random numbers."
    ),
    "apply_seed": (
        "Seed Python's random, NumPy and PyTorch (every device) now with this number; re-seeding before "
        "each cell starts from it (same as `%repro seed N`). Cost: none."
    ),
    "benchmark": (
        "torch.backends.cudnn.benchmark. On: cuDNN times several algorithms and keeps the fastest, which can "
        "differ from run to run, so results may change. Off (what reproducible mode sets): one fixed choice; "
        "convolutions may be somewhat slower."
    ),
    "cudnn_deterministic": (
        "torch.backends.cudnn.deterministic. On (what reproducible mode sets): cuDNN uses only deterministic "
        "convolution algorithms, so each run gives the same result. Cost: can be slower."
    ),
    "algorithms": (
        "torch.use_deterministic_algorithms: what PyTorch does with operations that can give different results "
        "each run (e.g. index_add or scatter on a GPU). Cost: the deterministic versions can be slower."
    ),
    "cublas": (
        "CUBLAS_WORKSPACE_CONFIG: the workspace cuBLAS (GPU matrix multiply) uses. :4096:8 or :16:8 make it "
        "deterministic on older torch; set it before any CUDA work, as a later change may be ignored."
    ),
    "reseed": (
        "Re-seed before each cell, so re-running a cell gives the same random numbers without re-running "
        "the cells above it. Cost: a few microseconds per cell."
    ),
    "portable": (
        "The portable profile: 4 threads, TF32 off and IEEE fp32 now (same as `%repro on --portable`), so "
        "machines of one architecture compute the same bits. CPU kernel pins are read only at start: "
        "use a kernel from `ipyrepro kernel install --portable`. Cost: see benchmarks/bench_portable.py."
    ),
    "status": "What is in force right now, read live from PyTorch and the environment after every cell.",
    "check": (
        "Run this notebook's saved file in two fresh kernels and compare every cell, as `%repro check` does "
        "(save first: the check runs the file on disk)."
    ),
}
ALGORITHM_TIPS = (
    "off: PyTorch may pick fast nondeterministic implementations. Fastest; results can differ run to run.",
    "warn: deterministic implementations; an op without one still runs but warns.",
    "error: deterministic implementations; an op without one raises an error. Most reproducible; may be slower.",
)
CUBLAS_TIPS = (
    "unset: cuBLAS picks its default workspace (not deterministic on torch older than 2.10).",
    ":4096:8: deterministic cuBLAS; uses about 24 MiB more GPU memory. The usual choice.",
    ":16:8: deterministic cuBLAS with a tiny workspace; saves memory but may slow matrix multiplies.",
)
RESEED_TIPS = (
    "off: no re-seeding; random numbers continue from where the last cell left them.",
    "fixed: every cell starts from the base seed.",
    "cell: each cell starts from its own seed derived from the base seed and the cell's id (the default).",
    "source: each cell's seed comes from the base seed and its code, so every frontend (nbconvert, papermill, "
    "nbval, a terminal) gets the same numbers; editing a cell changes its numbers.",
)


def _row(label: str, tip: str, control: widgets.Widget) -> widgets.HBox:
    caption = widgets.Label(label, tooltip=tip, layout=widgets.Layout(width="260px"))
    return widgets.HBox([caption, control])


class ReproPanel(widgets.VBox):
    """The panel widget; `ipyrepro.panel()` and `%repro panel` make one. Any number can be open at once."""

    def __init__(self, state: ReproState = STATE, **kwargs: Any) -> None:
        self.state = state
        self._refreshing = False
        self._shown_seed: object = object()  # the state's seed as last put into the field
        self._shown: tuple[Any, ...] | None = None  # Status.signature of what the widgets show
        self._notes_before = set(state.notes_shown)  # shown before this panel: each note once per kernel

        self.master = widgets.ToggleButton(
            description="Reproducible mode", icon="lock", tooltip=TIPS["master"], layout=widgets.Layout(width="220px")
        )
        self.seed = widgets.Text(
            placeholder="e.g. 42", tooltip=TIPS["seed"], continuous_update=True, layout=widgets.Layout(width="140px")
        )
        self.apply_seed = widgets.Button(description="Apply seed", tooltip=TIPS["apply_seed"])
        self.seed_error = widgets.HTML("")
        # no description: ipywidgets shows a checkbox's description as its tooltip instead of `tooltip`
        self.benchmark = widgets.Checkbox(indent=False, tooltip=TIPS["benchmark"], layout=widgets.Layout(width="80px"))
        self.cudnn_deterministic = widgets.Checkbox(
            indent=False, tooltip=TIPS["cudnn_deterministic"], layout=widgets.Layout(width="80px")
        )
        self.algorithms = widgets.ToggleButtons(
            options=DETERMINISTIC_MODES,
            tooltips=list(ALGORITHM_TIPS),
            tooltip=TIPS["algorithms"],
            style={"button_width": "80px"},
        )
        self.cublas = widgets.ToggleButtons(
            options=CUBLAS_CHOICES,
            tooltips=list(CUBLAS_TIPS),
            tooltip=TIPS["cublas"],
            style={"button_width": "80px"},
        )
        self.reseed = widgets.ToggleButtons(
            options=RESEED_MODES,
            tooltips=list(RESEED_TIPS),
            tooltip=TIPS["reseed"],
            style={"button_width": "80px"},
        )
        self.portable = widgets.Button(
            description="Apply portable profile", tooltip=TIPS["portable"], layout=widgets.Layout(width="220px")
        )
        self.portable_state = widgets.HTML("")
        self.status_view = widgets.HTML(tooltip=TIPS["status"])
        self.errors = widgets.Output()
        self.check = widgets.Button(
            description="Check this notebook", icon="check", tooltip=TIPS["check"], layout=widgets.Layout(width="220px")
        )
        self.check_output = widgets.Output()

        super().__init__(children=self._layout(), **kwargs)
        for widget, name in (
            (self, "panel"),
            (self.master, "master"),
            (self.seed, "seed"),
            (self.apply_seed, "apply-seed"),
            (self.seed_error, "seed-error"),
            (self.benchmark, "benchmark"),
            (self.cudnn_deterministic, "cudnn-deterministic"),
            (self.algorithms, "algorithms"),
            (self.cublas, "cublas"),
            (self.reseed, "reseed"),
            (self.portable, "portable"),
            (self.portable_state, "portable-state"),
            (self.status_view, "status-area"),
            (self.errors, "errors"),
            (self.check, "check"),
            (self.check_output, "check-output"),
        ):
            widget.add_class(f"ipyrepro-{name}")

        self.master.observe(self._guard(self._on_master), "value")
        self.seed.observe(self._on_seed_typed, "value")
        self.apply_seed.on_click(lambda _button: self._guard(self._on_apply_seed)(None))
        self.benchmark.observe(self._guard(self._on_benchmark), "value")
        self.cudnn_deterministic.observe(self._guard(self._on_cudnn_deterministic), "value")
        self.algorithms.observe(self._guard(self._on_algorithms), "value")
        self.cublas.observe(self._guard(self._on_cublas), "value")
        self.reseed.observe(self._guard(self._on_reseed), "value")
        self.portable.on_click(lambda _button: self._guard(self._on_portable)(None))
        self.check.on_click(lambda _button: self._on_check())

        self._unsubscribe = state.subscribe(self._on_state_change)
        self.refresh()

    def _layout(self) -> list[widgets.Widget]:
        return [
            widgets.HTML(
                "<b>ipyrepro</b>: reproducible PyTorch notebooks. Hover over any control for what it "
                "does and what it costs."
            ),
            _row("Reproducible mode (on / off)", TIPS["master"], self.master),
            _row("Seed", TIPS["seed"], widgets.HBox([self.seed, self.apply_seed, self.seed_error])),
            _row("cuDNN autotuner (benchmark)", TIPS["benchmark"], self.benchmark),
            _row("cuDNN deterministic only", TIPS["cudnn_deterministic"], self.cudnn_deterministic),
            _row("Deterministic algorithms", TIPS["algorithms"], self.algorithms),
            _row("cuBLAS workspace", TIPS["cublas"], self.cublas),
            _row("Re-seed before each cell", TIPS["reseed"], self.reseed),
            _row("Portable profile", TIPS["portable"], widgets.HBox([self.portable, self.portable_state])),
            self.status_view,
            self.errors,
            self.check,
            self.check_output,
        ]

    # -- from the state to the widgets ---------------------------------------------

    def _on_state_change(self) -> None:
        """After every cell and change: redraw only when something shown changed (a few us when not)."""
        if Status.signature(self.state) != self._shown:
            self.refresh()

    def refresh(self) -> None:
        """Show the live state; observers see `_refreshing` and apply nothing back."""
        self._shown = Status.signature(self.state)  # read first: a change during the read shows next time
        status = self.state.status_once(notes_seen=self._notes_before)
        self._refreshing = True
        try:
            self.master.value = status.enabled
            self.master.description = "ON: reproducible" if status.enabled else "OFF: click to turn on"
            self.master.button_style = "success" if status.enabled else ""
            if status.seed != self._shown_seed:  # keep what the user is typing unless the seed changed
                self._shown_seed = status.seed
                self.seed.value = "" if status.seed is None else str(status.seed)
                self.seed_error.value = ""
            self.benchmark.value = status.cudnn_benchmark
            self.cudnn_deterministic.value = status.cudnn_deterministic
            self.algorithms.value = status.deterministic_algorithms
            cublas = status.cublas_workspace_config
            if cublas is None or cublas in CUBLAS_CHOICES:
                if tuple(self.cublas.options) != CUBLAS_CHOICES:
                    self.cublas.options = CUBLAS_CHOICES
                self.cublas.value = UNSET if cublas is None else cublas
            else:  # a value set by hand that the panel can't offer: show it as an extra choice
                self.cublas.options = (*CUBLAS_CHOICES, cublas)
                self.cublas.value = cublas
            self.reseed.value = status.reseed
            missing = f": missing {'; '.join(status.portable_missing)}" if status.portable == "partly" else ""
            self.portable_state.value = html.escape(f"{status.portable}{missing}")
            self._show_drift(status)
            self.status_view.value = status._repr_html_()
        finally:
            self._refreshing = False

    def _show_drift(self, status: Status) -> None:
        for name, widget in (
            ("cudnn_benchmark", self.benchmark),
            ("cudnn_deterministic", self.cudnn_deterministic),
            ("deterministic_algorithms", self.algorithms),
            ("cublas_workspace_config", self.cublas),
        ):
            drifted = name in status.drift
            widget.layout.border = DRIFT_BORDER if drifted else ""
            if drifted:
                widget.add_class("ipyrepro-drift")
            else:
                widget.remove_class("ipyrepro-drift")

    # -- from the widgets to the state ---------------------------------------------

    def _guard(self, handler: Callable[[Any], None]) -> Callable[[Any], None]:
        """Skip changes made by `refresh`; show any error in the panel, then re-show the real state."""

        def guarded(change: Any) -> None:
            if self._refreshing:
                return
            with self._reporting():
                handler(change)

        return guarded

    @contextmanager
    def _reporting(self) -> Iterator[None]:
        self.errors.outputs = ()
        try:
            yield
        except ValueError as error:  # the API's validation: a clear message, nothing changed
            self.errors.append_stderr(f"Not applied: {error}\n")
            self.refresh()
        except Exception:
            self.errors.append_stderr("ipyrepro panel: the change failed.\n" + traceback.format_exc())
            self.refresh()

    def _on_master(self, change: Any) -> None:
        if change["new"]:
            # An empty field leaves the seed to `on`'s rule (in force, the kernel's, 0), as `%repro on` does;
            # the re-seed mode is never passed, so one chosen while off is kept.
            typed = bool(self.seed.value.strip())
            seed = self._typed_seed() if typed else None
            if typed and seed is None:
                self.refresh()
                return
            self.state.enable(seed)
        else:
            self.state.disable()

    def _on_seed_typed(self, change: Any) -> None:
        if not self._refreshing:
            self._typed_seed(default=0)  # an empty field is fine while typing

    def _on_apply_seed(self, _change: Any) -> None:
        seed = self._typed_seed()
        if seed is not None:
            self.state.seed_all(seed)

    def _typed_seed(self, default: int | None = None) -> int | None:
        """The seed in the field (or `default` when empty), or None after showing what is wrong next to it."""
        text = self.seed.value.strip()
        if not text and default is not None:
            return default
        try:
            seed = validate_seed(int(text))
        except ValueError:
            shown = f"{text!r} is not a valid seed" if text else "Type a seed first"
            self.seed_error.value = (
                f"<span style='color:#d9534f;font-weight:bold'>{html.escape(shown)}: use a whole number "
                f"from 0 to {SEED_LIMIT - 1}. Nothing was changed.</span>"
            )
            return None
        self.seed_error.value = ""
        return seed

    def _on_benchmark(self, change: Any) -> None:
        self.state.configure(cudnn_benchmark=bool(change["new"]))

    def _on_cudnn_deterministic(self, change: Any) -> None:
        self.state.configure(cudnn_deterministic=bool(change["new"]))

    def _on_algorithms(self, change: Any) -> None:
        self.state.configure(deterministic_algorithms=change["new"])

    def _on_cublas(self, change: Any) -> None:
        value = change["new"]
        self.state.configure(cublas_workspace_config=None if value == UNSET else value)

    def _on_reseed(self, change: Any) -> None:
        self.state.set_reseed(change["new"])

    def _on_portable(self, _change: Any) -> None:
        self.state.set_portable()

    def _on_check(self) -> None:
        """What `%repro check` does, shown under the button: progress, then the report (or why not)."""
        from IPython import get_ipython
        from IPython.display import display

        from .checkmagic import check_here

        self.check_output.outputs = ()
        self.check.disabled = True
        try:
            with self.check_output:
                try:
                    shown = check_here(get_ipython(), self.state)
                except ValueError as error:  # the notebook cannot be read: say why
                    print(f"%repro check: {error}")
                    return
                if shown is not None:
                    display(shown)
        except Exception:
            self.errors.append_stderr("ipyrepro panel: the check failed.\n" + traceback.format_exc())
        finally:
            self.check.disabled = False

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        """The widget for Jupyter, and the full text status (not a truncated repr) for terminals."""
        bundle = super()._repr_mimebundle_(**kwargs)
        bundle["text/plain"] = f"ipyrepro panel (widgets need JupyterLab or Notebook). {self.state.status()}"
        return bundle

    def close(self) -> None:
        """Stop following the state, then close the widgets."""
        self._unsubscribe()
        for child in (
            self.master,
            self.seed,
            self.apply_seed,
            self.seed_error,
            self.benchmark,
            self.cudnn_deterministic,
            self.algorithms,
            self.cublas,
            self.reseed,
            self.portable,
            self.portable_state,
            self.status_view,
            self.errors,
            self.check,
            self.check_output,
        ):
            child.close()
        super().close()


def panel(state: ReproState = STATE) -> ReproPanel:
    """A new control panel over `state`; display it (or leave it last in a cell) to see it."""
    return ReproPanel(state)


def in_widget_frontend(shell: Any) -> bool:
    """Whether `shell` runs in a Jupyter kernel, whose frontend can draw widgets; a terminal can't."""
    return getattr(shell, "kernel", None) is not None
