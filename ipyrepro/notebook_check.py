"""`ipyrepro check NOTEBOOK`: run a notebook several times in fresh kernels and compare outputs cell by cell.

The notebook-level twin of `%%repro`. By default each kernel runs as the
reproducible kernel would (PYTHONHASHSEED and CUBLAS_WORKSPACE_CONFIG set,
`%repro on --seed S` before the first cell), so the question answered is
"does this notebook reproduce under ipyrepro?"; `as_is` asks whether it
reproduces as written. Cells are sent with their ids, as JupyterLab sends
them, so `cell` re-seeding works. The notebook file is only ever read.
"""

from __future__ import annotations

import difflib
import json
import math
import os
import re
import tempfile
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from .check_causes import CheckCauses, find_causes
from .comparison.findings import Cause
from .core.validation import RESEED_MODES
from .kernelrun import CellTimeout, KernelDied, KernelError, KernelStartError, running_kernel
from .kernelspec import startup_env, startup_lines

RAISES_TAG = "raises-exception"  # nbclient's tag: the error is an expected output, compared like any other
IGNORE_TAGS = ("ipyrepro-ignore-output", "nbval-ignore-output")  # run the cell, don't compare its outputs
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
SOURCE_LINES_SHOWN = 3
DIFF_LINES_SHOWN = 8


class NotebookError(ValueError):
    """The notebook cannot be read as an nbformat 4 notebook; the message says why and what to do."""


@dataclass(frozen=True)
class Cell:
    index: int  # position among all cells, from 0, as the notebook stores them
    cell_id: str
    source: str
    tags: tuple[str, ...]
    code_index: int = 0  # position among code cells only, from 0, as nbval counts them

    def head(self) -> str:
        lines = self.source.splitlines() or [""]
        shown = lines[:SOURCE_LINES_SHOWN] + (["..."] if len(lines) > SOURCE_LINES_SHOWN else [])
        return "\n".join(f"    | {line}" for line in shown)

    def label(self) -> str:
        return f"cell {self.index} (code cell {self.code_index}, id {self.cell_id!r})"


def load_notebook(path: str | Path) -> tuple[list[Cell], dict[str, Any]]:
    """The code cells and the metadata of an nbformat 4 notebook, or a NotebookError saying what is wrong."""
    from .core.userfiles import PathProblem, expand, is_missing, read_regular_file

    try:
        path = expand(path, "notebook")
    except PathProblem as error:
        raise NotebookError(str(error)) from None
    if is_missing(path):
        raise NotebookError(f"{path}: no such notebook")
    try:
        text = read_regular_file(path, MAX_NOTEBOOK_BYTES, "notebook").decode("utf-8")
    except PathProblem as error:
        raise NotebookError(str(error)) from None
    except UnicodeDecodeError as error:
        raise NotebookError(f"{path}: cannot read it ({error})") from None
    try:
        notebook = json.loads(text)
    except ValueError as error:
        raise NotebookError(f"{path} is not a notebook: it is not valid JSON ({error})") from None
    except RecursionError:
        raise NotebookError(f"{path} is not a notebook: its JSON is nested too deeply to read") from None
    if not isinstance(notebook, dict) or not isinstance(notebook.get("cells"), list):
        raise NotebookError(f"{path} is not a notebook: JSON without a list of cells")
    if notebook.get("nbformat") != 4:
        raise NotebookError(
            f"{path} is nbformat {notebook.get('nbformat')!r}; `ipyrepro check` reads nbformat 4. "
            "Open and save it in JupyterLab, or run `jupyter nbconvert --to notebook` to convert it"
        )
    metadata = _notebook_metadata(notebook, path)
    cells = []
    code_index = 0
    for index, cell in enumerate(notebook["cells"]):
        _validate_cell(cell, index, path)
        if cell["cell_type"] != "code":
            continue
        source = cell.get("source", "")
        source = "".join(source) if isinstance(source, list) else source
        tags = (cell.get("metadata") or {}).get("tags") or ()
        # Cells of nbformat < 4.5 have no id: a stable stand-in keeps every run's seeds the same.
        cells.append(Cell(index, str(cell.get("id") or f"cell-{index}"), source, tuple(tags), code_index))
        code_index += 1
    return cells, metadata


MAX_NOTEBOOK_BYTES = 512 << 20  # a bound on the read: a larger "notebook" is refused, not loaded


def _notebook_metadata(notebook: dict[str, Any], path: Path) -> dict[str, Any]:
    metadata = notebook.get("metadata", {})
    if not isinstance(metadata, dict):
        raise NotebookError(
            f'{path} is malformed: the notebook\'s "metadata" must be an object, not {_json_type(metadata)}'
        )
    kernelspec = metadata.get("kernelspec")
    if kernelspec is not None:
        if not isinstance(kernelspec, dict):
            raise NotebookError(
                f"{path} is malformed: metadata.kernelspec must be an object, not {_json_type(kernelspec)}"
            )
        name = kernelspec.get("name")
        if name is not None and (not isinstance(name, str) or not name or not name.isprintable()):
            raise NotebookError(
                f"{path} is malformed: metadata.kernelspec.name must be a kernel name (text), "
                f"not {repr(name) if isinstance(name, str) else _json_type(name)}; pass --kernel NAME to choose one"
            )
    return metadata


def _validate_cell(cell: Any, index: int, path: Path) -> None:
    """Every field `check` reads, with the type nbformat 4 gives it; a wrong one names the cell and field."""

    def fail(field_name: str, expected: str, value: Any) -> NotebookError:
        return NotebookError(
            f"{path} is malformed: cell {index}'s {field_name} must be {expected}, not {_json_type(value)}"
        )

    if not isinstance(cell, dict):
        raise fail("entry", "an object", cell)
    if not isinstance(cell.get("cell_type"), str):
        raise fail('"cell_type"', "text", cell.get("cell_type"))
    source = cell.get("source", "")
    if not isinstance(source, str) and not (isinstance(source, list) and all(isinstance(s, str) for s in source)):
        raise fail('"source"', "text or a list of text", source)
    metadata = cell.get("metadata", {})
    if not isinstance(metadata, dict):
        raise fail('"metadata"', "an object", metadata)
    tags = metadata.get("tags", [])
    if not isinstance(tags, list) or not all(isinstance(tag, str) for tag in tags):
        raise fail("metadata.tags", "a list of text", tags)
    cell_id = cell.get("id")
    if cell_id is not None and not isinstance(cell_id, str):
        raise fail('"id"', "text", cell_id)
    for field_name, texts in (('"source"', [source] if isinstance(source, str) else source), ('"id"', [cell_id or ""])):
        for text in texts:
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:  # a lone surrogate escaped in the JSON: no kernel could be sent it
                raise NotebookError(
                    f"{path} is malformed: cell {index}'s {field_name} holds invalid Unicode (a lone surrogate)"
                ) from None


def _json_type(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "text", bool: "true/false", type(None): "null"}
    if isinstance(value, list) and value:
        inner = {_json_type(item) for item in value}
        if inner - {"text"}:
            return f"a list holding {', '.join(sorted(inner - {'text'}))}"
    return names.get(type(value), "a number" if isinstance(value, (int, float)) else type(value).__name__)


# -- sanitising and comparing -----------------------------------------------------------

_NUMBER = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?|[-+]?(?:nan|inf)\b")


def default_sanitizers() -> list[tuple[re.Pattern[str], str]]:
    """What is never stable between runs: memory addresses, timings, temporary paths."""
    temp_roots = {tempfile.gettempdir(), "/tmp", "/var/tmp", "/var/folders", "/private/var/folders"}
    temp = "|".join(re.escape(root) for root in sorted(temp_roots, key=len, reverse=True))
    return [
        (re.compile(r"\b0x[0-9a-fA-F]{4,}\b"), "0x<address>"),
        (re.compile(r"^CPU times: .*$", re.MULTILINE), "CPU times: <timing>"),
        (re.compile(r"^Wall time: .*$", re.MULTILINE), "Wall time: <timing>"),
        (re.compile(r"^.* per loop \(mean ± std\. dev\. of .*\)$", re.MULTILINE), "<timeit>"),
        (re.compile(rf"(?:{temp})[/\\][^\s'\"]*"), "<tmp>"),
    ]


@dataclass(frozen=True)
class Comparison:
    """How outputs are compared: the sanitisers, and the tolerance for numbers inside text."""

    sanitizers: tuple[tuple[re.Pattern[str], str], ...]
    rtol: float = 0.0
    atol: float = 0.0

    @classmethod
    def build(cls, extra: Sequence[str] = (), rtol: float = 0.0, atol: float = 0.0) -> Comparison:
        """Validates the extra patterns and the tolerances before any kernel starts."""
        patterns = list(default_sanitizers())
        for pattern in extra:
            try:
                patterns.append((re.compile(pattern, re.MULTILINE), "<sanitized>"))
            except re.error as error:
                raise ValueError(f"--sanitize {pattern!r} is not a valid regular expression: {error}") from None
        for name, value in (("rtol", rtol), ("atol", atol)):
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"--{name} must be a finite number >= 0; got {value!r}")
        return cls(tuple(patterns), float(rtol), float(atol))

    def clean(self, text: str) -> str:
        for pattern, replacement in self.sanitizers:
            text = pattern.sub(replacement, text)
        return text

    def same_text(self, a: str, b: str) -> bool:
        if a == b:
            return True
        if not (self.rtol or self.atol):
            return False
        parts_a, parts_b = _NUMBER.split(a), _NUMBER.split(b)
        numbers_a, numbers_b = _NUMBER.findall(a), _NUMBER.findall(b)
        if parts_a != parts_b or len(numbers_a) != len(numbers_b):
            return False
        return all(self._close(x, y) for x, y in zip(numbers_a, numbers_b))

    def _close(self, a: str, b: str) -> bool:
        x, y = float(a), float(b)
        if math.isnan(x) or math.isnan(y):
            return math.isnan(x) and math.isnan(y)
        if math.isinf(x) or math.isinf(y):
            return x == y
        return abs(x - y) <= self.atol + self.rtol * abs(y)


@dataclass(frozen=True)
class Item:
    """One comparable piece of a cell's output: stdout, one MIME type of a result, an error."""

    label: str
    value: str
    image: bool = False


def output_items(outputs: list[dict[str, Any]], comparison: Comparison) -> list[Item]:
    items = []
    for output in outputs:
        kind = output["output_type"]
        if kind == "stream":
            items.append(Item(output["name"], comparison.clean(output["text"])))
        elif kind == "error":
            items.append(Item("error", comparison.clean(f"{output['ename']}: {output['evalue']}")))
        else:
            for mime, value in sorted(output["data"].items()):
                if mime.startswith("image/"):
                    items.append(Item(mime, value if isinstance(value, str) else json.dumps(value), image=True))
                    continue
                if mime == WIDGET_MIME and isinstance(value, dict):  # a fresh model id every run
                    value = {key: item for key, item in value.items() if key != "model_id"}
                text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
                items.append(Item(mime, comparison.clean(text)))
    return items


def full_diff(a: str, b: str, first: int, other: int) -> str:
    """The whole unified diff of two outputs (what `--json` carries)."""
    return "\n".join(difflib.unified_diff(a.splitlines(), b.splitlines(), f"run {first}", f"run {other}", lineterm=""))


def short_diff(a: str, b: str, first: int, other: int) -> str:
    """The first differing lines of both runs: `-` lines of run `first` and `+` lines of run `other`.

    Each side gets half of the lines shown (more when the other side has fewer), so a long
    output never hides the other run's lines.
    """
    lines = list(difflib.unified_diff(a.splitlines(), b.splitlines(), f"run {first}", f"run {other}", lineterm="", n=0))
    body = [line for line in lines[2:] if not line.startswith("@@")]
    removed = sum(line.startswith("-") for line in body)
    added = len(body) - removed
    budget = {"-": min(removed, max(DIFF_LINES_SHOWN // 2, DIFF_LINES_SHOWN - added))}
    budget["+"] = min(added, DIFF_LINES_SHOWN - budget["-"])
    shown = lines[:2]
    for line in body:
        if budget[line[0]]:
            shown.append(line)
            budget[line[0]] -= 1
    if not body:  # the same lines: the texts differ only in line endings or a final newline
        return f"      run {first} and run {other} differ only in line endings or a final newline"
    hidden = len(body) - (len(shown) - 2)
    if hidden:
        shown.append(f"... ({hidden} more differing lines; --json has the full diff)")
    return "\n".join(f"      {line}" for line in shown)


# -- running ---------------------------------------------------------------------------


@dataclass
class Run:
    """One execution of the notebook: the outputs of each code cell, or where and why it stopped."""

    number: int
    outputs: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    error: str | None = None
    fatal: bool = False  # the kernel could not start: every further run would fail the same way
    error_cell: int | None = None  # the index of the cell the run stopped at; None: not at a cell

    @property
    def complete(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class Difference:
    cell: Cell
    runs: tuple[int, int]
    what: str  # the output that differs: stdout, text/plain, image/png, "outputs" (different outputs)
    detail: str
    image: bool = False
    diff: str = ""  # the full unified diff, for --json

    def text(self) -> str:
        return f"{self.cell.label()}: {self.what} differs between run {self.runs[0]} and run {self.runs[1]}\n" + (
            f"{self.cell.head()}\n{self.detail}"
        )

    def image_line(self) -> str:
        return f"  {self.cell.label()}: {self.what} differs between run {self.runs[0]} and run {self.runs[1]}" + (
            f" ({self.detail.strip()})" if self.detail else ""
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.cell.index,
            "code_index": self.cell.code_index,
            "cell_id": self.cell.cell_id,
            "source": self.cell.source,
            "runs": list(self.runs),
            "output": self.what,
            "image": self.image,
            "detail": self.detail,
            "diff": self.diff,
        }


@dataclass
class CheckReport:
    """What `check` found; `exit_code` is 0 (all matched), 1 (something differed) or 2 (errors)."""

    notebook: str
    kernel: str
    mode: str
    runs: list[Run]
    cells: list[Cell]
    differences: list[Difference] = field(default_factory=list)
    causes: CheckCauses | None = None  # from the diagnostic kernel, run only when something differed
    kernel_note: str = ""  # e.g. --as-is replaced an ipyrepro kernel with a plain one

    @property
    def errors(self) -> list[str]:
        return [f"run {run.number}: {run.error}" for run in self.runs if run.error]

    @property
    def ok(self) -> bool:
        return not self.errors and not self.differences

    @property
    def exit_code(self) -> int:
        return 2 if self.errors else 1 if self.differences else 0

    def header(self) -> str:
        runs = f"{len(self.runs)} run(s) in fresh {self.kernel!r} kernels"
        return f"ipyrepro check {self.notebook}: {runs}, {self.mode}" + (
            f"; {self.kernel_note}" if self.kernel_note else ""
        )

    def __str__(self) -> str:
        lines = [self.header()]
        lines += [f"Error in {text}" for text in self.errors]
        text = [d for d in self.differences if not d.image]
        images = [d for d in self.differences if d.image]
        for difference in text:
            lines.append(difference.text())
            if difference is self._first_of(difference.cell.index) and self.causes is not None:
                found = self.cell_causes(difference.cell.index)
                lines += [f"    cause: {cause.text()}" for cause in found]
                if not found and self.causes.status == "done":
                    lines.append("    cause: none ran in this cell; it may use a value from an earlier differing cell")
        if self.causes is not None and self.causes.hash_order_cells:
            lines.append("Reproduces here only because PYTHONHASHSEED is fixed (output changes with another one):")
            for index in self.causes.hash_order_cells:
                cell = next(cell for cell in self.cells if cell.index == index)
                lines.append(f"  {cell.label()}\n{cell.head()}")
                lines += [f"    cause: {cause.text()}" for cause in self.cell_causes(index)]
        if self.causes is not None and self.causes.status != "done":
            lines.append(f"Causes: the diagnostic run {self.causes.status}")
        if images:
            lines.append("Images (compared by exact bytes):")
            lines += [d.image_line() for d in images]
        complete = sum(run.complete for run in self.runs)
        if complete < 2:
            compared = "nothing to compare (fewer than 2 complete runs)"
        else:
            cells = {d.cell.index for d in self.differences}
            compared = (
                f"{len(cells)} of {len(self.cells)} code cells differ ({len(text)} text/data outputs, "
                f"{len(images)} images)"
                if cells
                else f"all {len(self.cells)} code cells matched"
            )
        verdict = {0: "OK", 1: "DIFFERS", 2: "ERROR"}[self.exit_code]
        lines.append(f"{verdict}: {compared}.")
        return "\n".join(lines)

    def _first_of(self, index: int) -> Difference | None:
        return next((d for d in self.differences if d.cell.index == index and not d.image), None)

    def cell_causes(self, index: int) -> list[Cause]:
        """The causes found for the cell at `index` (empty when none, or when no diagnostic run was made)."""
        return self.causes.by_cell.get(index, []) if self.causes is not None else []

    def to_dict(self) -> dict[str, Any]:
        causes = self.causes.by_cell if self.causes is not None else {}
        return {
            "notebook": self.notebook,
            "kernel": self.kernel,
            "mode": self.mode,
            "kernel_note": self.kernel_note,
            "runs": len(self.runs),
            "ok": self.ok,
            "exit_code": self.exit_code,
            "errors": self.errors,
            "differences": [
                {**d.to_dict(), "causes": [c.to_dict() for c in self.cell_causes(d.cell.index)]}
                for d in self.differences
            ],
            "causes": [
                {
                    "index": cell.index,
                    "cell_id": cell.cell_id,
                    "hash_order_only": cell.index in self.causes.hash_order_cells,  # type: ignore[union-attr]
                    "causes": [c.to_dict() for c in causes[cell.index]],
                }
                for cell in self.cells
                if cell.index in causes
            ],
            "causes_run": self.causes.status if self.causes is not None else None,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


def check(
    path: str | Path,
    *,
    runs: int = 2,
    seed: int = 0,
    as_is: bool = False,
    kernel: str | None = None,
    timeout: float | None = 600,
    sanitize: Sequence[str] = (),
    rtol: float = 0.0,
    atol: float = 0.0,
    cublas: str = ":4096:8",
    reseed: str | None = None,
    startup_timeout: float = 60,
    kernel_spec_manager: Any = None,
    progress: Callable[[str], None] | None = None,
    causes: bool = True,
    jobs: int | None = None,
) -> CheckReport:
    """Execute the notebook `runs` times, each in a fresh kernel, and compare every code cell's outputs.

    `jobs` kernels run at once (default: as many as runs, capped by the usable CPUs); the report
    does not depend on it. `reseed=None` keeps the re-seed mode of a reproducible kernel
    (`ipyrepro kernel install --reseed ...`), else `cell`, as `%repro on` does.

    When something differed (and `causes`), one more kernel names the causes (see check_causes.py).
    """
    from .core.validation import validate_cublas_value, validate_reseed_mode, validate_seed

    if isinstance(runs, bool) or not isinstance(runs, int) or runs < 1:
        raise ValueError(f"--runs must be an integer >= 1; got {runs!r}")
    if jobs is not None and (isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1):
        raise ValueError(f"--jobs must be an integer >= 1; got {jobs!r}")
    if timeout is not None and not timeout > 0:
        raise ValueError(f"--timeout must be a number of seconds > 0; got {timeout!r}")
    seed = validate_seed(seed)
    validate_cublas_value(cublas)
    if reseed is not None:
        validate_reseed_mode(reseed)
    comparison = Comparison.build(sanitize, rtol, atol)
    cells, metadata = load_notebook(path)
    kernel_name = kernel or (metadata.get("kernelspec") or {}).get("name") or "python3"
    # An ipyrepro kernel's own environment would win over the check's (PYTHONHASHSEED): a plain kernel
    # of its Python runs instead, set up by the check (by default in the kernel's re-seed mode).
    plain = plain_kernel_for(kernel_name, kernel_spec_manager, as_is=as_is)
    if plain is not None and not as_is and reseed is None:
        reseed = plain.reseed
    reseeding = "" if reseed is None else f", re-seed {reseed}"
    mode = "as written (--as-is)" if as_is else f"under ipyrepro (seed {seed}{reseeding})"
    report = CheckReport(str(path), kernel_name, mode, [], cells)
    say = progress or (lambda text: None)
    if plain is not None:
        kernel_name, kernel_spec_manager, report.kernel_note = plain.name, plain.manager, plain.note

    def one(number: int) -> Run:
        say(f"run {number} of {runs}: starting kernel {kernel_name!r}")
        return _run_once(
            number,
            Path(path),
            cells,
            kernel_name,
            as_is,
            seed,
            reseed,
            cublas,
            timeout,
            startup_timeout,
            kernel_spec_manager,
            say,
        )

    report.runs = run_all(one, runs, default_jobs(runs) if jobs is None else jobs)
    _compare(report, comparison)
    if causes and report.differences and not report.errors:
        report.causes = find_causes(
            report,
            comparison,
            kernel_name=kernel_name,
            path=Path(path),
            as_is=as_is,
            seed=seed,
            reseed=reseed,
            cublas=cublas,
            timeout=timeout,
            startup_timeout=startup_timeout,
            kernel_spec_manager=kernel_spec_manager,
            say=say,
        )
    return report


def default_jobs(runs: int) -> int:
    """As many kernels at once as runs, capped by the CPUs this process may use."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(runs, cpus))


def run_all(one: Callable[[int], Run], runs: int, jobs: int) -> list[Run]:
    """Runs 1..runs, `jobs` at a time (threads: each waits on its own kernel). As sequential runs
    would, the list stops at the first run whose kernel could not start."""
    if jobs <= 1 or runs <= 1:
        done: list[Run] = []
        for number in range(1, runs + 1):
            done.append(one(number))
            if done[-1].fatal:
                break
        return done
    with ThreadPoolExecutor(max_workers=min(jobs, runs), thread_name_prefix="ipyrepro-check") as pool:
        results = list(pool.map(one, range(1, runs + 1)))
    for index, run in enumerate(results):
        if run.fatal:
            return results[: index + 1]
    return results


PLAIN_KERNEL = "python-plain"  # the in-memory spec that runs instead of an ipyrepro kernel


class PlainKernel(NamedTuple):
    """What runs instead of an ipyrepro kernel: a kernel name, the spec manager that knows it, the report's
    note, and the ipyrepro kernel's re-seed mode (None when its kernelspec does not say)."""

    name: str
    manager: Any
    note: str
    reseed: str | None


def plain_kernel_for(kernel_name: str, kernel_spec_manager: Any, *, as_is: bool = True) -> PlainKernel | None:
    """When `kernel_name` is an ipyrepro kernel, a plain ipykernel of the same Python.

    An ipyrepro kernel sets PYTHONHASHSEED and CUBLAS_WORKSPACE_CONFIG and runs `%repro on`
    before the first cell, which is not "as written" (--as-is); in the default mode its
    kernelspec's PYTHONHASHSEED would win over the check's (and the causes kernel's), so the
    check sets the plain kernel up itself. Returns None when the kernel is not an ipyrepro one
    (or not installed: starting it reports that).
    """
    from jupyter_client.kernelspec import KernelSpec, KernelSpecManager, NoSuchKernel

    manager = kernel_spec_manager or KernelSpecManager()
    try:
        spec = manager.get_kernel_spec(kernel_name)
    except (NoSuchKernel, OSError, ValueError):
        return None
    if not isinstance(spec.metadata, dict) or "ipyrepro" not in spec.metadata or not spec.argv:
        return None
    python = spec.argv[0]
    managed = set(startup_env(0, ":4096:8"))
    plain = KernelSpec(
        argv=[python, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        display_name=f"{spec.display_name} (plain, for ipyrepro check)",
        language=spec.language or "python",
        env={key: value for key, value in (spec.env or {}).items() if key not in managed},
        resource_dir=spec.resource_dir,
    )
    settings = spec.metadata["ipyrepro"]
    reseed = settings.get("reseed") if isinstance(settings, dict) else None
    if reseed not in RESEED_MODES:
        reseed = None
    if as_is:
        note = (
            f"--as-is: {kernel_name!r} is an ipyrepro kernel, so a plain kernel of its Python ({python}) ran "
            "instead, without its environment variables and `%repro on`"
        )
    else:
        note = (
            f"{kernel_name!r} is an ipyrepro kernel, so a plain kernel of its Python ({python}) ran instead, "
            "set up by the check (its seed and PYTHONHASHSEED; the kernel's re-seed mode unless --reseed)"
        )

    class SingleSpec(KernelSpecManager):
        """Knows one in-memory spec: the plain kernel --as-is runs."""

        def get_kernel_spec(self, name: str) -> Any:
            if name != PLAIN_KERNEL:
                raise NoSuchKernel(name)
            return plain

        def find_kernel_specs(self) -> dict[str, str]:
            return {PLAIN_KERNEL: plain.resource_dir}

    return PlainKernel(PLAIN_KERNEL, SingleSpec(), note, reseed)


@contextmanager
def notebook_kernel(
    kernel_name: str,
    path: Path,
    *,
    as_is: bool,
    seed: int,
    reseed: str | None,
    cublas: str,
    startup_timeout: float,
    kernel_spec_manager: Any,
    env: dict[str, str] | None = None,
) -> Iterator[tuple[Any, str | None]]:
    """A fresh kernel in the notebook's folder, set up as the reproducible kernel is unless `as_is`.

    Yields (runner, setup_error): the error text when `%repro on` failed there, else None.
    `env` adds to (or overrides) the reproducible kernel's variables. What a `%repro on` around this
    process exported for its children (IPYREPRO_SEED, ...) stays out: the kernel is as fresh as a
    frontend's, and the check's own options say how it is set up.
    """
    from .core.validation import CHILD_VARS

    with running_kernel(
        kernel_name,
        env={**({} if as_is else startup_env(seed, cublas)), **(env or {})},
        unset=CHILD_VARS,
        cwd=path.absolute().parent,
        startup_timeout=startup_timeout,
        kernel_spec_manager=kernel_spec_manager,
    ) as runner:
        setup_error = None
        if not as_is:
            setup = runner.execute(
                "\n".join(startup_lines(seed, reseed)), silent=True, store_history=False, timeout=startup_timeout
            )
            if setup.status != "ok":
                setup_error = setup.error_text or setup.status
        yield runner, setup_error


def _run_once(
    number: int,
    path: Path,
    cells: list[Cell],
    kernel_name: str,
    as_is: bool,
    seed: int,
    reseed: str | None,
    cublas: str,
    timeout: float | None,
    startup_timeout: float,
    kernel_spec_manager: Any,
    say: Callable[[str], None],
) -> Run:
    run = Run(number)
    try:
        with notebook_kernel(
            kernel_name,
            path,
            as_is=as_is,
            seed=seed,
            reseed=reseed,
            cublas=cublas,
            startup_timeout=startup_timeout,
            kernel_spec_manager=kernel_spec_manager,
        ) as (runner, setup_error):
            if setup_error is not None:
                run.error = (
                    f"`%repro on` failed in kernel {kernel_name!r} ({setup_error}); "
                    "is ipyrepro installed in that kernel's Python? Or pass --as-is"
                )
                return run
            for position, cell in enumerate(cells, 1):
                say(f"run {number}: {cell.label()} ({position} of {len(cells)})")
                if not cell.source.strip():
                    run.outputs[cell.index] = []
                    continue
                execution = runner.execute(cell.source, cell.cell_id, timeout=timeout)
                run.outputs[cell.index] = execution.outputs
                if execution.status != "ok" and RAISES_TAG not in cell.tags:
                    run.error_cell = cell.index
                    reason = execution.error_text or f"execution {execution.status}"
                    frames = traceback_tail(execution.error)
                    run.error = (
                        f"{cell.label()} raised {reason}; this run stopped there "
                        f"(tag the cell {RAISES_TAG!r} if the error is expected)\n{cell.head()}"
                        + (f"\n    Traceback (last frames):\n{frames}" if frames else "")
                    )
                    return run
    except KernelStartError as error:
        run.error, run.fatal = f"the kernel could not start: {error}", True
    except CellTimeout as error:
        run.error_cell = _pending(run, cells)
        run.error = f"{_current(run, cells)}: {error}; the kernel was shut down (raise --timeout if it needs longer)"
    except KernelDied as error:
        run.error_cell = _pending(run, cells)
        run.error = f"{_current(run, cells)}: {error}"
    except KernelError as error:
        run.error = str(error)
    return run


def _pending(run: Run, cells: list[Cell]) -> int | None:
    return next((cell.index for cell in cells if cell.index not in run.outputs), None)


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
TRACEBACK_FRAMES_SHOWN = 3
TRACEBACK_FRAME_LINES = 8


def traceback_tail(error: dict[str, Any] | None, frames: int = TRACEBACK_FRAMES_SHOWN) -> str:
    """The last frames of a kernel error's traceback, without colours: where in the cell it raised, by line."""
    if not error or not isinstance(error.get("traceback"), list):
        return ""
    entries = [_ANSI.sub("", str(entry)) for entry in error["traceback"]]
    # IPython sends a header, one entry per frame ("Cell In[3], line 2" and the lines around it), and the error.
    body = [entry for entry in entries[1:-1] if entry.strip()] if len(entries) > 2 else entries
    kept = []
    for entry in body[-frames:]:
        lines = entry.rstrip("\n").splitlines()
        kept += lines[:TRACEBACK_FRAME_LINES] + (["..."] if len(lines) > TRACEBACK_FRAME_LINES else [])
    return "\n".join(f"    | {line}" for line in kept)


def _current(run: Run, cells: list[Cell]) -> str:
    pending = [cell for cell in cells if cell.index not in run.outputs]
    return pending[0].label() if pending else "after the last cell"


def _compare(report: CheckReport, comparison: Comparison) -> None:
    complete = [run for run in report.runs if run.complete]
    if len(complete) < 2:
        return
    first = complete[0]
    for other in complete[1:]:
        for cell in report.cells:
            if any(tag in cell.tags for tag in IGNORE_TAGS):
                continue
            report.differences += _cell_differences(
                cell,
                output_items(first.outputs[cell.index], comparison),
                output_items(other.outputs[cell.index], comparison),
                (first.number, other.number),
                comparison,
            )


def _cell_differences(
    cell: Cell, a: list[Item], b: list[Item], runs: tuple[int, int], comparison: Comparison
) -> list[Difference]:
    if [item.label for item in a] != [item.label for item in b]:
        shown = [", ".join(item.label for item in items) or "no output" for items in (a, b)]
        detail = f"      run {runs[0]}: {shown[0]}\n      run {runs[1]}: {shown[1]}"
        return [Difference(cell, runs, "the list of outputs", detail)]
    found = []
    for x, y in zip(a, b):
        if x.image:
            if x.value != y.value:
                found.append(
                    Difference(
                        cell, runs, x.label, f"{len(x.value)} vs {len(y.value)} characters of base64", image=True
                    )
                )
        elif not comparison.same_text(x.value, y.value):
            found.append(
                Difference(
                    cell, runs, x.label, short_diff(x.value, y.value, *runs), diff=full_diff(x.value, y.value, *runs)
                )
            )
    return found


# -- per-cell verdicts -------------------------------------------------------------------


@dataclass(frozen=True)
class CellResult:
    """One code cell's share of a check, for faces that report per cell (the pytest plugin).

    `errors` are the runs that stopped at this cell, or failed before any cell (kernel start,
    `%repro on`); `compared` is False when fewer than two complete runs left nothing to compare.
    """

    cell: Cell
    differences: tuple[Difference, ...]
    errors: tuple[str, ...]
    compared: bool
    ignored: bool

    @property
    def ok(self) -> bool:
        return self.compared and not self.errors and not self.differences

    def text(self, report: CheckReport) -> str:
        """The lines of `ipyrepro check`'s report that concern this cell, under the report's header."""
        lines = [report.header()] + [f"Error in {error}" for error in self.errors]
        lines += [d.text() for d in self.differences if not d.image]
        if self.differences:
            lines += [f"    cause: {cause.text()}" for cause in report.cell_causes(self.cell.index)]
        images = [d.image_line() for d in self.differences if d.image]
        if images:
            lines += ["Images (compared by exact bytes):", *images]
        return "\n".join(lines)


def cell_results(report: CheckReport) -> list[CellResult]:
    """The report split by code cell, in notebook order: what each cell's own verdict rests on."""
    complete = sum(run.complete for run in report.runs) >= 2
    results = []
    for cell in report.cells:
        errors = tuple(
            f"run {run.number}: {run.error}"
            for run in report.runs
            if run.error and run.error_cell in (None, cell.index)
        )
        differences = tuple(d for d in report.differences if d.cell.index == cell.index)
        ignored = any(tag in cell.tags for tag in IGNORE_TAGS)
        results.append(CellResult(cell, differences, errors, complete, ignored))
    return results
