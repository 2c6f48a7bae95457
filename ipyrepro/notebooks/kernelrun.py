"""Run code in a real Jupyter kernel the way JupyterLab does: each cell's id goes in `cellId` metadata.

nbclient sends no cell id, so `cell` re-seeding could not tell cells apart;
this runner sends the `execute_request` itself, collects the outputs in
nbformat's shape, and turns a hung or dead kernel into a clear exception.
"""

from __future__ import annotations

import os
import queue
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import IO, Any

POLL_SECONDS = 0.5


class KernelError(RuntimeError):
    """The kernel could not start, died, or did not answer in time; the message says which."""


class KernelStartError(KernelError):
    pass


class KernelDied(KernelError):
    pass


class CellTimeout(KernelError):
    pass


@dataclass
class Execution:
    """What one execute request produced, with outputs as a notebook would store them."""

    status: str  # the shell reply: "ok", "error" or "aborted"
    outputs: list[dict[str, Any]] = field(default_factory=list)
    execution_count: int | None = None

    @property
    def stdout(self) -> str:
        return self._stream("stdout")

    @property
    def stderr(self) -> str:
        return self._stream("stderr")

    def _stream(self, name: str) -> str:
        return "".join(o["text"] for o in self.outputs if o["output_type"] == "stream" and o["name"] == name)

    @property
    def data(self) -> list[dict[str, Any]]:
        """The MIME bundles of results and displays, in order."""
        return [o["data"] for o in self.outputs if o["output_type"] in ("execute_result", "display_data")]

    @property
    def error(self) -> dict[str, Any] | None:
        errors = [o for o in self.outputs if o["output_type"] == "error"]
        return errors[-1] if errors else None

    @property
    def error_text(self) -> str:
        """`ename: evalue` of the error the cell raised, or ''."""
        error = self.error
        return f"{error['ename']}: {error['evalue']}" if error else ""

    def text(self) -> str:
        """The last text/plain result, e.g. a cell's final expression."""
        plain = [item["text/plain"] for item in self.data if "text/plain" in item]
        return plain[-1] if plain else ""


class _Outputs:
    """Builds the output list from iopub messages: merges streams, honours clear_output and display updates."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []
        self.display_ids: dict[str, list[dict[str, Any]]] = {}
        self.clear_pending = False

    def add(self, kind: str, content: dict[str, Any]) -> None:
        if kind == "clear_output":
            if content.get("wait"):
                self.clear_pending = True
            else:
                self._clear()
            return
        if kind == "update_display_data":
            for output in self.display_ids.get(content.get("transient", {}).get("display_id"), []):
                output["data"], output["metadata"] = content["data"], content.get("metadata", {})
            return
        if kind not in ("stream", "display_data", "execute_result", "error"):
            return
        if self.clear_pending:
            self._clear()
        if kind == "stream":
            last = self.items[-1] if self.items else None
            if last and last["output_type"] == "stream" and last["name"] == content["name"]:
                last["text"] += content["text"]
            else:
                self.items.append({"output_type": "stream", "name": content["name"], "text": content["text"]})
        elif kind == "error":
            self.items.append({"output_type": "error", **{k: content[k] for k in ("ename", "evalue", "traceback")}})
        else:
            output = {"output_type": kind, "data": content["data"], "metadata": content.get("metadata", {})}
            if kind == "execute_result":
                output["execution_count"] = content.get("execution_count")
            self.items.append(output)
            display_id = content.get("transient", {}).get("display_id")
            if display_id:
                self.display_ids.setdefault(display_id, []).append(output)

    def _clear(self) -> None:
        self.items.clear()
        self.display_ids.clear()
        self.clear_pending = False


class KernelRunner:
    """A started kernel and its client; `execute` runs one cell and waits for it."""

    def __init__(self, manager: Any, client: Any, name: str, log: IO[bytes] | None = None) -> None:
        self.manager = manager
        self.client = client
        self.name = name
        self.log = log  # the kernel process's stdout and stderr, for the message when it dies

    def log_tail(self, lines: int = 15) -> str:
        """The last lines the kernel process printed outside any cell (startup errors, crashes)."""
        if self.log is None:
            return ""
        self.log.flush()
        self.log.seek(0)
        text = self.log.read().decode(errors="replace")
        kept = [line for line in text.splitlines() if "running over TCP without encryption" not in line]
        return "\n".join(kept[-lines:])

    def execute(
        self,
        code: str,
        cell_id: str | None = None,
        *,
        timeout: float | None = 60,
        silent: bool = False,
        store_history: bool = True,
    ) -> Execution:
        """Execute `code` as a notebook cell with id `cell_id` (a fresh id when None).

        Raises CellTimeout when the cell runs longer than `timeout` seconds
        (None: no limit) and KernelDied when the kernel process exits.
        """
        content = {
            "code": code,
            "silent": silent,
            "store_history": store_history,
            "user_expressions": {},
            "allow_stdin": False,
            "stop_on_error": True,
        }
        msg = self.client.session.msg("execute_request", content, metadata={"cellId": cell_id or str(uuid.uuid4())})
        self.client.shell_channel.send(msg)
        msg_id = msg["header"]["msg_id"]
        deadline = None if timeout is None else time.monotonic() + timeout
        outputs = _Outputs()
        while True:
            message = self._next(self.client.get_iopub_msg, deadline, timeout)
            if message["parent_header"].get("msg_id") != msg_id:
                continue
            kind, body = message["msg_type"], message["content"]
            if kind == "status" and body["execution_state"] == "idle":
                break
            outputs.add(kind, body)
        while True:
            reply = self._next(self.client.get_shell_msg, deadline, timeout)
            if reply["parent_header"].get("msg_id") == msg_id:
                break
        return Execution(
            status=reply["content"]["status"],
            outputs=outputs.items,
            execution_count=reply["content"].get("execution_count"),
        )

    def _next(self, receive: Any, deadline: float | None, timeout: float | None) -> dict[str, Any]:
        while True:
            wait = POLL_SECONDS if deadline is None else max(0.0, min(POLL_SECONDS, deadline - time.monotonic()))
            try:
                return receive(timeout=wait)
            except queue.Empty:
                pass
            if not self.manager.is_alive():
                raise KernelDied(
                    f"the kernel {self.name!r} died while running a cell (it crashed, ran out of memory, "
                    "or the code exited the process)" + _indented(self.log_tail())
                )
            if deadline is not None and time.monotonic() >= deadline:
                raise CellTimeout(f"a cell ran longer than the timeout ({timeout:g} s) in kernel {self.name!r}")

    def shutdown(self) -> None:
        """Stop the channels and the kernel process; safe to call twice or after the kernel died."""
        try:
            self.client.stop_channels()
        finally:
            if self.manager.has_kernel:
                self.manager.shutdown_kernel(now=True)


@contextmanager
def running_kernel(
    kernel_name: str = "python3",
    *,
    kernel_spec_manager: Any = None,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    extra_arguments: Sequence[str] = (),
    startup_timeout: float = 60,
    unset: Sequence[str] = (),
) -> Iterator[KernelRunner]:
    """A fresh kernel for the block, shut down afterwards whatever happens.

    `env` adds to this process's environment (a kernelspec's own `env` still wins); the variables
    named in `unset` are left out of it.
    """
    from jupyter_client.kernelspec import NoSuchKernel
    from jupyter_client.manager import KernelManager

    options: dict[str, Any] = {"kernel_name": kernel_name}
    if kernel_spec_manager is not None:
        options["kernel_spec_manager"] = kernel_spec_manager
    manager = KernelManager(**options)
    with tempfile.TemporaryFile() as log:
        launch: dict[str, Any] = {
            "env": {**{name: value for name, value in os.environ.items() if name not in unset}, **(env or {})},
            "extra_arguments": list(extra_arguments),
            "stdout": log,
            "stderr": log,
        }
        if cwd is not None:
            launch["cwd"] = str(cwd)
        try:
            manager.start_kernel(**launch)
        except NoSuchKernel as error:
            available = sorted(manager.kernel_spec_manager.find_kernel_specs())
            raise KernelStartError(
                f"no kernel named {kernel_name!r} is installed (available: {', '.join(available) or 'none'}); "
                "pick one with --kernel, or install one with `ipyrepro kernel install`"
            ) from error
        except OSError as error:  # the kernelspec's program is missing or not executable
            raise KernelStartError(f"the kernel {kernel_name!r} could not be launched: {error}") from error
        client = manager.client()
        runner = KernelRunner(manager, client, kernel_name, log)
        try:
            client.start_channels()
            try:
                client.wait_for_ready(timeout=startup_timeout)
            except (RuntimeError, TimeoutError) as error:
                raise KernelStartError(
                    f"the kernel {kernel_name!r} did not start: {error}" + _indented(runner.log_tail())
                ) from error
            yield runner
        finally:
            runner.shutdown()


def _indented(text: str) -> str:
    return "".join(f"\n    {line}" for line in text.splitlines())
