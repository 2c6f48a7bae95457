"""The IPython event callbacks, and loading/unloading them exactly once per shell."""

from __future__ import annotations

import contextlib
import sys
import time
import warnings
from typing import Any

from ..core.state import ReproState, ReproWarning

_now = time.time  # bound once: the post-cell hook reads it after every cell


class CellHooks:
    """The callbacks registered on one shell, kept so that unloading removes exactly these."""

    def __init__(self, shell: Any, state: ReproState) -> None:
        self.shell = shell
        self.state = state
        self.last_cell_finished: float | None = None  # when a cell last ran here: `%repro check` compares the file
        self.warnings_shown_by: Any = warnings.showwarning  # the showwarning ours replaced, for other warnings
        self._before_cell = state.before_cell  # bound once: these run around every cell
        self._after_cell = state.after_cell

    def pre_run_cell(self, info: Any) -> None:
        try:
            try:
                cell_id, code = info.cell_id, info.raw_cell
            except AttributeError:  # an IPython whose ExecutionInfo lacks one
                cell_id, code = getattr(info, "cell_id", None), getattr(info, "raw_cell", None)
            self._before_cell(cell_id, code or "")
        except KeyboardInterrupt:  # the user's Ctrl-C stops the cell, as it would without ipyrepro
            raise
        except BaseException as error:  # never break the user's cell, not even with a plugin's SystemExit
            self.state.record_hook_error("pre_run_cell", error)

    def post_run_cell(self, result: Any) -> None:
        self.last_cell_finished = _now()
        try:
            self._after_cell()
        except KeyboardInterrupt:
            raise
        except BaseException as error:
            self.state.record_hook_error("post_run_cell", error)

    def register(self) -> None:
        self.shell.events.register("pre_run_cell", self.pre_run_cell)
        self.shell.events.register("post_run_cell", self.post_run_cell)
        self.warnings_shown_by = warnings.showwarning
        warnings.showwarning = self.show_warning

    def unregister(self) -> None:
        for event, callback in (("pre_run_cell", self.pre_run_cell), ("post_run_cell", self.post_run_cell)):
            if callback in self.shell.events.callbacks[event]:
                self.shell.events.unregister(event, callback)
        if warnings.showwarning == self.show_warning:  # someone who replaced it after us keeps theirs
            warnings.showwarning = self.warnings_shown_by

    def show_warning(
        self, message: Any, category: type, filename: str, lineno: int, file: Any = None, line: Any = None
    ) -> None:
        """`ReproWarning: …` alone: its text names cause and fix, and no file or line of the user's is to blame.

        Every other warning goes to the `showwarning` that was in place before, unchanged.
        """
        if not issubclass(category, ReproWarning):
            return self.warnings_shown_by(message, category, filename, lineno, file, line)
        stream = sys.stderr if file is None else file
        with contextlib.suppress(OSError, AttributeError):  # as warnings' own: a closed stream is not the cell's error
            stream.write(f"ReproWarning: {message}\n")
        return None


def install(shell: Any, state: ReproState) -> None:
    """Register the magics and hooks on `shell`, once: a second load changes nothing."""
    from ..core.lazytorch import TORCH
    from .magics import ReproMagics

    if id(shell) in state.shell_hooks:
        return
    TORCH.inductor_follows = True
    hooks = CellHooks(shell, state)
    hooks.register()
    ReproMagics(shell, state=state).register()
    state.shell_hooks[id(shell)] = hooks


def uninstall(shell: Any, state: ReproState) -> None:
    """Remove what `install` registered; the settings in force stay as they are."""
    from ..core.inductor import INDUCTOR
    from ..core.lazytorch import TORCH
    from ..core.numpyrandom import NUMPY_RANDOM
    from .magics import ReproMagics

    INDUCTOR.remove_hook()  # inductor's and NumPy's hooks leave the import system
    NUMPY_RANDOM.cancel()
    # torch's settings and seed stay in force, as they would had torch been imported before `on`: they
    # still wait for its import, but inductor no longer follows them there (its hook is gone, as above).
    TORCH.inductor_follows = False
    hooks = state.shell_hooks.pop(id(shell), None)
    if hooks is not None:
        hooks.unregister()
    manager = shell.magics_manager
    for kind in ("line", "cell"):
        manager.magics[kind].pop("repro", None)
    if isinstance(getattr(getattr(manager.user_magics, "repro", None), "__self__", None), ReproMagics):
        delattr(manager.user_magics, "repro")  # where `register_magic_function` also put it
