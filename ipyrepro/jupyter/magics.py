"""`%repro`: parse the command line and call the state's API; no logic of its own."""

from __future__ import annotations

import argparse
import keyword
import os
import shlex
from collections.abc import Callable
from typing import Any

from IPython.core.error import UsageError

from ..core.flags import DETERMINISTIC_CUBLAS_VALUES
from ..core.lazytorch import PENDING_TEXT
from ..core.seeding import RESEED_MODES
from ..core.state import ReproState
from ..core.status import PORTABLE_NOTE_START, algorithms_text


class _HelpShown(Exception):
    """argparse printed help and wants to exit; the magic just returns."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message}\n{self.format_usage().strip()}")

    def exit(self, status: int = 0, message: str | None = None) -> None:  # type: ignore[override]
        if message:
            print(message)
        raise _HelpShown


# What each subcommand's options are when none is given: `%repro on` alone is answered from here,
# without building a parser (argparse's gettext lookups alone cost a fresh kernel 1 ms). The parsers
# take their defaults from here too.
BARE: dict[str, dict[str, Any]] = {
    "status": {"json": False},
    "on": {
        "seed": None,
        "warn_only": None,
        "cublas": DETERMINISTIC_CUBLAS_VALUES[0],
        "reseed": None,
        "portable": False,
    },
    "off": {},
    "panel": {},
    "env": {"json": False, "markdown": False},
}


def _status_arguments(status: argparse.ArgumentParser) -> None:
    status.add_argument(
        "--json", action="store_true", default=BARE["status"]["json"], help="print machine-readable JSON"
    )


def _on_arguments(on: argparse.ArgumentParser) -> None:
    from ..core import arguments  # only when a line has options to parse

    on.add_argument(
        "--seed",
        type=arguments.seed,
        default=BARE["on"]["seed"],
        help="base seed, 0 <= seed < 2**32 (default: the seed in force, else IPYREPRO_SEED, else 0)",
    )
    on.add_argument(
        "--warn-only",
        action=argparse.BooleanOptionalAction,
        default=BARE["on"]["warn_only"],
        help="ops without a deterministic implementation warn instead of raising; --no-warn-only: raise "
        "(default: as in force, else IPYREPRO_DETERMINISTIC, else raise)",
    )
    on.add_argument(
        "--cublas",
        choices=DETERMINISTIC_CUBLAS_VALUES,
        default=BARE["on"]["cublas"],
        help="CUBLAS_WORKSPACE_CONFIG when not already deterministic (default :4096:8; :16:8 uses less memory)",
    )
    on.add_argument(
        "--reseed",
        choices=RESEED_MODES,
        default=BARE["on"]["reseed"],
        help="before each cell: cell = a seed per cell id (from the code when no id is sent), source = a seed "
        "from the cell's code (the same in every frontend), fixed = the base seed, off = none. Default: the mode "
        "in force (already on, or chosen while off), else IPYREPRO_RESEED (the reproducible kernel's), else cell",
    )
    on.add_argument(
        "--portable",
        action="store_true",
        default=BARE["on"]["portable"],
        help="the portable profile: fixed threads, TF32 off, IEEE fp32 now; says which CPU variables need a kernel "
        "restarted with `ipyrepro kernel install --portable`",
    )


def _no_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def _seed_arguments(seed: argparse.ArgumentParser) -> None:
    from ..core import arguments  # only when a line has options to parse

    seed.add_argument("seed", type=arguments.seed)


def _reseed_arguments(reseed: argparse.ArgumentParser) -> None:
    reseed.add_argument("mode", choices=RESEED_MODES)


def _env_arguments(env: argparse.ArgumentParser) -> None:
    env_format = env.add_mutually_exclusive_group()
    env_format.add_argument(
        "--json", action="store_true", default=BARE["env"]["json"], help="print machine-readable JSON"
    )
    env_format.add_argument(
        "--markdown",
        action="store_true",
        default=BARE["env"]["markdown"],
        help="print a Markdown table for a paper or an issue",
    )


def _check_arguments(check: argparse.ArgumentParser) -> None:
    from .checkmagic import check_arguments

    check_arguments(check)


ON_DESCRIPTION = (
    "An option left out keeps the value in force (a second `on`), else takes the kernel's "
    "(IPYREPRO_SEED, IPYREPRO_RESEED, IPYREPRO_DETERMINISTIC), else the built-in default."
)
# name -> (help, description, adds its arguments); `%repro -h` lists them in this order.
COMMANDS: dict[str, tuple[str, str | None, Callable[[argparse.ArgumentParser], None]]] = {
    "status": ("what is in force now, and warnings (the default)", None, _status_arguments),
    "on": ("apply the full recipe and re-seed before each cell", ON_DESCRIPTION, _on_arguments),
    "off": ("restore everything to what it was before `on`", None, _no_arguments),
    "seed": ("seed every RNG now; also the base seed for re-seeding", None, _seed_arguments),
    "reseed": ("set the re-seed mode before each cell", None, _reseed_arguments),
    "panel": ("a control panel (widgets) in Jupyter; the text status in a terminal", None, _no_arguments),
    "env": ("versions, GPU, CPU, flags and env vars that decide reproducibility", None, _env_arguments),
    "check": (
        "run this notebook's saved file (or PATH) in fresh kernels and compare, as `ipyrepro check`",
        "PATH defaults to the notebook this kernel belongs to (JPY_SESSION_NAME, or VS Code's __vsc_ipynb_file__). "
        "Save first: the check runs the file on disk.",
        _check_arguments,
    ),
}


def build_parser() -> argparse.ArgumentParser:
    """The whole `%repro` parser: for `%repro -h` and for a line that starts with no known subcommand."""
    parser = _Parser(prog="%repro", description="Reproducible PyTorch notebooks. With no subcommand: status.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, (help_text, description, add_arguments) in COMMANDS.items():
        add_arguments(commands.add_parser(name, help=help_text, description=description))
    return parser


def build_command_parser(name: str) -> argparse.ArgumentParser:
    """One subcommand's parser, the same as its part of `build_parser` (prog, help, errors), at a tenth of
    the cost: `%repro on` in a fresh kernel builds only this (issue 23's start-up budget)."""
    _help_text, description, add_arguments = COMMANDS[name]
    parser = _Parser(prog=f"%repro {name}", description=description)
    add_arguments(parser)
    parser.set_defaults(command=name)
    return parser


def _names(text: str) -> list[str]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    bad = [name for name in names if not name.isidentifier() or keyword.iskeyword(name)]
    if not names or bad:
        raise argparse.ArgumentTypeError(f"invalid --vars {text!r}: Python names separated by commas, e.g. loss,model")
    return names


def build_cell_parser() -> argparse.ArgumentParser:
    from ..core import arguments  # only when a line has options to parse

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
    parser.add_argument(
        "--trace-ops",
        action="store_true",
        help="record a digest of every torch op in each run and name the first op whose output differs",
    )
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


class ReproMagics:
    """The `%repro` and `%%repro` magics, a thin face over one ReproState.

    Registered as magic functions (`register`), not as an IPython `Magics` subclass: defining and
    creating a traitlets class would cost a fresh kernel's `%load_ext ipyrepro` a tenth of its budget.
    """

    def __init__(self, shell: Any, *, state: ReproState) -> None:
        self.shell = shell
        self.state = state
        self._parsers: dict[str, argparse.ArgumentParser] = {}

    def register(self) -> None:
        self.shell.register_magic_function(self.repro, "line", "repro")
        self.shell.register_magic_function(self.repro_cell, "cell", "repro")

    def _parser(self, name: str) -> argparse.ArgumentParser:
        """Built on first use: a fresh kernel's `%load_ext ipyrepro` + `%repro on` builds just `on`'s."""
        if name not in self._parsers:
            build = {"%repro": build_parser, "%%repro": build_cell_parser}.get(name)
            self._parsers[name] = build() if build else build_command_parser(name)
        return self._parsers[name]

    def repro(self, line: str = "") -> Any:
        """Reproducible PyTorch notebooks.

        %repro                        status: what is in force now, and warnings
        %repro status [--json]        the same; --json for machines
        %repro on [--seed N] [--[no-]warn-only] [--cublas :4096:8|:16:8] [--reseed cell|source|fixed|off]
        %repro off                    restore everything to what it was before `on`
        %repro seed N                 seed every RNG now (and use N as the base seed)
        %repro reseed cell|source|fixed|off  re-seed mode before each cell
        %repro panel                  a control panel in Jupyter (the text status in a terminal)
        %repro env [--json|--markdown] the environment report: versions, GPU, CPU, flags, env vars
        %repro check [PATH] [options]  run this notebook's saved file in fresh kernels and compare

        `%repro on -h` (and so on) explains each option.
        """
        words = line.split() or ["status"]
        try:
            if len(words) == 1 and words[0] in BARE:  # nothing to parse
                args = argparse.Namespace(command=words[0], **BARE[words[0]])
            elif words[0] in COMMANDS:
                args = self._parser(words[0]).parse_args(words[1:])
            else:
                args = self._parser("%repro").parse_args(words)
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
        if getattr(args, "json", False):
            print(self.state.status().to_json())
            return None
        return self.state.status_once()

    def _on(self, args: argparse.Namespace) -> None:
        status = self.state.enable(
            args.seed, warn_only=args.warn_only, cublas=args.cublas, reseed=args.reseed, portable=args.portable
        )
        algorithms = algorithms_text(status.deterministic_algorithms)
        print(
            f"ipyrepro ON: seed {status.seed}, re-seed {status.reseed}, deterministic algorithms: {algorithms}, "
            f"CUBLAS_WORKSPACE_CONFIG={status.cublas_workspace_config}"
            f"{'' if status.torch_imported else f' ({PENDING_TEXT})'}. `%repro` shows status; `%repro off` restores."
        )
        for note in status.setup_notes():
            if note in self.state.notes_shown:  # each note at most once per kernel
                continue
            if not (args.portable and note.startswith(PORTABLE_NOTE_START)):  # the profile's own text says it
                self.state.notes_shown.add(note)
                print(f"Note: {note}")
        if args.portable:
            print(self.state.portable_report.text())

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
            return self.state.status_once()
        from IPython.display import display

        display(panel(self.state))
        return None

    def _check(self, args: argparse.Namespace) -> Any:
        from .checkmagic import check_here, options_from

        return check_here(self.shell, self.state, args.path, **options_from(args))

    def _reseed(self, args: argparse.Namespace) -> None:
        self.state.set_reseed(args.mode)
        print(f"Re-seed before each cell: {args.mode}.")

    def repro_cell(self, line: str, cell: str) -> Any:
        """Rerun this cell and compare the results: is it reproducible, and if not, what differs and why?

        %%repro [--runs N] [--seed S] [--rtol R] [--atol A] [--vars a,b] [--no-restore]
                [--save FILE | --check FILE]

        Every run starts from the same seed and the same namespace; afterwards the
        namespace is as after one run. Returns a report with `.ok` and `.differences`.
        `%%repro -h` explains each option.
        """
        from ..core.userfiles import PathProblem, validate_source

        try:
            args = self._parser("%%repro").parse_args(shlex.split(line))
        except _HelpShown:
            return None
        except ValueError as error:  # shlex: an unclosed quote
            raise UsageError(f"%%repro: cannot read the options {line!r}: {error}") from error
        try:  # a FIFO or a device is refused at once, before torch and the engine are imported
            if args.check is not None:
                validate_source(args.check, "fingerprint file")
        except PathProblem as error:
            raise UsageError(f"%%repro: {error}") from None
        from ..rerun.cell import rerun_cell

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
                trace_ops=args.trace_ops,
            )
        except ValueError as error:  # bad files and arguments, found before anything ran
            if not _raised_by_ipyrepro(error):  # a library's or a seeder plugin's error is reported as itself
                raise
            raise UsageError(f"%%repro: {error}") from error
