"""Service layer: the engine server, answering bridge requests and broadcasting job events."""

from __future__ import annotations

import logging
import platform
import socket
from pathlib import Path

from bridge import BridgeError, BridgeServer, Session

from . import __version__
from .errors import EngineError
from .jobs import JobRunner
from .recipes import STAGES
from .workspace import Workspace

log = logging.getLogger("swapline.engine")


def describe_device() -> str:
    """The compute device in words, for the add-on's engine list."""
    import torch  # the engine needs it for every job; loading it here keeps first jobs prompt

    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        return f"{props.name} ({props.total_memory / 2**30:.0f} GiB)"
    return f"CPU: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"


class EngineService:
    """One workspace, one job queue, one bridge server."""

    def __init__(self, workspace: Path, host: str = "127.0.0.1", port: int = 0, token: str | None = None) -> None:
        self.workspace = Workspace(workspace)
        self.info = {
            "name": f"swapline@{socket.gethostname()}", "version": __version__, "device": describe_device(),
            "workspace": str(self.workspace.root), "protocol": 1,
        }
        self.server = BridgeServer(self.handle, host=host, port=port, token=token, engine_info=self.info)
        self.jobs = JobRunner(self.workspace, STAGES, on_change=self._job_changed)

    def _job_changed(self, job: dict) -> None:
        self.server.broadcast({"event": "job", "job": job})

    def start(self) -> int:
        return self.server.start()

    def serve_forever(self) -> None:
        self.server.serve_forever()

    def stop(self) -> None:
        self.server.stop()
        self.jobs.shutdown()
        self.workspace.close()

    def handle(self, op: str, args: dict, session: Session):
        args = args or {}
        try:
            if op == "engine.info":
                return self.info
            if op == "job.start":
                return self.jobs.submit(_arg(args, "kind", str), _arg(args, "params", dict))
            if op == "job.get":
                return self.jobs.get(_arg(args, "id", str))
            if op == "job.list":
                return {"jobs": self.jobs.list()}
            if op == "job.cancel":
                return self.jobs.cancel(_arg(args, "id", str))
            if op == "faceset.list":
                return {"facesets": self.workspace.list_facesets()}
        except EngineError as exc:
            raise BridgeError(exc.code, exc.message) from None
        raise BridgeError("unknown_op", f"this engine has no operation {op!r}")


def _arg(args: dict, name: str, kind: type):
    value = args.get(name)
    if not isinstance(value, kind):
        raise EngineError("bad_request", f"argument {name!r} must be a {kind.__name__}")
    return value
