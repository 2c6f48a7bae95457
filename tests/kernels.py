"""Real Jupyter kernels for tests, sending `cellId` metadata the way JupyterLab does."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from ipyrepro.notebooks.kernelrun import KernelRunner, running_kernel


@dataclass
class Reply:
    """What one execute request produced."""

    status: str
    stdout: str = ""
    stderr: str = ""
    data: list[dict[str, Any]] = field(default_factory=list)
    error: str = ""

    def text(self) -> str:
        """The last text/plain result, e.g. a cell's final expression."""
        plain = [item["text/plain"] for item in self.data if "text/plain" in item]
        return plain[-1] if plain else ""


class Kernel:
    """A thin test face over ipyrepro.notebooks.kernelrun.s runner, which sends `cellId` like JupyterLab."""

    def __init__(self, runner: KernelRunner) -> None:
        self.runner = runner
        self.client = runner.client

    def run(self, code: str, cell_id: str | None = None, timeout: float = 60) -> Reply:
        """Execute `code` as a notebook cell with id `cell_id` (a fresh id when None)."""
        execution = self.runner.execute(code, cell_id, timeout=timeout)
        error = execution.error
        return Reply(
            status=execution.status,
            stdout=execution.stdout,
            stderr=execution.stderr,
            data=execution.data,
            error="\n".join(error["traceback"]) if error else "",
        )

    def ok(self, code: str, cell_id: str | None = None) -> Reply:
        """Run and fail the test with the kernel's traceback when the cell raised."""
        reply = self.run(code, cell_id)
        assert reply.status == "ok", reply.error or reply.stderr
        return reply


@contextmanager
def kernel(**kwargs: Any) -> Iterator[Kernel]:
    """A fresh python3 kernel (ipykernel) for the duration of the block; kwargs go to `running_kernel`."""
    with running_kernel("python3", **kwargs) as runner:
        yield Kernel(runner)
