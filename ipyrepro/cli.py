"""`ipyrepro ...`: the command line for scripts and CI; parses and calls the same API."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def _status(args: argparse.Namespace) -> int:
    from . import status

    report = status()
    print(report.to_json() if args.json else report)
    return 0


def _env(args: argparse.Namespace) -> int:
    from . import env_report

    report = env_report()
    print(report.to_json() if args.json else report.to_markdown() if args.markdown else report)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ipyrepro", description="Reproducible PyTorch notebooks.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    status = commands.add_parser("status", help="the determinism settings this Python process starts with")
    status.add_argument("--json", action="store_true", help="print machine-readable JSON")
    status.set_defaults(handler=_status)

    env = commands.add_parser("env", help="versions, GPU, CPU, flags and env vars that decide reproducibility")
    env_format = env.add_mutually_exclusive_group()
    env_format.add_argument("--json", action="store_true", help="print machine-readable JSON")
    env_format.add_argument("--markdown", action="store_true", help="print a Markdown table for a paper or an issue")
    env.set_defaults(handler=_env)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Exit 0 on success, 1 when a check found differences, 2 on usage or execution errors."""
    parser = build_parser()
    args = parser.parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
