"""Connection layer (no bpy): the add-on's one link to an engine, driven by a worker thread.

The worker launches or reaches the engine, sends queued requests and turns everything that comes
back into the typed messages below, which it posts to `EngineLink.inbox`. Blender's main thread
only calls the non-blocking methods (`connect`, `request`, `disconnect`, `pending_tags`) and reads
the inbox from the timer drain in `sync.py`, the one place that writes Blender properties.
"""

from __future__ import annotations

import itertools
import queue
import secrets
import threading
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from ..bridge import BridgeClient, BridgeError, Message
from . import engine_process

DISCONNECTED, CONNECTING, CONNECTED, FAILED = "DISCONNECTED", "CONNECTING", "CONNECTED", "FAILED"
# The worker blocks on one queue that gets both requests from Blender and messages from the engine,
# so neither waits on a poll; the timeout only bounds how late a dead local engine is noticed.
POLL_SECONDS = 0.25


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


_JOB_OPS = ("job.start", "job.get", "job.cancel", "job.control")


@dataclass
class _Pending:
    op: str
    args: dict
    tag: dict


@dataclass
class EngineLink:
    """One connection at a time; `connect` replaces nothing, call `disconnect` first."""

    inbox: queue.Queue = field(default_factory=queue.Queue)
    state: str = DISCONNECTED
    engine: dict | None = None
    _outbox: queue.Queue = field(default_factory=queue.Queue)
    _pending: dict = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _seq: Any = field(default_factory=itertools.count)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _local: engine_process.LocalEngine | None = None

    # Main-thread API (never blocks) ----------------------------------------------------------

    def connect(self, config: LinkConfig) -> bool:
        """Start connecting in the background; False when already connected or connecting."""
        with self._lock:
            if self.state in (CONNECTING, CONNECTED):
                return False
            self.state = CONNECTING
            self._stop = threading.Event()
            self._outbox = queue.Queue()
        self._post(Connection(CONNECTING, _connecting_text(config)))
        self._thread = threading.Thread(target=self._run, args=(config, self._stop, self._outbox),
                                        name="swapline-link", daemon=True)
        self._thread.start()
        return True

    def request(self, op: str, args: dict | None = None, tag: dict | None = None) -> None:
        """Queue a request; it is sent once connected. Raises LinkError when there is no link."""
        with self._lock:
            if self.state not in (CONNECTING, CONNECTED):
                raise LinkError("The engine is not connected")
            seq = next(self._seq)
            self._pending[seq] = _Pending(op, dict(args or {}), dict(tag or {}))
            self._outbox.put(seq)

    def pending_tags(self) -> list[dict]:
        """Tags of requests not answered yet (headless waiting uses this)."""
        with self._lock:
            return [dict(p.tag, op=p.op) for p in self._pending.values()]

    def disconnect(self) -> None:
        """Close the connection and stop a local engine: the terminate signal goes at once, the
        worker does the waiting (and engine_process kills what is left when Python exits)."""
        self._stop.set()
        self._outbox.put(None)
        local = self._local
        if local is not None:
            local.signal_stop()

    # Worker thread ---------------------------------------------------------------------------

    def _post(self, message: NamedTuple) -> None:
        self.inbox.put(message)

    def _run(self, config: LinkConfig, stop: threading.Event, outbox: queue.Queue) -> None:
        client: BridgeClient | None = None
        reason = "Disconnected"
        try:
            host, port, token = config.host, config.port, config.token
            if config.mode == "LOCAL":
                token = secrets.token_urlsafe(24)
                self._local = engine_process.launch(config.python, config.workspace, token, cwd=config.cwd or None,
                                                    timeout=config.launch_timeout, should_stop=stop.is_set)
                host, port = self._local.host, self._local.port
            if stop.is_set():
                raise engine_process.LaunchError("cancelled", "Disconnected")
            client = BridgeClient(host, port, token, client_name="swapline-blender", timeout=config.connect_timeout,
                                  inbox=outbox)
            engine = client.connect()
            client.start()
        except (BridgeError, OSError) as exc:
            self._fail(_failure_text(exc, config), stop)
            if client is not None:
                client.close()
            return
        with self._lock:
            self.state, self.engine = CONNECTED, dict(engine or {})
        self._post(Connection(CONNECTED, f"Connected to {host}:{port}", dict(engine or {})))
        in_flight: dict[int, int] = {}
        with self._lock:  # re-attach: mirror every job first; pending until the answer is posted
            seq = next(self._seq)
            self._pending[seq] = _Pending("job.list", {}, {"purpose": "attach"})
        self._send(client, seq, "job.list", {}, in_flight)
        try:
            reason = self._serve(client, stop, outbox, in_flight)
        finally:
            client.close()
            self._fail(reason, stop, state=DISCONNECTED)

    def _serve(self, client: BridgeClient, stop: threading.Event, outbox: queue.Queue,
               in_flight: dict[int, int]) -> str:
        while not stop.is_set():
            try:
                item = outbox.get(timeout=POLL_SECONDS)
            except queue.Empty:
                item = -1
            if item is None:
                return "Disconnected"
            if isinstance(item, Message):  # from the engine, through the shared queue
                if item.kind == "closed":
                    return f"Engine connection closed: {item.payload}"
                self._receive(item, in_flight)
            elif item >= 0:
                with self._lock:
                    pending = self._pending.get(item)
                if pending is not None:
                    self._send(client, item, pending.op, pending.args, in_flight)
            if self._local is not None and not self._local.running():
                return f"The local engine exited (code {self._local.process.returncode}); see {self._local.log_path}"
        return "Disconnected"

    def _send(self, client: BridgeClient, seq: int, op: str, args: dict, in_flight: dict) -> None:
        try:
            bridge_id = client.send(op, args)
        except BridgeError as exc:
            self._answer(seq, op, None, exc.code, exc.message)
            return
        in_flight[bridge_id] = seq

    def _receive(self, message: Any, in_flight: dict) -> None:
        payload = message.payload if isinstance(message.payload, dict) else {}
        if message.kind == "event":
            if payload.get("event") == "job" and isinstance(payload.get("job"), dict):
                self._post(JobUpdate(payload["job"]))
            return
        if message.kind != "response" or payload.get("id") not in in_flight:
            return
        seq = in_flight.pop(payload["id"])
        with self._lock:
            pending = self._pending.get(seq)
        if pending is None:  # failed meanwhile
            return
        op = pending.op
        if payload.get("ok"):
            self._answer(seq, op, payload.get("result"))
        else:
            error = payload.get("error") or {}
            self._answer(seq, op, None, str(error.get("code", "internal")), str(error.get("message", "")))

    def _answer(self, seq: int, op: str, result: Any, code: str | None = None, text: str = "") -> None:
        # Post first, forget second: a headless waiter that sees no pending request must also
        # find the answer already in the inbox.
        with self._lock:
            pending = self._pending.get(seq)
        tag = pending.tag if pending else None
        if code is not None:
            self._post(RequestFailed(op, code, text or code, tag))
        elif op == "job.list":
            self._post(JobList(list((result or {}).get("jobs", []))))
        elif op in _JOB_OPS and isinstance(result, dict):
            self._post(JobUpdate(result, tag))
        else:
            self._post(Reply(op, result, tag))
        with self._lock:
            self._pending.pop(seq, None)

    def _fail(self, text: str, stop: threading.Event, state: str = FAILED) -> None:
        """End this connection: fail every unanswered request, stop a local engine, post the state."""
        if self._local is not None:
            self._local.stop()
            self._local = None
        if stop.is_set():
            state, text = DISCONNECTED, "Disconnected"
        with self._lock:  # posting under the lock: no request slips in between, none is lost
            self._post(Connection(state, text))
            for pending in self._pending.values():
                self._post(RequestFailed(pending.op, "unreachable", text, pending.tag))
            self._pending.clear()
            self.state, self.engine = state, None


def _connecting_text(config: LinkConfig) -> str:
    if config.mode == "LOCAL":
        return "Launching the local engine…"
    return f"Connecting to {config.host}:{config.port}…"


def _failure_text(exc: Exception, config: LinkConfig) -> str:
    if isinstance(exc, engine_process.LaunchError):
        return exc.message
    where = f"{config.host}:{config.port}" if config.mode == "REMOTE" else "the local engine"
    if isinstance(exc, BridgeError):
        if exc.code == "unreachable":
            return f"Engine unreachable: {exc.message}"
        if exc.code == "unauthorized":
            return f"The engine at {where} refused the token"
        return f"Cannot connect to {where}: {exc.message}"
    return f"Cannot connect to {where}: {exc}"
