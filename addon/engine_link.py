"""Connection layer (no bpy): the add-on's one link to an engine, driven by a worker thread.

The worker launches or reaches the engine, sends queued requests and turns everything that comes
back into the typed messages below, which it posts to `EngineLink.inbox`. Blender's main thread
only calls the non-blocking methods (`connect`, `request`, `disconnect`, `pending_tags`, ...) and
reads the inbox from the timer drain in `sync.py`, the one place that writes Blender properties.

A connection that ends without the user asking (engine killed, network gone) is not given up: the
worker posts CONNECTING with the reason, waits (RETRY_DELAYS, up to 10 s apart), relaunches a local
engine that died (same workspace: the engine takes its interrupted jobs up again) or reconnects,
and re-attaches (job.list). Requests made meanwhile wait and go out after the reconnect, or fail
after QUEUE_LIMIT seconds. A refused token, a protocol mismatch or a failed launch is FAILED at once.
With a remote engine, requests naming local files wait for their upload first (transfers.py).
"""

from __future__ import annotations

import itertools
import queue
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from ..bridge import BridgeClient, BridgeError, Message
from ..bridge.tls import TLSConfig
from . import engine_process, transfers
from .link_messages import (CONNECTED, CONNECTING, DISCONNECTED, FAILED, Connection, JobList, JobUpdate, LinkConfig,
                            LinkError, Reply, RequestFailed)
from .transfers import Endpoint, Transfer

__all__ = ["EngineLink", "LinkConfig", "LinkError", "Connection", "JobUpdate", "JobList", "Reply", "RequestFailed",
           "Transfer", "DISCONNECTED", "CONNECTING", "CONNECTED", "FAILED"]

# The worker blocks on one queue that gets both requests from Blender and messages from the engine,
# so neither waits on a poll; the timeout only bounds how late a dead local engine is noticed.
POLL_SECONDS = 0.25
RETRY_DELAYS = transfers.RETRY_DELAYS
QUEUE_LIMIT = 60.0  # seconds a request may wait for a lost engine before it fails
STEADY_SECONDS = 30.0  # a connection that lasted this long starts the backoff afresh when it ends


_JOB_OPS = ("job.start", "job.get", "job.cancel", "job.control")


@dataclass
class _Pending:
    op: str
    args: dict
    tag: dict
    queued: float = field(default_factory=time.monotonic)


class _FromEngine(NamedTuple):
    generation: int  # which connection it came from: a closed one's late messages are dropped
    message: Message


class _Inbox:
    """What a BridgeClient posts to: the worker's queue, each message stamped with its connection."""

    def __init__(self, outbox: queue.Queue, generation: int) -> None:
        self._outbox, self._generation = outbox, generation

    def put(self, message: Message) -> None:
        self._outbox.put(_FromEngine(self._generation, message))


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
    _local_token: str = ""
    _transfers: transfers.TransferWorker | None = None

    # Main-thread API (never blocks) ----------------------------------------------------------

    def connect(self, config: LinkConfig) -> bool:
        """Start connecting in the background; False when already connected or connecting."""
        with self._lock:
            if self.state in (CONNECTING, CONNECTED):
                return False
            self.state = CONNECTING
            self._stop = threading.Event()
            self._outbox = queue.Queue()
            # A remote engine cannot read this machine's files: they go up first, on their own thread.
            self._transfers = transfers.TransferWorker(_remote_endpoint(config), self._post) \
                if config.mode == "REMOTE" else None
        self._post(Connection(CONNECTING, _connecting_text(config)))
        self._thread = threading.Thread(target=self._run, args=(config, self._stop, self._outbox),
                                        name="swapline-link", daemon=True)
        self._thread.start()
        return True

    @property
    def remote(self) -> bool:
        """Is the engine (being) reached over the network, so files travel through transfers?"""
        return self._transfers is not None

    def request(self, op: str, args: dict | None = None, tag: dict | None = None) -> None:
        """Queue a request; it is sent once connected (after its upload, for a remote engine).
        Raises LinkError when there is no link."""
        with self._lock:
            if self.state not in (CONNECTING, CONNECTED):
                raise LinkError("The engine is not connected")
            seq = next(self._seq)
            pending = self._pending[seq] = _Pending(op, dict(args or {}), dict(tag or {}))
            worker, outbox = self._transfers, self._outbox
        files = transfers.local_files(op, pending.args) if worker is not None else {}
        output = transfers.remote_output(op, pending.args) if worker is not None else None
        if output is not None:  # written on the engine's machine; remote_results fetches it when done
            pending.args, pending.tag["fetch"] = output
        if files:
            remote = worker.remote_paths(files)
            if remote is None:
                self._hold(seq, pending, files, worker, outbox)
                return
            pending.args = transfers.with_remote_paths(op, pending.args, remote)
        outbox.put(seq)

    def pending_tags(self) -> list[dict]:
        """Tags of requests not answered yet (headless waiting uses this)."""
        with self._lock:
            return [dict(p.tag, op=p.op) for p in self._pending.values()]

    def download(self, job_id: str, kind: str, label: str, remote_dir: str, local_dir: str) -> bool:
        """Copy a remote job's result folder here; a Transfer message says when it is done (or failed).
        False when the engine is local (its files are here already) or there is no link."""
        worker = self._transfers
        if worker is None:
            return False
        worker.download(f"download-{job_id}", kind, label, remote_dir, local_dir, lambda _paths: None,
                        lambda _code, _text: None)
        return True

    def cancel_transfer(self, key: str) -> bool:
        """Cancel an upload or download by its Transfer key; False when there is none to cancel."""
        worker = self._transfers
        if worker is None:
            return False
        worker.cancel(key)
        return True

    def disconnect(self) -> None:
        """Close the connection and stop a local engine: the terminate signal goes at once, the
        worker does the waiting (and engine_process kills what is left when Python exits)."""
        self._stop.set()
        self._outbox.put(None)
        worker = self._transfers
        if worker is not None:
            worker.close()
        local = self._local
        if local is not None:
            local.signal_stop()

    def _hold(self, seq: int, pending: _Pending, files: dict, worker: transfers.TransferWorker,
              outbox: queue.Queue) -> None:
        """Send the request once its files are on the engine, with their paths there."""
        def finished(remote: dict) -> None:
            with self._lock:
                if self._pending.get(seq) is not pending:
                    return
                pending.args = transfers.with_remote_paths(pending.op, pending.args, remote)
                pending.queued = time.monotonic()
            outbox.put(seq)

        def failed(code: str, text: str) -> None:
            self._answer(seq, pending.op, None, code, text)

        kind = str(pending.tag.get("kind") or pending.args.get("kind") or pending.op)
        worker.upload(f"upload-{seq}", kind, str(pending.tag.get("label") or pending.op), files, finished, failed)

    # Worker thread ---------------------------------------------------------------------------

    def _post(self, message: NamedTuple) -> None:
        self.inbox.put(message)

    def _run(self, config: LinkConfig, stop: threading.Event, outbox: queue.Queue) -> None:
        unsent: list[int] = []  # requests that met no connection, oldest first
        generation, attempt, attached_once = 0, 0, False
        while not stop.is_set():
            generation += 1
            try:
                client, engine, where = self._open(config, stop, outbox, generation)
            except (BridgeError, OSError) as exc:
                text = _failure_text(exc, config)
                if not attached_once or not _retryable(exc):
                    self._fail(text, stop)
                    return
                if not self._pause(f"Engine connection lost: {text}", attempt, stop, outbox, unsent):
                    break
                attempt += 1
                continue
            if stop.is_set():  # Disconnect was pressed during the handshake: send nothing queued
                client.close()
                break
            attached_once, connected_at = True, time.monotonic()
            with self._lock:
                self.state, self.engine = CONNECTED, dict(engine or {})
            self._post(Connection(CONNECTED, f"Connected to {where}", dict(engine or {})))
            in_flight: dict[int, int] = {}
            with self._lock:  # re-attach: mirror every job first; pending until the answer is posted
                seq = next(self._seq)
                self._pending[seq] = _Pending("job.list", {}, {"purpose": "attach"})
            for item in [seq, *unsent]:
                with self._lock:
                    pending = self._pending.get(item)
                if pending is not None:
                    self._send(client, item, pending.op, pending.args, in_flight)
            unsent.clear()
            try:
                reason = self._serve(client, stop, outbox, in_flight, generation)
            finally:
                client.close()
            if stop.is_set():
                break
            self._lost(in_flight, reason)
            # an engine that keeps dying soon after it is reached is tried less and less often
            attempt = 0 if time.monotonic() - connected_at > STEADY_SECONDS else attempt
            if not self._pause(f"Engine connection lost: {reason}", attempt, stop, outbox, unsent):
                break
            attempt += 1
        self._fail("Disconnected", stop, state=DISCONNECTED)

    def _open(self, config: LinkConfig, stop: threading.Event, outbox: queue.Queue,
              generation: int) -> tuple[BridgeClient, dict, str]:
        """Reach the engine (launching a local one that is not running) and shake hands."""
        if config.mode == "LOCAL":
            if self._local is None or not self._local.running():
                if self._local is not None:
                    self._local.stop()
                # a new engine on the same workspace: it re-queues the jobs the dead one left
                self._local_token = secrets.token_urlsafe(24)
                self._local = engine_process.launch(config.python, config.workspace, self._local_token,
                                                    cwd=config.cwd or None, timeout=config.launch_timeout,
                                                    should_stop=stop.is_set)
            endpoint = Endpoint(self._local.host, self._local.port, self._local_token, timeout=config.connect_timeout)
        else:
            endpoint = _remote_endpoint(config)
        if stop.is_set():
            raise engine_process.LaunchError("cancelled", "Disconnected")
        client = endpoint.client(inbox=_Inbox(outbox, generation))
        try:
            engine = client.connect()
            client.start()
        except BaseException:
            client.close()
            raise
        return client, engine, f"{endpoint.host}:{endpoint.port}"

    def _pause(self, reason: str, attempt: int, stop: threading.Event, outbox: queue.Queue,
               unsent: list[int]) -> bool:
        """Wait before the next try, collecting new requests and failing those queued too long.
        False when the user disconnected meanwhile."""
        delay = RETRY_DELAYS[min(attempt, len(RETRY_DELAYS) - 1)]
        with self._lock:
            self.state, self.engine = CONNECTING, None
        self._post(Connection(CONNECTING, f"{reason}; reconnecting in {delay:g} s…"))
        deadline = time.monotonic() + delay
        while not stop.is_set():
            self._expire(unsent)
            left = deadline - time.monotonic()
            if left <= 0:
                return True
            try:
                item = outbox.get(timeout=min(left, 1.0))
            except queue.Empty:
                continue
            if item is None:
                return False
            if isinstance(item, int) and item >= 0:
                unsent.append(item)
            # anything else is a message of a connection that has ended: dropped
        return False

    def _expire(self, unsent: list[int]) -> None:
        now = time.monotonic()
        for seq in list(unsent):
            with self._lock:
                pending = self._pending.get(seq)
            if pending is None or now - pending.queued > QUEUE_LIMIT:
                unsent.remove(seq)
            if pending is not None and now - pending.queued > QUEUE_LIMIT:
                label = pending.tag.get("label") or pending.op
                self._answer(seq, pending.op, None, "unreachable",
                             f"The engine has been unreachable for {QUEUE_LIMIT:.0f} s; {label} was not sent")

    def _lost(self, in_flight: dict[int, int], reason: str) -> None:
        """Requests sent but not answered when the connection ended: the engine may have acted on
        them, so they are not sent again; the re-attach shows what became of jobs."""
        for seq in in_flight.values():
            with self._lock:
                pending = self._pending.get(seq)
            if pending is None:
                continue
            if pending.tag.get("purpose") == "attach":  # the reconnect attaches again
                with self._lock:
                    self._pending.pop(seq, None)
                continue
            self._answer(seq, pending.op, None, "unreachable",
                         f"The engine connection was lost before it answered ({reason})")

    def _serve(self, client: BridgeClient, stop: threading.Event, outbox: queue.Queue,
               in_flight: dict[int, int], generation: int) -> str:
        while not stop.is_set():
            try:
                item = outbox.get(timeout=POLL_SECONDS)
            except queue.Empty:
                item = -1
            if item is None:
                return "Disconnected"
            if isinstance(item, _FromEngine):  # from the engine, through the shared queue
                if item.generation != generation:
                    continue
                if item.message.kind == "closed":
                    return f"connection closed: {item.message.payload}"
                self._receive(item.message, in_flight)
            elif item >= 0:
                with self._lock:
                    pending = self._pending.get(item)
                if pending is not None:
                    self._send(client, item, pending.op, pending.args, in_flight)
            if self._local is not None and not self._local.running():
                return f"the local engine exited (code {self._local.process.returncode}); see {self._local.log_path}"
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
        # find the answer already in the inbox. Both under the lock: the link's end (_fail) and an
        # upload's failure may answer the same request at once, and only one of them may.
        with self._lock:
            pending = self._pending.get(seq)
            if pending is None:  # answered already (the link ended, say)
                return
            tag = pending.tag
            if code is not None:
                self._post(RequestFailed(op, code, text or code, tag))
            elif op == "job.list":
                self._post(JobList(list((result or {}).get("jobs", []))))
            elif op in _JOB_OPS and isinstance(result, dict):
                self._post(JobUpdate(result, tag))
            else:
                self._post(Reply(op, result, tag))
            self._pending.pop(seq, None)

    def _fail(self, text: str, stop: threading.Event, state: str = FAILED) -> None:
        """End the link: fail every unanswered request, stop a local engine and the transfers, post the state."""
        if self._local is not None:
            self._local.stop()
            self._local = None
        worker, self._transfers = self._transfers, None  # a later download or upload has no engine to go to
        if worker is not None:
            worker.close()
        if stop.is_set():
            state, text = DISCONNECTED, "Disconnected"
        with self._lock:  # posting under the lock: no request slips in between, none is lost
            self._post(Connection(state, text))
            for pending in self._pending.values():
                self._post(RequestFailed(pending.op, "unreachable", text, pending.tag))
            self._pending.clear()
            self.state, self.engine = state, None


def _remote_endpoint(config: LinkConfig) -> Endpoint:
    tls = TLSConfig(fingerprint=config.tls_fingerprint) if config.use_tls else None
    return Endpoint(config.host, config.port, config.token, tls=tls, timeout=config.connect_timeout)


def _retryable(exc: Exception) -> bool:
    """A lost engine comes back; a refused token, another protocol or a failed launch does not."""
    if isinstance(exc, engine_process.LaunchError):
        return False
    if isinstance(exc, BridgeError):
        return exc.code in transfers.RETRY_CODES
    return isinstance(exc, OSError)


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
