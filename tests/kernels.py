"""Real Jupyter kernels for tests, sending `cellId` metadata the way JupyterLab does."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from jupyter_client.manager import start_new_kernel


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
    def __init__(self, client: Any) -> None:
        self.client = client

    def run(self, code: str, cell_id: str | None = None, timeout: float = 60) -> Reply:
        """Execute `code` as a notebook cell with id `cell_id` (a fresh id when None)."""
        metadata = {"cellId": cell_id or str(uuid.uuid4())}
        content = {
            "code": code,
            "silent": False,
            "store_history": True,
            "user_expressions": {},
            "allow_stdin": False,
            "stop_on_error": True,
        }
        msg = self.client.session.msg("execute_request", content, metadata=metadata)
        self.client.shell_channel.send(msg)
        msg_id = msg["header"]["msg_id"]
        reply = Reply(status="")
        while True:
            message = self.client.get_iopub_msg(timeout=timeout)
            if message["parent_header"].get("msg_id") != msg_id:
                continue
            kind, body = message["msg_type"], message["content"]
            if kind == "stream":
                if body["name"] == "stdout":
                    reply.stdout += body["text"]
                else:
                    reply.stderr += body["text"]
            elif kind in ("execute_result", "display_data"):
                reply.data.append(body["data"])
            elif kind == "error":
                reply.error = "\n".join(body["traceback"])
            elif kind == "status" and body["execution_state"] == "idle":
                break
        shell_reply = self.client.get_shell_msg(timeout=timeout)
        reply.status = shell_reply["content"]["status"]
        return reply

    def ok(self, code: str, cell_id: str | None = None) -> Reply:
        """Run and fail the test with the kernel's traceback when the cell raised."""
        reply = self.run(code, cell_id)
        assert reply.status == "ok", reply.error or reply.stderr
        return reply


@contextmanager
def kernel(**kwargs: Any) -> Iterator[Kernel]:
    """A fresh python3 kernel (ipykernel) for the duration of the block."""
    manager, client = start_new_kernel(kernel_name="python3", **kwargs)
    try:
        yield Kernel(client)
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
