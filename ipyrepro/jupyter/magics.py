"""`%repro`: parse the command line and call the state's API; no logic of its own."""

from __future__ import annotations

import argparse
import keyword
import os
import shlex
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class

from ..core import arguments
from ..core.flags import DETERMINISTIC_CUBLAS_VALUES
from ..core.seeding import RESEED_MODES
from ..core.state import ReproState


class _HelpShown(Exception):
    """argparse printed help and wants to exit; the magic just returns."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message}\n{self.format_usage().strip()}")

    def exit(self, status: int = 0, message: str | None = None) -> None:  # type: ignore[override]
        if message:
            print(message)
        raise _HelpShown


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="%repro", description="Reproducible PyTorch notebooks. With no subcommand: status.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    status = commands.add_parser("status", help="what is in force now, and warnings (the default)")
    status.add_argument("--json", action="store_true", help="print machine-readable JSON")

    on = commands.add_parser("on", help="apply the full recipe and re-seed before each cell")
    on.add_argument("--seed", type=arguments.seed, default=0, help="base seed, 0 <= seed < 2**32 (default 0)")
    on.add_argument(
        "--warn-only",
        action="store_true",
        help="ops without a deterministic implementation warn instead of raising (default: raise)",
    )
    on.add_argument(
        "--cublas",
        choices=DETERMINISTIC_CUBLAS_VALUES,
        default=DETERMINISTIC_CUBLAS_VALUES[0],
        help="CUBLAS_WORKSPACE_CONFIG when not already deterministic (default :4096:8; :16:8 uses less memory)",
    )
    on.add_argument(
        "--reseed",
        choices=RESEED_MODES,
        default=None,
        help="before each cell: cell = a seed per cell id (from the code when no id is sent), source = a seed "
        "from the cell's code (the same in every frontend), fixed = the base seed, off = none. Default: the mode "
        "in force when ipyrepro is already on (as in the reproducible kernel), else cell",
    )

    commands.add_parser("off", help="restore everything to what it was before `on`")

    seed = commands.add_parser("seed", help="seed every RNG now; also the base seed for re-seeding")
    seed.add_argument("seed", type=arguments.seed)

    reseed = commands.add_parser("reseed", help="set the re-seed mode before each cell")
    reseed.add_argument("mode", choices=RESEED_MODES)

    commands.add_parser("panel", help="a control panel (widgets) in Jupyter; the text status in a terminal")

    env = commands.add_parser("env", help="versions, GPU, CPU, flags and env vars that decide reproducibility")
    env_format = env.add_mutually_exclusive_group()
    env_format.add_argument("--json", action="store_true", help="print machine-readable JSON")
    env_format.add_argument("--markdown", action="store_true", help="print a Markdown table for a paper or an issue")
    return parser


def _names(text: str) -> list[str]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    bad = [name for name in names if not name.isidentifier() or keyword.iskeyword(name)]
    if not names or bad:
        raise argparse.ArgumentTypeError(f"invalid --vars {text!r}: Python names separated by commas, e.g. loss,model")
    return names


def build_cell_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="%%repro",
        description="Run the cell N times from the same seed and namespace and compare every name it assigns.",
    )
    parser.add_argument("--runs", type=arguments.runs, default=2, help="how many times to run the cell (default 2)")
    parser.add_argument(
        "--seed",
        type=arguments.seed,
        default=None,
        help="seed for every run (default: the seed `%%repro on` re-seeds this cell with, else the base seed, or 0)",
    )
    parser.add_argument("--rtol", type=arguments.tolerance, default=0.0, help="relative tolerance (default 0: bitwise)")
    parser.add_argument("--atol", type=arguments.tolerance, default=0.0, help="absolute tolerance (default 0: bitwise)")
    parser.add_argument(
        "--vars", type=_names, default=None, metavar="A,B", help="compare only these names (default: all it assigns)"
    )
    parser.add_argument(
        "--no-restore",
        action="store_true",
        help="take no snapshot (saves memory); runs then start from what the previous run left",
    )
    parser.add_argument("--save", metavar="FILE", help="write digests and the environment to FILE (JSON)")
    parser.add_argument("--check", metavar="FILE", help="compare with a FILE written by --save")
    return parser


def _raised_by_ipyrepro(error: BaseException) -> bool:
    """Whether ipyrepro's own validation raised `error` (a usage error), not a library or a seeder plugin."""
    if getattr(error, "ipyrepro_seeder", None) is not None:
        return False
    traceback = error.__traceback__
    while traceback is not None and traceback.tb_next is not None:
        traceback = traceback.tb_next
    if traceback is None:
        return True
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # ipyrepro itself
    return os.path.abspath(traceback.tb_frame.f_code.co_filename).startswith(package + os.sep)


@magics_class
class ReproMagics(Magics):
    """The `%repro` magic, a thin face over one ReproState."""

    def __init__(self, shell: Any, *, state: ReproState) -> None:
        super().__init__(shell)
        self.state = state
        self.parser = build_parser()
        self.cell_parser = build_cell_parser()

    @line_magic
    def repro(self, line: str = "") -> Any:
        """Reproducible PyTorch notebooks.

        %repro                        status: what is in force now, and warnings
        %repro status [--json]        the same; --json for machines
        %repro on [--seed N] [--warn-only] [--cublas :4096:8|:16:8] [--reseed cell|source|fixed|off]
        %repro off                    restore everything to what it was before `on`
        %repro seed N                 seed every RNG now (and use N as the base seed)
        %repro reseed cell|source|fixed|off  re-seed mode before each cell
        %repro panel                  a control panel in Jupyter (the text status in a terminal)
        %repro env [--json|--markdown] the environment report: versions, GPU, CPU, flags, env vars

        `%repro on -h` (and so on) explains each option.
        """
        try:
            args = self.parser.parse_args(line.split())
        except _HelpShown:
            return None
        command = args.command or "status"
        try:
            return getattr(self, f"_{command}")(args)
        except ValueError as error:  # the API validates too: report it the same way
            if not _raised_by_ipyrepro(error):  # a library's or a plugin's error is reported as itself
                raise
            raise UsageError(f"%repro {command}: {error}") from error

    def _status(self, args: argparse.Namespace) -> Any:
        status = self.state.status()
        if getattr(args, "json", False):
            print(status.to_json())
            return None
        return status

    def _on(self, args: argparse.Namespace) -> None:
        self.state.enable(args.seed, warn_only=args.warn_only, cublas=args.cublas, reseed=args.reseed)
        status = self.state.status()
        print(
            f"ipyrepro ON: seed {status.seed}, re-seed {status.reseed}, deterministic algorithms "
            f"{status.deterministic_algorithms}, CUBLAS_WORKSPACE_CONFIG={status.cublas_workspace_config}. "
            "`%repro` shows status; `%repro off` restores."
        )
        for note in status.setup_notes():
            print(f"Note: {note}")

    def _off(self, args: argparse.Namespace) -> None:
        was_on = self.state.enabled
        self.state.disable()
        print(
            "ipyrepro OFF: settings restored to what they were before `%repro on`."
            if was_on
            else "ipyrepro was already off; nothing to restore."
        )

    def _seed(self, args: argparse.Namespace) -> None:
        seed = self.state.seed_all(args.seed)
        print(f"Seeded random, NumPy and torch with {seed}; re-seeding now starts from it.")

    def _env(self, args: argparse.Namespace) -> Any:
        from ..env.report import collect

        report = collect(self.state)
        if args.json or args.markdown:
            print(report.to_json() if args.json else report.to_markdown())
            return None
        return report

    def _panel(self, args: argparse.Namespace) -> Any:
        from .panel import in_widget_frontend, panel

        if not in_widget_frontend(self.shell):
            print("The panel needs JupyterLab or Notebook; this frontend can't draw widgets. The status:")
            return self.state.status()
        from IPython.display import display

        display(panel(self.state))
        return None

    def _reseed(self, args: argparse.Namespace) -> None:
        self.state.set_reseed(args.mode)
        print(f"Re-seed before each cell: {args.mode}.")

    @cell_magic("repro")
    def repro_cell(self, line: str, cell: str) -> Any:
        """Rerun this cell and compare the results: is it reproducible, and if not, what differs and why?

        %%repro [--runs N] [--seed S] [--rtol R] [--atol A] [--vars a,b] [--no-restore]
                [--save FILE | --check FILE]

        Every run starts from the same seed and the same namespace; afterwards the
        namespace is as after one run. Returns a report with `.ok` and `.differences`.
        `%%repro -h` explains each option.
        """
        from ..rerun.cell import rerun_cell

        try:
            args = self.cell_parser.parse_args(shlex.split(line))
        except _HelpShown:
            return None
        except ValueError as error:  # shlex: an unclosed quote
            raise UsageError(f"%%repro: cannot read the options {line!r}: {error}") from error
        try:
            return rerun_cell(
                self.shell,
                cell,
                runs=args.runs,
                seed=args.seed,
                rtol=args.rtol,
                atol=args.atol,
                names=args.vars,
                restore=not args.no_restore,
                save=args.save,
                check=args.check,
                state=self.state,
            )
        except ValueError as error:  # bad files and arguments, found before anything ran
            if not _raised_by_ipyrepro(error):  # a library's or a seeder plugin's error is reported as itself
                raise
            raise UsageError(f"%%repro: {error}") from error
