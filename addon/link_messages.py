"""Connection layer (no bpy): the link's settings and the typed messages it posts to Blender's main
thread (engine_link.py re-exports them; sync.py's drain applies them)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

DISCONNECTED, CONNECTING, CONNECTED, FAILED = "DISCONNECTED", "CONNECTING", "CONNECTED", "FAILED"


@dataclass(frozen=True)
class LinkConfig:
    """Everything the worker needs, copied from preferences and the scene on the main thread."""

    mode: str = "LOCAL"  # "LOCAL": launch an engine; "REMOTE": connect to host:port
    host: str = "127.0.0.1"
    port: int = 0
    token: str = ""
    python: str = ""
    workspace: str = ""
    cwd: str = ""
    launch_timeout: float = 120.0
    connect_timeout: float = 10.0
    use_tls: bool = False       # remote only: wrap the connection in TLS
    tls_fingerprint: str = ""   # remote TLS: the SHA-256 of the engine's certificate, pinned


# Messages posted to the main thread -------------------------------------------------------------

class Connection(NamedTuple):
    state: str  # DISCONNECTED | CONNECTING | CONNECTED | FAILED
    message: str
    engine: dict | None = None


class JobUpdate(NamedTuple):
    job: dict
    tag: dict | None = None  # the tag given to request() when this is the answer to it


class JobList(NamedTuple):
    jobs: list


class Reply(NamedTuple):
    op: str
    result: Any
    tag: dict | None = None


class RequestFailed(NamedTuple):
    op: str
    code: str
    message: str
    tag: dict | None = None


class LinkError(Exception):
    """A request was made while no connection exists or is being made."""
