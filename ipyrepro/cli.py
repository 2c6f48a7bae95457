"""`ipyrepro ...`: the command line for scripts and CI; parses and calls the same API."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .core import arguments


def _status(args: argparse.Namespace) -> int:
    import torch  # noqa: F401  (the settings a new process starts with, CUDA's availability included: torch's)

    from . import status

    report = status()
    print(report.to_json() if args.json else report)
    return 0


def _env(args: argparse.Namespace) -> int:
    from . import env_report

    report = env_report()
    print(report.to_json() if args.json else report.to_markdown() if args.markdown else report)
    return 0


def _kernel_install(args: argparse.Namespace) -> int:
    from .notebooks.kernelspec import install

    folder = install(
        args.name,
        display_name=args.display_name,
        seed=args.seed,
        cublas=args.cublas,
        reseed=args.reseed,
        user=args.user,
        prefix=args.prefix,
        force=args.force,
        portable=args.portable,
    )
    portable = ""
    if args.portable:
        from .core.portable import start_variables

        pinned = ", ".join(f"{name}={value}" for name, value in start_variables().items())
        portable = f", the portable profile's start variables ({pinned})"
    print(
        f"Installed kernelspec {args.name!r} in {folder}: PYTHONHASHSEED={args.seed}, "
        f"CUBLAS_WORKSPACE_CONFIG={args.cublas}{portable}, and `%repro on --seed {args.seed} --reseed {args.reseed}"
        f"{' --portable' if args.portable else ''}` before the first cell (IPYREPRO_SEED and IPYREPRO_RESEED too, "
        "so a notebook's own `%repro on` keeps them). Pick it in Jupyter's kernel list."
    )
    return 0


def _kernel_uninstall(args: argparse.Namespace) -> int:
    from .notebooks.kernelspec import uninstall

    print(f"Removed kernelspec {args.name!r} from {uninstall(args.name, prefix=args.prefix)}.")
    return 0


def _check(args: argparse.Namespace) -> int:
    from .core.userfiles import expand
    from .notebooks.discover import several

    for option in ("save", "against", "html", "junit"):  # an unset $BASELINE in CI must fail loudly
        if getattr(args, option) is not None:
            expand(getattr(args, option), f"--{option}")
    if args.strict and not args.against_saved:
        args.check_parser.error("argument --strict: it applies to --against-saved (the outputs saved in the notebook)")
    if several(args.notebook):
        return _check_many(args)
    return _check_one(args, args.notebook[0])


def _check_many(args: argparse.Namespace) -> int:
    """Several paths or a folder: every notebook's report, then the summary table (notebooks/many.py)."""
    from .core.userfiles import PathProblem, validate_target
    from .notebooks.discover import find_notebooks, refuse_inputs
    from .notebooks.htmlindex import planned_files, validate_folder, write_reports
    from .notebooks.many import check_many
    from .notebooks.progress import terminal_progress

    for option in ("save", "against"):
        if getattr(args, option) is not None:
            args.check_parser.error(f"argument --{option}: a fingerprint is one notebook's; name one notebook")
    runs = _check_runs(args)
    try:  # before any kernel starts: reports that cannot be written would waste the runs
        html = validate_folder(args.html) if args.html is not None else None
        junit = validate_target(args.junit, "--junit") if args.junit is not None else None
    except PathProblem as error:
        raise ValueError(str(error)) from None
    notebooks = find_notebooks(args.notebook)  # inputs are only read: no output may be one of them
    if junit is not None:
        refuse_inputs(junit, notebooks, "--junit")
    for page in planned_files(html, notebooks) if html is not None else ():
        refuse_inputs(page, notebooks, "--html")
    with terminal_progress(sys.stderr, quiet=args.quiet) as progress:
        many = check_many(args.notebook, jobs=args.jobs, progress=progress, **_check_options(args, runs))
    print(many.to_json() if args.json else many)
    if junit is not None:
        from .notebooks.junit import write_junit

        write_junit([(result.report, result.seconds) for result in many.results if result.report is not None], junit)
    if html is not None:
        index = write_reports(many, html)
        if not args.json:
            print(f"HTML reports: {index}")
    return many.exit_code


def _check_runs(args: argparse.Namespace) -> int:
    runs = args.runs if args.runs is not None else 1 if args.against_saved else 2
    if runs < 2 and not args.against_saved:
        args.check_parser.error(
            f"argument --runs: invalid run count '{runs}': 2 or more (one run has nothing to compare with; "
            "--against-saved compares one run with the saved outputs)"
        )
    return runs


def _check_options(args: argparse.Namespace, runs: int) -> dict[str, object]:
    """`check`'s options from the command line (all but the notebook, the progress and --jobs)."""
    return {
        "runs": runs,
        "seed": args.seed,
        "as_is": args.as_is,
        "kernel": args.kernel,
        "timeout": args.timeout or None,
        "sanitize": args.sanitize,
        "rtol": args.rtol,
        "atol": args.atol,
        "cublas": args.cublas,
        "reseed": args.reseed,
        "causes": not args.no_causes,
        "trace_ops": args.trace_ops,
        "portable": args.portable,
        "stop_on_error": args.stop_on_error,
        "against_saved": args.against_saved,
        "state": not args.no_state,
        "strict": args.strict,
    }


def _check_one(args: argparse.Namespace, notebook: str) -> int:
    import time

    from .core.userfiles import validate_outputs

    # First, before any kernel or heavy import: no empty path, no output over an input, every output writable.
    outputs = {"--save": args.save, "--html": args.html, "--junit": args.junit}
    targets = validate_outputs(outputs, {"the notebook": notebook, "--against": args.against})
    html, junit = targets.get("--html"), targets.get("--junit")
    from .notebooks.check import check
    from .notebooks.fingerprint import FingerprintError
    from .notebooks.notebookfile import NotebookError
    from .notebooks.progress import terminal_progress

    runs = _check_runs(args)
    started = time.monotonic()
    try:
        with terminal_progress(sys.stderr, quiet=args.quiet) as progress:
            report = check(
                notebook,
                progress=progress,
                jobs=args.jobs,
                save=args.save,
                against=args.against,
                **_check_options(args, runs),
            )
    except (NotebookError, FingerprintError) as error:
        print(f"ipyrepro check: {error}", file=sys.stderr)
        return 2
    print(report.to_json() if args.json else report)
    if junit is not None:
        from .notebooks.junit import write_junit

        write_junit([(report, time.monotonic() - started)], junit)
    if html is not None:
        from .notebooks.htmlreport import write_html

        write_html(report, html)
        if not args.json:
            print(f"HTML report: {html}")
    return report.exit_code


def _lint(args: argparse.Namespace) -> int:
    from .notebooks.lint import lint

    report = lint(args.notebook, random=args.random)
    print(report.to_json() if args.json else report)
    return report.exit_code


def _add_lint_command(commands: argparse._SubParsersAction) -> None:
    lint = commands.add_parser(
        "lint",
        help="static check of saved notebooks, no kernel: out-of-order counts, cells never run, names read "
        "before any cell above binds them, outputs of another kernel",
        description="Reads the files only; nothing runs. Exit 0 when clean, 1 on findings, 2 on usage errors "
        "(a notebook that cannot be read).",
    )
    lint.add_argument(
        "notebook",
        nargs="+",
        metavar="PATH",
        help="notebooks and folders (searched as `ipyrepro check` searches them)",
    )
    lint.add_argument(
        "--random",
        action="store_true",
        help="also name randomness visible in the code (torch.randn, np.random.*, random.*, nn.Linear, ...) with "
        "no seed call above it (off by default: a notebook run in the reproducible kernel is seeded by it)",
    )
    lint.add_argument("--json", action="store_true", help="print the findings as JSON")
    lint.set_defaults(handler=_lint)


def _explain(args: argparse.Namespace) -> int:
    import json
    import os

    from .notebooks.fingerprint import FingerprintError, compare, load

    try:
        first, second = load(args.first), load(args.second)
    except FingerprintError as error:
        print(f"ipyrepro explain: {error}", file=sys.stderr)
        return 2
    result = compare(first, second, (os.path.basename(args.first), os.path.basename(args.second)))
    print(json.dumps(result.to_dict(), indent=2, allow_nan=False) if args.json else result)
    return result.exit_code


def _add_reseed_option(parser: argparse.ArgumentParser, default: str | None, where: str) -> None:
    from .core.validation import RESEED_MODES

    parser.add_argument(
        "--reseed",
        choices=RESEED_MODES,
        default=default,
        help="re-seed before each cell: cell = a seed per cell id (from the code when no id is sent), source = a "
        f"seed from the cell's code, the same in every frontend, fixed = the base seed, off = none. {where}",
    )


def _add_check_command(commands: argparse._SubParsersAction) -> None:
    from .core.validation import DETERMINISTIC_CUBLAS_VALUES

    check = commands.add_parser(
        "check",
        help="run notebooks several times in fresh kernels and compare outputs cell by cell",
        description="Exit 0 when every cell matched and nothing unexpected raised; 1 when outputs differed; 2 when "
        "a cell not tagged raises-exception raised, a run ended early, or on usage errors (2 wins over 1). "
        "A cell that raises does not stop its run: errors are compared like any other output. With several "
        "notebooks (or a folder) each report is printed, then a summary table, and the exit status is the worst.",
    )
    check.add_argument(
        "notebook",
        nargs="+",
        metavar="PATH",
        help="notebooks (.ipynb, or jupytext .py/.md with `pip install 'ipyrepro[jupytext]'`) and folders, searched "
        "recursively in sorted order, skipping .ipynb_checkpoints and hidden folders (only read, never modified)",
    )
    check.add_argument(
        "--runs",
        type=arguments.runs,
        default=None,
        help="how many fresh kernels to run it in (2 or more; default 2; with --against-saved 1 or more, default 1)",
    )
    check.add_argument(
        "--against-saved",
        action="store_true",
        help="compare each run with the outputs saved in the notebook (what nbval checks), run as the notebook "
        "was saved (as written, unless saved under ipyrepro); differences this machine explains (versions, "
        "devices, figure sizes, paths, timings, missing packages) are reported apart and do not fail the check",
    )
    check.add_argument(
        "--strict",
        action="store_true",
        help="with --against-saved: no built-in environment patterns, and outputs saved without an execution "
        "count are not compared",
    )
    check.add_argument(
        "--stop-on-error",
        action="store_true",
        help="end a run at the first cell not tagged raises-exception that raises, and compare only the runs "
        "that reached the end (default: go on, and compare every cell that ran)",
    )
    check.add_argument(
        "--seed",
        type=arguments.seed,
        default=None,
        help="the seed for `%%repro on` and PYTHONHASHSEED (default: the kernel's, i.e. IPYREPRO_SEED in its "
        "kernelspec or the seed `ipyrepro kernel install` wrote, else 0)",
    )
    check.add_argument(
        "--as-is",
        action="store_true",
        default=None,
        help="run the notebook untouched: no env vars, no `%%repro on` (default: as the reproducible kernel would; "
        "with --against-saved, as the notebook was saved)",
    )
    check.add_argument("--kernel", help="kernelspec to run (default: the notebook's, else python3)")
    _add_reseed_option(
        check,
        None,
        "Default: the kernel's (IPYREPRO_RESEED in its kernelspec, or the mode `ipyrepro kernel install` wrote), "
        "else cell; ignored with --as-is",
    )
    check.add_argument(
        "--jobs",
        type=arguments.jobs,
        default=None,
        metavar="N",
        help="how many fresh kernels run at once, over all the notebooks (default: as many as --runs for each "
        "notebook, capped by the CPUs); the reports are the same for any N",
    )
    check.add_argument(
        "--cublas",
        choices=DETERMINISTIC_CUBLAS_VALUES,
        default=DETERMINISTIC_CUBLAS_VALUES[0],
        help="CUBLAS_WORKSPACE_CONFIG for the kernels (default :4096:8; ignored with --as-is)",
    )
    check.add_argument(
        "--timeout",
        type=arguments.timeout,
        default=600,
        help="seconds a cell may run before the run is stopped (default 600; 0 = no limit)",
    )
    check.add_argument(
        "--sanitize",
        action="append",
        default=[],
        metavar="REGEX",
        help="also replace matches of REGEX before comparing (repeatable); addresses, %%time "
        "timings and temp paths are always replaced",
    )
    check.add_argument(
        "--rtol",
        type=arguments.tolerance,
        default=0.0,
        help="relative tolerance for numbers inside text outputs and floating-point state (default 0: exact)",
    )
    check.add_argument(
        "--atol",
        type=arguments.tolerance,
        default=0.0,
        help="absolute tolerance for numbers inside text outputs and floating-point state (default 0: exact)",
    )
    check.add_argument(
        "--no-causes",
        action="store_true",
        help="when something differs, do not run the one extra kernel that names each cause at its line",
    )
    check.add_argument(
        "--save",
        metavar="FILE.json",
        help="when the runs agree, write the notebook's fingerprint: per-cell output digests and the numerics "
        "environment (docs/across-machines.md)",
    )
    check.add_argument(
        "--against",
        metavar="FILE.json",
        help="compare this machine's run with a fingerprint written by --save, and explain the environment "
        "differences; exit 1 when a cell differs",
    )
    check.add_argument(
        "--trace-ops",
        action="store_true",
        help="with --save/--against: record a digest of every torch op (inputs, outputs, line) to name the first "
        "op that differs",
    )
    check.add_argument(
        "--portable",
        action="store_true",
        help="run the kernels under the portable profile (common CPU kernels, fixed threads, no TF32)",
    )
    check.add_argument(
        "--no-state",
        action="store_true",
        help="do not digest each kernel's state after every cell: compare outputs only (no first divergence)",
    )
    check.add_argument("--json", action="store_true", help="print the report as JSON")
    check.add_argument(
        "--html",
        metavar="REPORT.html",
        help="also write the report as one self-contained web page: each cell's source, differences side by side, "
        "images that differ with a heat map, causes linked to their lines; with several notebooks, a folder that "
        "gets one report per notebook and an index.html",
    )
    check.add_argument(
        "--junit",
        metavar="FILE.xml",
        help="also write a JUnit XML file for CI (GitHub, GitLab, Jenkins): a testcase per compared cell, a failure "
        "per differing cell with the diff, an error per unexpected exception",
    )
    check.add_argument(
        "--quiet",
        action="store_true",
        help="no progress on stderr (by default: a live line per run on a terminal; elsewhere a line per run start "
        "and end, and one per cell slower than 5 s)",
    )
    check.set_defaults(handler=_check, check_parser=check)


def _add_kernel_commands(commands: argparse._SubParsersAction) -> None:
    from .core.validation import DETERMINISTIC_CUBLAS_VALUES
    from .notebooks.kernelspec import DEFAULT_NAME

    kernel = commands.add_parser("kernel", help="install or remove a Jupyter kernel reproducible from its start")
    actions = kernel.add_subparsers(dest="kernel_command", metavar="ACTION", required=True)
    install = actions.add_parser(
        "install", help="write a kernelspec that sets PYTHONHASHSEED and CUBLAS_WORKSPACE_CONFIG and runs %%repro on"
    )
    install.add_argument("--name", default=DEFAULT_NAME, help=f"kernelspec name (default {DEFAULT_NAME})")
    install.add_argument("--display-name", help="name shown in Jupyter (default: 'Python 3 (ipyrepro, seed N)')")
    install.add_argument("--seed", type=arguments.seed, default=0, help="base seed and PYTHONHASHSEED (default 0)")
    install.add_argument(
        "--cublas",
        choices=DETERMINISTIC_CUBLAS_VALUES,
        default=DETERMINISTIC_CUBLAS_VALUES[0],
        help="CUBLAS_WORKSPACE_CONFIG (default :4096:8; :16:8 uses less GPU memory)",
    )
    _add_reseed_option(install, "cell", "Written into the kernelspec (default cell)")
    where = install.add_mutually_exclusive_group()
    where.add_argument("--user", action="store_true", help="install for this user (the default)")
    where.add_argument("--prefix", metavar="DIR", help="install into DIR/share/jupyter/kernels, e.g. a virtualenv")
    install.add_argument("--force", action="store_true", help="replace an existing kernelspec of that name")
    install.add_argument(
        "--portable",
        action="store_true",
        help="the portable profile: pin CPU kernels and threads in the kernel's environment, TF32 off",
    )
    install.set_defaults(handler=_kernel_install)
    uninstall = actions.add_parser("uninstall", help="remove a kernelspec that `ipyrepro kernel install` wrote")
    uninstall.add_argument("name", help="the kernelspec name")
    uninstall.add_argument("--prefix", metavar="DIR", help="the --prefix it was installed with")
    uninstall.set_defaults(handler=_kernel_uninstall)


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

    _add_kernel_commands(commands)
    _add_check_command(commands)
    _add_lint_command(commands)
    explain = commands.add_parser(
        "explain",
        help="compare two fingerprints without running anything: is bitwise equality expected, and what differs",
        description="Exit 0 when the two are equivalent (bitwise equality expected and recorded outputs equal), "
        "1 when they differ, 2 when a file cannot be read.",
    )
    explain.add_argument("first", metavar="A.json", help="a fingerprint (`ipyrepro check NB --save A.json`)")
    explain.add_argument("second", metavar="B.json", help="another fingerprint")
    explain.add_argument("--json", action="store_true", help="print the comparison as JSON")
    explain.set_defaults(handler=_explain)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Exit 0 on success, 1 when a check found differences, 2 on usage or execution errors."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except (ValueError, LookupError, FileExistsError) as error:  # bad input: say why, change nothing
        command = " ".join(filter(None, (args.command, getattr(args, "kernel_command", None))))
        print(f"ipyrepro {command}: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
