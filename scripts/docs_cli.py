"""MkDocs hook: the CLI reference page (`cli.md`), written from `ipyrepro.cli.build_parser()` at every build.

Nothing is copied by hand, so an option added to a parser is on the site at the next build: every
subcommand (and sub-subcommand, `kernel install`), its usage line, its description and a table of its
arguments and options with their choices, defaults and help, exactly as `ipyrepro COMMAND --help` has them.
The page is generated in memory (no file in docs/ to keep in sync).
"""

from __future__ import annotations

import argparse
from typing import Any

PAGE = "cli.md"
INTRO = (
    "# CLI reference\n\n"
    "Every command of `ipyrepro` and every option, read from the command line's own parsers when this site was "
    "built, so it is the same as `ipyrepro COMMAND --help`. The commands call the Python API "
    "([API reference](api.md)); what they are for: [checking notebooks](checking-notebooks.md), "
    "[across machines](across-machines.md), [the environment report](environment.md).\n"
)


def on_files(files: Any, config: Any, **_: Any) -> Any:
    """Add the generated page to the site's files (`nav` in mkdocs.yml names it)."""
    from mkdocs.structure.files import File

    files.append(File.generated(config, PAGE, content=reference()))
    return files


def reference() -> str:
    """The whole page as Markdown."""
    from ipyrepro.cli import build_parser

    parser = build_parser()
    _attach_summaries(parser)
    sections = [INTRO, _section("ipyrepro", parser, level=2)]
    sections += [_section(name, sub, level) for name, sub, level in _commands("ipyrepro", parser, 2)]
    return "\n".join(sections)


def _commands(prefix: str, parser: argparse.ArgumentParser, level: int) -> list[tuple[str, Any, int]]:
    """(full name, parser, heading level) of every subcommand, depth first, in the order `--help` lists them."""
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                full = f"{prefix} {name}"
                found.append((full, sub, level))
                found += _commands(full, sub, level + 1)
    return found


def _section(name: str, parser: argparse.ArgumentParser, level: int) -> str:
    formatter = parser._get_formatter()
    lines = [f"{'#' * level} `{name}`", ""]
    summary = _summary(parser)
    if summary:
        lines += [_escape(summary), ""]
    lines += ["```text", " ".join(parser.format_usage().split()), "```", ""]
    if parser.description:
        lines += [_escape(parser.description), ""]
    rows = [_row(action, formatter) for action in parser._actions if not isinstance(action, argparse._HelpAction)]
    rows = [row for row in rows if row]
    if rows:
        lines += ["| argument or option | values | default | what it does |", "|---|---|---|---|", *rows, ""]
    return "\n".join(lines)


def _summary(parser: argparse.ArgumentParser) -> str | None:
    """The help line the parent parser shows for this subcommand."""
    summary = getattr(parser, "_ipyrepro_summary", None)
    return summary.replace("%%", "%") if summary else None


def _row(action: argparse.Action, formatter: argparse.HelpFormatter) -> str | None:
    if isinstance(action, argparse._SubParsersAction):
        names = ", ".join(f"`{choice}`" for choice in action.choices)
        return f"| `{action.metavar or action.dest}` | {names} | | the subcommand (sections below) |"
    names = ", ".join(f"`{option}`" for option in action.option_strings) or f"`{action.metavar or action.dest}`"
    if action.choices is not None:
        values = ", ".join(f"`{choice}`" for choice in action.choices)
    elif action.nargs == 0:
        values = "(a switch)"
    else:
        values = f"`{action.metavar or action.dest.upper()}`"
    unset = action.default is None or action.default is False or action.default == argparse.SUPPRESS
    default = "" if unset or action.nargs == 0 else f"`{action.default}`"
    help_text = formatter._expand_help(action) if action.help else ""
    return f"| {names} | {values} | {default} | {_escape(help_text)} |"


def _escape(text: str) -> str:
    """Markdown-safe in a table cell: pipes escaped, no line breaks."""
    return " ".join(text.split()).replace("|", "\\|")


def _attach_summaries(parser: argparse.ArgumentParser) -> None:
    """Let each subparser know the help line its parent gives it (argparse keeps it only on the parent)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help for choice in action._choices_actions}
            for name, sub in action.choices.items():
                sub._ipyrepro_summary = helps.get(name)  # type: ignore[attr-defined]
                _attach_summaries(sub)
