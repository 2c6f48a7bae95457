"""Quiet by default: each note once per kernel, short notes, warnings without a file and line, settings that read
as settings."""

from __future__ import annotations

import os
import subprocess
import sys

from IPython.utils.capture import capture_output

import ipyrepro
from ipyrepro.core.state import STATE


def test_the_pythonhashseed_note_is_shown_once_per_kernel_not_on_every_repro(ip, monkeypatch) -> None:
    monkeypatch.delenv("PYTHONHASHSEED", raising=False)
    shown = []
    for line in ("%repro on --seed 1", "%repro", "%repro status", "%repro panel", "%repro on --seed 2", "%repro"):
        with capture_output() as out:
            result = ip.run_cell(line, cell_id=f"c{len(shown)}")
        text = out.stdout + (str(result.result) if result.result is not None else "")
        shown.append(text.count("PYTHONHASHSEED is not set"))
    assert shown == [1, 0, 0, 0, 0, 0]
    assert any("PYTHONHASHSEED" in note for note in ipyrepro.status().notes), "the API still has every note"


def test_a_panel_shows_only_notes_no_face_has_shown_yet(ip, monkeypatch) -> None:
    from ipyrepro.jupyter.panel import ReproPanel

    monkeypatch.delenv("PYTHONHASHSEED", raising=False)
    first = ReproPanel(STATE)
    first.refresh()
    assert "PYTHONHASHSEED is not set" in first.status_view.value
    first.refresh()  # a redraw of the same panel keeps it
    assert "PYTHONHASHSEED is not set" in first.status_view.value
    second = ReproPanel(STATE)
    second.refresh()
    assert "PYTHONHASHSEED is not set" not in second.status_view.value
    first.close()
    second.close()


def test_the_no_cell_id_note_is_one_short_line_with_a_link(ip) -> None:
    ip.run_line_magic("repro", "on --seed 3")
    ip.run_cell("x = torch.rand(1)")  # no cell id: as nbconvert, papermill or a terminal sends it
    status = ip.run_line_magic("repro", "status")
    [note] = [note for note in status.notes if "no cell id" in note]
    assert "\n" not in note and len(note.split()) <= 25
    assert "https://" in note and "reseeding" in note


SHELL_WARNINGS = """
import warnings
from IPython.testing.globalipapp import start_ipython
from ipyrepro.core.state import _emit
ip = start_ipython()
warnings.simplefilter("always")
ip.run_line_magic("load_ext", "ipyrepro")
_emit("cudnn.benchmark is now True; fix: undo it")
warnings.warn("something else", UserWarning)
ip.run_line_magic("unload_ext", "ipyrepro")
_emit("after unload")
"""


def test_repro_warnings_show_as_reprowarning_without_a_file_and_line_until_unloaded(tmp_path) -> None:
    # A process of its own: pytest records warnings itself, which would hide what a user sees on stderr.
    env = {**os.environ, "IPYTHONDIR": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", SHELL_WARNINGS], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert lines[0] == "ReproWarning: cudnn.benchmark is now True; fix: undo it"
    assert "<string>:9: UserWarning: something else" in done.stderr  # every other warning as before
    assert "ipyrepro:0: ReproWarning: after unload" in done.stderr  # unloading put Python's own display back


PRECISION_ROWS = """
import torch, ipyrepro
def row():
    return next(line for line in str(ipyrepro.status()).splitlines() if line.strip().startswith("precision"))
print(row())
torch.set_float32_matmul_precision("medium")
print(row())
print(len(ipyrepro.status().precision))
"""


def test_status_reads_as_settings_and_names_only_the_precision_flags_changed(ip) -> None:
    ip.run_line_magic("repro", "on --seed 4")
    text = str(ip.run_line_magic("repro", "status"))
    assert "deterministic algorithms  on (raise on nondeterministic ops)" in text
    ip.run_line_magic("repro", "on --warn-only")
    assert "deterministic algorithms  on (warn on nondeterministic ops)" in str(ipyrepro.status())
    # A fresh process, where every precision flag is still torch's default (other tests here change some).
    done = subprocess.run([sys.executable, "-c", PRECISION_ROWS], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    untouched, medium, flags = done.stdout.splitlines()
    assert untouched.split() == ["precision", "torch's", "defaults"]
    assert "float32_matmul_precision=medium" in medium and "cudnn.allow_tf32" not in medium  # only what changed
    assert int(flags) > 1, "the JSON and the API keep every flag"
