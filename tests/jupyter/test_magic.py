"""`%repro` in a real IPython shell: the commands, re-seeding before cells, bad input, reloads."""

from __future__ import annotations

import argparse
import json
import os
import random

import pytest
import torch
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output

from ipyrepro.core.flags import Flags
from ipyrepro.core.seeding import derive_cell_seed, derive_source_seed
from ipyrepro.core.state import STATE
from ipyrepro.jupyter.magics import BARE, COMMANDS, build_command_parser, build_parser


def run(ip, code: str, cell_id: str | None = None):
    result = ip.run_cell(code, cell_id=cell_id)
    if result.error_in_exec is not None:
        raise result.error_in_exec
    return result.result


def magic(ip, line: str):
    return ip.run_line_magic("repro", line)


def test_on_applies_the_recipe_and_bare_repro_shows_it(ip, capsys) -> None:
    magic(ip, "on --seed 42")
    assert "ipyrepro ON: seed 42" in capsys.readouterr().out
    status = magic(ip, "")
    assert status.enabled and status.seed == 42 and status.reseed == "cell"
    assert torch.are_deterministic_algorithms_enabled() and torch.backends.cudnn.deterministic


def test_status_json_has_the_documented_keys(ip, capsys) -> None:
    magic(ip, "on --seed 3 --warn-only")
    capsys.readouterr()
    magic(ip, "status --json")
    data = json.loads(capsys.readouterr().out)
    for key in (
        "enabled",
        "seed",
        "reseed",
        "cell_seed",
        "cell_id",
        "derivation",
        "cudnn_benchmark",
        "cudnn_deterministic",
        "deterministic_algorithms",
        "cublas_workspace_config",
        "cuda_initialized",
        "python_hash_seed",
        "torch_version",
        "warnings",
    ):
        assert key in data
    assert data["deterministic_algorithms"] == "warn" and data["seed"] == 3


def test_off_restores_benchmark_flag_set_before_on(ip) -> None:
    torch.backends.cudnn.benchmark = True
    magic(ip, "on")
    assert torch.backends.cudnn.benchmark is False
    magic(ip, "off")
    assert torch.backends.cudnn.benchmark is True


def test_off_unsets_a_cublas_variable_that_was_unset(ip) -> None:
    os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)
    magic(ip, "on --cublas :16:8")
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":16:8"
    magic(ip, "off")
    assert "CUBLAS_WORKSPACE_CONFIG" not in os.environ


def test_seed_seeds_now_and_becomes_the_base_seed(ip) -> None:
    magic(ip, "seed 7")
    first = run(ip, "import torch; torch.rand(2).tolist()")
    magic(ip, "seed 7")
    assert run(ip, "torch.rand(2).tolist()") == first
    assert STATE.seed == 7


@pytest.mark.parametrize(
    "line",
    [
        "on --seed abc",
        "on --seed -1",
        "on --seed 4294967296",
        "on --cublas :1:x",
        "on --reseed nope",
        "reseed nope",
        "seed",
        "frobnicate",
        "on --bogus",
    ],
)
def test_bad_input_is_a_usage_error_and_changes_nothing(ip, line: str) -> None:
    before = Flags.read(), STATE.enabled, STATE.reseed, STATE.seed
    with pytest.raises(UsageError):
        magic(ip, line)
    assert (Flags.read(), STATE.enabled, STATE.reseed, STATE.seed) == before


def test_help_prints_usage_and_changes_nothing(ip, capsys) -> None:
    magic(ip, "on -h")
    assert "--warn-only" in capsys.readouterr().out
    assert not STATE.enabled


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_each_subcommand_parser_is_its_part_of_the_whole_parser(name: str) -> None:
    """`%repro on ...` builds only `on`'s parser (issue 23): its help, options and errors are the same."""
    whole = build_parser()
    part = next(action for action in whole._actions if action.dest == "command").choices[name]
    alone = build_command_parser(name)
    assert alone.format_help() == part.format_help()
    assert alone.prog == part.prog == f"%repro {name}"


@pytest.mark.parametrize("name", sorted(BARE))
def test_a_bare_subcommand_gets_what_its_parser_gives_for_no_options(name: str) -> None:
    assert build_command_parser(name).parse_args([]) == argparse.Namespace(command=name, **BARE[name])


def test_repro_on_alone_builds_no_parser_and_options_build_only_their_own(ip, capsys) -> None:
    magics = ip.magics_manager.magics["line"]["repro"].__self__
    magic(ip, "on")
    magic(ip, "")
    assert magics._parsers == {}
    magic(ip, "on --seed 5")
    assert list(magics._parsers) == ["on"] and STATE.seed == 5
    with pytest.raises(UsageError, match="%repro on: .*unrecognized arguments: --bogus"):
        magic(ip, "on --seed 5 --bogus")
    capsys.readouterr()
    magic(ip, "-h")
    assert "COMMAND" in capsys.readouterr().out and "%repro" in magics._parsers


def test_fixed_reseeding_gives_every_cell_the_same_stream(ip) -> None:
    magic(ip, "on --seed 5 --reseed fixed")
    a = run(ip, "torch.rand(3).tolist()", cell_id="a")
    b = run(ip, "torch.rand(3).tolist()", cell_id="b")
    assert a == b


def test_cell_reseeding_is_per_cell_and_survives_out_of_order_reruns(ip) -> None:
    magic(ip, "on --seed 5")
    run(ip, "import random, numpy as np, torch")
    draw = "(random.random(), float(np.random.rand()), torch.rand(2).tolist())"
    first_a = run(ip, draw, cell_id="cell-a")
    first_b = run(ip, draw, cell_id="cell-b")
    assert first_a != first_b
    # rerun in another order, with other cells in between: each cell draws what it drew before
    assert run(ip, draw, cell_id="cell-b") == first_b
    run(ip, "torch.rand(100); random.random()", cell_id="cell-c")
    assert run(ip, draw, cell_id="cell-a") == first_a
    assert STATE.last_cell.seed == derive_cell_seed(5, "cell-a")


def test_editing_a_cell_keeps_its_seed(ip) -> None:
    magic(ip, "on --seed 1")
    before = run(ip, "torch.rand(2).tolist()", cell_id="same-cell")
    after = run(ip, "lr = 0.1\ntorch.rand(2).tolist()", cell_id="same-cell")
    assert before == after


def test_without_a_cell_id_cell_mode_derives_the_seed_from_the_code_and_status_says_so(ip) -> None:
    magic(ip, "on --seed 9")
    draw = "torch.rand(2).tolist()"
    a, b = run(ip, draw), run(ip, draw)
    other = run(ip, "torch.rand(2).tolist()  # another cell")
    assert a == b and a != other  # never the fixed base seed for every cell
    assert STATE.last_cell.seed == derive_source_seed(9, "torch.rand(2).tolist()  # another cell")
    status = magic(ip, "status")
    assert status.derivation == "source" and status.to_dict()["derivation"] == "source"
    assert any("no cell id" in note for note in status.notes)
    assert "from its code" in str(status)
    run(ip, draw, cell_id="with-id")
    status = magic(ip, "status")
    assert status.derivation == "cell" and not any("no cell id" in note for note in status.notes)
    assert "from its cell id" in str(status)


def test_source_reseeding_gives_the_same_numbers_whatever_the_cell_id(ip) -> None:
    magic(ip, "on --seed 4 --reseed source")
    run(ip, "import random, numpy as np")
    draw = "(random.random(), float(np.random.rand()), torch.rand(2).tolist())"
    first = run(ip, draw, cell_id="cell-a")
    assert run(ip, draw, cell_id="cell-b") == first
    assert run(ip, draw) == first
    assert run(ip, draw + "\n\n") == first  # a trailing newline is not part of the code
    assert run(ip, draw.replace("(2)", "(2) ")) != first  # any other edit is
    random.seed(derive_source_seed(4, draw))
    assert first[0] == random.random()
    status = magic(ip, "status")
    assert (status.reseed, status.derivation, status.notes) == ("source", "source", status.setup_notes())


def test_a_second_on_keeps_the_reseed_mode_unless_told(ip) -> None:
    magic(ip, "on --seed 1 --reseed source")  # as the kernel installed with --reseed source starts
    magic(ip, "on --seed 42")  # a notebook's own line
    assert (STATE.reseed, STATE.seed) == ("source", 42)
    magic(ip, "on --reseed fixed")
    assert STATE.reseed == "fixed"
    magic(ip, "off")
    magic(ip, "on")
    assert STATE.reseed == "cell"


def test_reseed_magic_accepts_every_mode_and_rejects_others(ip, capsys) -> None:
    for mode in ("source", "fixed", "off", "cell"):
        magic(ip, f"reseed {mode}")
        assert STATE.reseed == mode and f"Re-seed before each cell: {mode}." in capsys.readouterr().out
    with pytest.raises(UsageError, match="invalid choice"):
        magic(ip, "reseed sources")
    assert STATE.reseed == "cell"


def test_repro_on_prints_no_note_that_depends_on_the_frontend(ip) -> None:
    magic(ip, "on --seed 2")
    with capture_output() as without_id:
        ip.run_cell("%repro on --seed 2")  # no cell id, as nbconvert or a terminal sends
    with capture_output() as with_id:
        ip.run_cell("%repro on --seed 2", cell_id="on-cell")
    assert "no cell id" not in without_id.stdout
    assert without_id.stdout == with_id.stdout
    assert not any("no cell id" in note for note in magic(ip, "status").notes)  # the last cell had an id


def test_reseed_off_stops_reseeding(ip) -> None:
    magic(ip, "on --seed 1")
    magic(ip, "reseed off")
    a = run(ip, "torch.rand(2).tolist()", cell_id="x")
    b = run(ip, "torch.rand(2).tolist()", cell_id="x")
    assert a != b


def test_reload_and_load_twice_register_one_hook(ip) -> None:
    ip.run_line_magic("load_ext", "ipyrepro")
    ip.run_line_magic("reload_ext", "ipyrepro")
    ip.run_line_magic("reload_ext", "ipyrepro")
    ours = [cb for cb in ip.events.callbacks["pre_run_cell"] if "CellHooks" in repr(cb)]
    assert len(ours) == 1


def test_unload_removes_the_hooks_and_the_magic(ip) -> None:
    ip.run_line_magic("unload_ext", "ipyrepro")
    assert not [cb for cb in ip.events.callbacks["pre_run_cell"] if "CellHooks" in repr(cb)]
    assert "repro" not in ip.magics_manager.magics["line"]
    ip.run_line_magic("load_ext", "ipyrepro")  # the fixture unloads again
    assert "repro" in ip.magics_manager.magics["line"]


def test_in_the_reproducible_kernel_unload_ext_ipyrepro_unloads_what_the_kernel_preloaded(ip, capsys) -> None:
    """The kernel loads `ipyrepro.preload`; a user's `%unload_ext ipyrepro` there removes it too, and a later
    `%load_ext ipyrepro` brings it back."""
    ip.run_line_magic("unload_ext", "ipyrepro")
    ip.run_line_magic("load_ext", "ipyrepro.preload")  # what the kernel's startup lines run
    capsys.readouterr()
    ip.run_line_magic("unload_ext", "ipyrepro")
    assert capsys.readouterr().out == ""  # not "The ipyrepro extension is not loaded."
    assert not [cb for cb in ip.events.callbacks["pre_run_cell"] if "CellHooks" in repr(cb)]
    assert "repro" not in ip.magics_manager.magics["line"]
    assert not {"ipyrepro", "ipyrepro.preload"} & ip.extension_manager.loaded
    assert "unload_extension" not in vars(ip.extension_manager)  # IPython's own method again
    ip.run_line_magic("load_ext", "ipyrepro.preload")
    ip.run_line_magic("load_ext", "ipyrepro")  # a notebook's own line: quiet, and the same extension
    ip.run_line_magic("unload_ext", "ipyrepro.preload")
    assert "repro" not in ip.magics_manager.magics["line"]
    assert not {"ipyrepro", "ipyrepro.preload"} & ip.extension_manager.loaded
    assert "not loaded" not in capsys.readouterr().out
    ip.run_line_magic("load_ext", "ipyrepro")  # the fixture unloads again
    assert "repro" in ip.magics_manager.magics["line"]


def test_a_failing_hook_warns_once_and_never_breaks_the_cell(ip, monkeypatch) -> None:
    magic(ip, "on")

    def broken(seed: int) -> None:
        raise RuntimeError("seeder exploded")

    monkeypatch.setattr(STATE.reseeder, "reseed", broken)
    with pytest.warns(UserWarning, match="seeder exploded") as caught:
        assert run(ip, "1 + 1") == 2
        assert run(ip, "2 + 2") == 4
    assert len([w for w in caught if "seeder exploded" in str(w.message)]) == 1
    assert any("seeder exploded" in text for text in magic(ip, "status").warnings)
