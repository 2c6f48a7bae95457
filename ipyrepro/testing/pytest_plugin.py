"""pytest plugin: notebooks as reproducibility tests, torch for pytest-randomly, a `repro` marker, and `resume_check`.

`pytest --ipyrepro notebooks/` collects every .ipynb file and checks it with `ipyrepro check`
semantics; each code cell is one test item (nbval's granularity) whose verdict is that cell's
share of one check of the whole notebook. Loaded by pytest in every session (a `pytest11`
entry point), so it imports only pytest and the standard library until one of its features
is used: no torch, no kernels.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from ..core.state import ReproState
    from ..notebooks.notebookfile import Cell
    from ..notebooks.report import CellResult, CheckReport

SEED_LIMIT = 2**32  # ipyrepro's seeds (and its seeder plugins') are 0 <= seed < 2**32


# -- options: `--ipyrepro-NAME` on the command line, `ipyrepro_NAME` in the ini file ------------


def _lazy(module: str, name: str) -> Callable[[str], Any]:
    """An argparse type that imports ipyrepro's own parser only when the option is given."""

    def parse(text: str) -> Any:
        from importlib import import_module

        return getattr(import_module(f"ipyrepro.core.{module}"), name)(text)

    parse.__name__ = name
    return parse


def _reseed_mode(text: str) -> str:
    from ..core.seeding import validate_reseed_mode  # the modes `ipyrepro check` and `%repro` accept

    try:
        return validate_reseed_mode(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


@dataclass(frozen=True)
class _Option:
    name: str  # --ipyrepro-NAME, ipyrepro_NAME
    parse: Callable[[str], Any] | None  # None: a flag (--ipyrepro-as-is) or a list (--ipyrepro-sanitize)
    help: str
    metavar: str | None = None


OPTIONS = (
    _Option("runs", _lazy("arguments", "runs"), "fresh kernels per notebook (default 2)", "N"),
    _Option(
        "seed",
        _lazy("arguments", "seed"),
        "seed for `%%repro on` and PYTHONHASHSEED (default: the kernel's, as `ipyrepro check`, else 0)",
        "N",
    ),
    _Option("reseed", _reseed_mode, "re-seed mode before each cell (default: the kernel's own, else cell)", "MODE"),
    _Option("rtol", _lazy("arguments", "tolerance"), "relative tolerance for numbers in text outputs (default 0)", "X"),
    _Option("atol", _lazy("arguments", "tolerance"), "absolute tolerance for numbers in text outputs (default 0)", "X"),
    _Option(
        "sanitize",
        None,
        "also replace matches of REGEX before comparing (repeatable; in the ini file one per line)",
        "REGEX",
    ),
    _Option("timeout", _lazy("arguments", "timeout"), "seconds a cell may run (default 600; 0 = no limit)", "SECONDS"),
    _Option("kernel", str, "kernelspec to run (default: the notebook's, else python3)", "NAME"),
    _Option(
        "as_is",
        None,
        "run notebooks untouched: no env vars, no `%%repro on` (default: under ipyrepro; against the saved outputs, "
        "as each notebook was saved)",
    ),
    _Option(
        "against_saved",
        None,
        "compare each run with the outputs saved in the notebook (default runs 1); differences this machine explains "
        "(versions, devices, figure sizes, paths, timings, missing packages) do not fail",
    ),
    _Option("strict", None, "with --ipyrepro-against-saved: no built-in environment patterns"),
    _Option("no_state", None, "compare outputs only: no state digests after each cell, no first divergence"),
)
FLAGS = ("as_is", "against_saved", "strict")  # true/false options: a flag on the command line, a bool in the ini file


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("ipyrepro", "ipyrepro: notebooks as reproducibility tests")
    group.addoption(
        "--ipyrepro",
        action="store_true",
        default=False,
        help="collect .ipynb files; run each in fresh kernels as `ipyrepro check` does; one test per code cell",
    )
    for option in OPTIONS:
        flag = f"--ipyrepro-{option.name.replace('_', '-')}"
        dest = f"ipyrepro_{option.name}"
        if option.name in FLAGS:
            group.addoption(flag, action="store_true", default=None, dest=dest, help=option.help)
            parser.addini(dest, option.help.replace("%%", "%"), type="bool", default=False)
        elif option.name == "sanitize":
            group.addoption(flag, action="append", default=[], dest=dest, metavar=option.metavar, help=option.help)
            parser.addini(dest, option.help.replace("%%", "%"), type="linelist", default=[])
        else:
            group.addoption(flag, type=option.parse, dest=dest, metavar=option.metavar, help=option.help)
            parser.addini(dest, option.help.replace("%%", "%"), default="")  # argparse un-doubles %% itself
    group.addoption(
        "--ipyrepro-html",
        metavar="DIR",
        dest="ipyrepro_html",
        help="write each checked notebook's report as a web page into DIR (as `ipyrepro check --html` does)",
    )


@dataclass(frozen=True)
class CheckOptions:
    """The keyword arguments for `notebooks.check.check`, resolved and validated once per process."""

    kwargs: dict[str, Any]

    @classmethod
    def from_config(cls, config: pytest.Config) -> CheckOptions:
        """Command line first, then the ini file; any bad value is a usage error before a kernel starts."""
        kwargs: dict[str, Any] = {}
        for option in OPTIONS:
            dest = f"ipyrepro_{option.name}"
            given = config.getoption(dest)
            if option.name == "no_state":
                if given or config.getini(dest):
                    kwargs["state"] = False  # shown in the header only when given
            elif option.name in FLAGS:
                kwargs[option.name] = bool(given) or bool(config.getini(dest))
                if option.name == "as_is" and not kwargs["as_is"]:
                    kwargs["as_is"] = None  # not given: check() decides (against saved: as the notebook was saved)
            elif option.name == "sanitize":
                kwargs["sanitize"] = [*config.getini(dest), *given]
            elif given is not None:
                kwargs[option.name] = given
            elif str(config.getini(dest)).strip():
                raw = str(config.getini(dest)).strip()
                try:
                    kwargs[option.name] = option.parse(raw)
                except (argparse.ArgumentTypeError, ValueError) as error:
                    raise pytest.UsageError(f"ini option {dest} = {raw!r}: {error}") from None
        if kwargs["against_saved"]:
            kwargs.setdefault("runs", 1)
        elif kwargs.get("runs", 2) < 2:
            raise pytest.UsageError(
                f"--ipyrepro-runs {kwargs['runs']} compares nothing; give 2 or more (or --ipyrepro-against-saved)"
            )
        if "timeout" in kwargs:
            kwargs["timeout"] = kwargs["timeout"] or None  # 0 = no limit, as in `ipyrepro check`
        from ..notebooks.outputs import Comparison

        try:  # the same validation `check` does first, so a bad regex stops the session, not each notebook
            Comparison.build(kwargs["sanitize"], kwargs.get("rtol", 0.0), kwargs.get("atol", 0.0))
        except ValueError as error:
            raise pytest.UsageError(str(error).replace("--sanitize", "--ipyrepro-sanitize")) from None
        return cls(kwargs)


_OPTIONS_KEY = pytest.StashKey[CheckOptions]()
_CHECKPOINT_KEY = pytest.StashKey[Any]()  # a state.Checkpoint
_MARKER_SEED_KEY = pytest.StashKey[int]()
_HTML_KEY = pytest.StashKey[Path]()


def _html_folder(text: str) -> Path:
    """The folder for --ipyrepro-html, created now; a path that cannot be one (or an empty one: an unset
    variable) is a usage error."""
    from ..core.userfiles import PathProblem, expand

    try:
        folder = expand(text, "--ipyrepro-html")
    except PathProblem as error:
        raise pytest.UsageError(str(error)) from None
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise pytest.UsageError(f"--ipyrepro-html {text!r}: cannot use it as a folder ({error.strerror})") from None
    return folder


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "repro(seed=None, warn_only=None): run this test under ipyrepro's full recipe (`ipyrepro.enable`), "
        "seeded right before it runs; everything is restored afterwards, even when it fails. A setting left "
        "out is enable()'s: IPYREPRO_SEED / IPYREPRO_DETERMINISTIC, else seed 0 and raising",
    )
    if config.getoption("ipyrepro"):
        config.stash[_OPTIONS_KEY] = CheckOptions.from_config(config)
        html = config.getoption("ipyrepro_html")
        if html is not None:
            config.stash[_HTML_KEY] = _html_folder(html)
        if config.pluginmanager.hasplugin("xdist") and config.getoption("dist") == "worksteal":
            config.issue_config_time_warning(
                pytest.PytestConfigWarning(
                    "--dist worksteal can split a notebook's cells across workers, and each worker then checks "
                    "the whole notebook again; use -n N alone, or --dist loadgroup / loadfile"
                ),
                stacklevel=2,
            )


def pytest_report_header(config: pytest.Config) -> str | None:
    options = config.stash.get(_OPTIONS_KEY, None)
    if options is None:
        return None
    shown = ", ".join(f"{name}={value!r}" for name, value in options.kwargs.items() if value not in ([], False, None))
    return f"ipyrepro: notebooks checked as `ipyrepro check` does ({shown or 'defaults'})"


# -- collecting notebooks: one item per code cell ---------------------------------------------


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if file_path.suffix == ".ipynb" and _OPTIONS_KEY in parent.config.stash:
        return NotebookFile.from_parent(parent, path=file_path)
    return None


class NotebookFailed(Exception):
    """A cell's verdict: the text is `ipyrepro check`'s report for that cell."""


class NotebookFile(pytest.File):
    """One notebook. It is checked once, on its first item, in the process that runs its items;
    the result lives on this node, so each pytest-xdist worker keeps its own."""

    _outcome: tuple[CheckReport, dict[int, CellResult]] | Exception | None = None

    def collect(self) -> Iterator[CellItem]:
        from ..notebooks.notebookfile import NotebookError, load_notebook

        try:
            cells, _ = load_notebook(self.path)
        except NotebookError as error:
            raise self.CollectError(f"ipyrepro: {error}") from None
        grouped = self.config.pluginmanager.hasplugin("xdist")
        for cell in cells:
            if not cell.source.strip():
                continue  # nothing runs, nothing to compare
            # `Cell N`: N is the cell's position from 1 among all cells, the number the report's labels show
            item = CellItem.from_parent(self, name=f"Cell {cell.position}", cell=cell)
            if grouped:  # `--dist loadgroup` keeps the notebook's cells on one worker
                item.add_marker(pytest.mark.xdist_group(name=self.nodeid))
            yield item

    def outcome(self) -> tuple[CheckReport, dict[int, CellResult]]:
        if self._outcome is None:
            from ..notebooks.check import check
            from ..notebooks.report import cell_results

            try:
                kwargs = dict(self.config.stash[_OPTIONS_KEY].kwargs)
                if hasattr(self.config, "workerinput"):  # an xdist worker: the workers are the parallelism
                    kwargs["jobs"] = 1
                with self._progress() as progress:
                    report = check(self.path, progress=progress, **kwargs)
                self._outcome = (report, {result.cell.index: result for result in cell_results(report)})
                self._write_html(report)
            except Exception as error:  # e.g. no such kernelspec: every cell of this notebook fails with it
                self._outcome = error
        if isinstance(self._outcome, Exception):
            raise NotebookFailed(
                f"ipyrepro check {self.path.name} could not run: {type(self._outcome).__name__}: {self._outcome}"
            )
        return self._outcome

    def _progress(self) -> Any:
        """In verbose mode (not on an xdist worker), the check's progress as `ipyrepro check` shows it."""
        from contextlib import nullcontext

        from ..notebooks.progress import terminal_progress

        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        if self.config.getoption("verbose") <= 0 or hasattr(self.config, "workerinput") or reporter is None:
            return terminal_progress(quiet=True)
        capture = self.config.pluginmanager.get_plugin("capturemanager")
        guard = capture.global_and_fixture_disabled if capture is not None else nullcontext
        with guard():
            reporter.ensure_newline()
        if reporter.isatty:
            return terminal_progress(live=True, guard=guard, transient=True)

        def write(text: str) -> None:
            with guard():
                reporter.write_line(text)

        return terminal_progress(write=write)

    def _write_html(self, report: CheckReport) -> None:
        folder = self.config.stash.get(_HTML_KEY, None)
        if folder is None:
            return
        from ..notebooks.htmlreport import write_html

        try:
            name = self.path.resolve().relative_to(self.config.rootpath.resolve())
        except ValueError:  # outside the rootdir
            name = Path(self.path.name)
        write_html(report, folder / ("__".join(name.with_suffix("").parts) + ".html"))


class CellItem(pytest.Item):
    """One code cell: fails when its outputs differ between runs or a run stopped at it."""

    def __init__(self, *, cell: Cell, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.cell = cell

    def runtest(self) -> None:
        assert isinstance(self.parent, NotebookFile)
        report, results = self.parent.outcome()
        result = results[self.cell.index]
        if result.errors or result.differences:
            first = (result.errors or [d.text() for d in result.differences])[0].splitlines()[0]
            raise NotebookFailed(f"{first}\n\n{result.text(report)}")
        if result.not_saved:
            pytest.skip(f"not saved: {self.cell.label()} has no saved outputs or execution count to compare with")
        if not result.compared and not result.ignored:
            labels = {cell.index: cell.label() for cell in report.cells}
            stopped = sorted({labels.get(run.error_cell, "before the first cell") for run in report.runs if run.error})
            where = f" (runs stopped at {', '.join(stopped)})" if stopped else ""
            pytest.skip(f"not compared: {self.cell.label()} ran in fewer than 2 runs{where}")

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> Any:
        if isinstance(excinfo.value, NotebookFailed):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, None, f"{self.name}: {self.cell.label()}"


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """With `-n N` (xdist's default `--dist load`), send each notebook's cells to one worker."""
    if _OPTIONS_KEY not in config.stash or config.getoption("dist") != "load":
        return None
    from .xdist import NotebookScheduling

    return NotebookScheduling(config, log)


# -- pytest-randomly: torch gets the per-test seed ---------------------------------------------


def randomly_seeder(seed: int) -> None:
    """pytest-randomly's `random_seeder` entry point: re-seed torch (CPU and every initialised CUDA
    device) the cheap way ipyrepro re-seeds before a cell, and run the `ipyrepro.seeders` plugins.

    pytest-randomly seeds `random` and NumPy itself. torch is seeded only once something imported
    it: ipyrepro never imports torch (seconds) into a test session just to seed it.
    """
    if "torch" not in sys.modules:
        return
    from ..core.state import STATE

    seed %= SEED_LIMIT  # pytest-randomly's seeds may exceed 2**32; it reduces NumPy's the same way
    reseeder = STATE.reseeder
    reseeder.reseed_torch(seed)
    for seeder in reseeder.seeders:
        seeder(seed)


# -- the `repro` marker and fixture -------------------------------------------------------------


def _marker_arguments(seed: Any = None, warn_only: Any = None) -> tuple[Any, Any]:
    return seed, warn_only


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    marker = item.get_closest_marker("repro")
    if marker is None:
        return
    from ..core.state import STATE

    try:
        seed, warn_only = _marker_arguments(*marker.args, **marker.kwargs)
    except TypeError as error:
        pytest.fail(f"@pytest.mark.repro takes (seed=None, warn_only=None): {error}", pytrace=False)
    checkpoint = STATE.checkpoint()
    item.stash[_CHECKPOINT_KEY] = checkpoint
    STATE.enable(seed, warn_only=warn_only)  # validates first; teardown restores either way
    item.stash[_MARKER_SEED_KEY] = STATE.seed


@pytest.hookimpl(hookwrapper=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> Iterator[None]:
    """Seed once more right before the test body, after every other per-test seeding (pytest-randomly's)."""
    seed = pyfuncitem.stash.get(_MARKER_SEED_KEY, None)
    if seed is not None:
        from ..core.state import STATE

        STATE.seed_all(seed)
    yield


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item: pytest.Item) -> None:
    checkpoint = item.stash.get(_CHECKPOINT_KEY, None)
    if checkpoint is not None:
        from ..core.state import STATE

        del item.stash[_CHECKPOINT_KEY]
        STATE.restore(checkpoint)


class Repro:
    """What the `repro` fixture gives: ipyrepro's state object (`repro.enable()`, `repro.status()`, and
    every other attribute of `repro.state`) plus `repro.compare(fn, runs=2)`, the engine of `ipyrepro.compare`.

    A view, not a copy: the core's state object knows nothing of the rerun engine above it."""

    def __init__(self, state: ReproState) -> None:
        object.__setattr__(self, "state", state)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.state, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self.state, name, value)

    def compare(self, fn: Callable[[], Any], runs: int = 2, **options: Any) -> Any:
        from ..rerun.callables import compare

        return compare(fn, runs, **options)


@pytest.fixture
def repro() -> Iterator[Repro]:
    """ipyrepro's state object with `compare` (see `Repro`); whatever the test changes through it is
    restored afterwards."""
    from ..core.state import STATE

    checkpoint = STATE.checkpoint()
    try:
        yield Repro(STATE)
    finally:
        STATE.restore(checkpoint)


# -- the `resume_check` fixture -----------------------------------------------------------------


@pytest.fixture
def resume_check() -> Callable[..., Any]:
    """`resume_check(build, step, steps, at, save=None, load=None, fresh_process=False)`: ipyrepro.verify_resume,
    failing the test with its report when the resumed run differs from the uninterrupted one or the load
    left something unrestored; returns the report (see docs/resume.md)."""

    def check(*args: Any, **kwargs: Any) -> Any:
        from ..resume.verify import verify_resume

        report = verify_resume(*args, **kwargs)
        if not report.identical or report.missing:
            pytest.fail(str(report), pytrace=False)
        return report

    return check
