"""RPC layer, client side: handshake, request ids, pending calls, and an inbox for everything else.

Built for Blender's add-on: a reader thread turns frames into Messages on `inbox`, which the add-on's
main-thread timer drains; only connect() and call() block, and both belong on worker threads.
"""

from __future__ import annotations

import itertools
import logging
import queue
import socket
import threading
import time
from typing import Any, NamedTuple

from .framing import RECV_SIZE, FrameDecoder, encode_frame, shutdown_socket
from .handshake import Stream, connect_engine
from .protocol import BridgeError, message_kind, request
from .tls import TLSConfig

__all__ = ["BridgeClient", "Message"]

logger = logging.getLogger("swapline.bridge")


class Message(NamedTuple):
    """What the reader thread hands over: kind "response", "event" or "closed" and its payload.

    response: the response map {"id", "ok", "result" | "error"}; event: the event map;
    closed: a readable reason, always the last message of a connection.
    """

    kind: str
    payload: Any


class _Waiter:
    """The slot a blocking call() waits on; filled by the reader thread under the client's lock."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.response: dict | None = None
        self.error: BridgeError | None = None


class BridgeClient:
    """The add-on's (and the CLI's) end of the bridge, for one connection.

    States: new -> open (connect() succeeded) -> closed. A failed connect() leaves the client new,
    so it may be retried; a closed client stays closed: make a new one to reconnect.
    Connection failures of every kind surface as BridgeError("unreachable", readable reason).
    The engine must prove it holds the token too (else "untrusted_engine"); `tls` encrypts the
    connection and checks the engine's certificate (see bridge/tls.py).
    """

    def __init__(self, host: str, port: int, token: str, *, client_name: str = "swapline",
                 timeout: float = 10.0, inbox: queue.Queue | None = None,
                 tls: TLSConfig | None = None) -> None:
        self.host = host
        self.port = port
        self.client_name = client_name
        self.timeout = timeout
        self.tls = tls
        # A caller that also waits for other work can pass its own queue: one blocking get() then
        # wakes for either, with no polling delay between an answer arriving and its handling.
        self.inbox: queue.Queue = inbox if inbox is not None else queue.Queue()
        self.engine: dict | None = None
        self._token = token
        self._state = "new"
        self._sock: Stream | None = None
        self._reader: threading.Thread | None = None
        self._lock = threading.Lock()            # state, waiters, abandoned ids
        self._connect_lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._ids = itertools.count(1)
        self._waiters: dict[int, _Waiter] = {}
        self._abandoned: set[int] = set()        # ids of timed-out calls whose answer is dropped
        self._abort_reason: str | None = None    # why close() or a failed send tore the connection down

    def __repr__(self) -> str:
        return f"<BridgeClient {self.host}:{self.port} {self._state}>"

    @property
    def connected(self) -> bool:
        return self._state == "open"

    def connect(self) -> dict:
        """TCP connect, then TLS and the handshake (blocking, up to `timeout` each); returns the engine info."""
        with self._connect_lock:
            if self._state == "open":
                return dict(self.engine or {})
            if self._state == "closed":
                raise BridgeError("unreachable", "this connection has ended; use a new BridgeClient")
            where = f"{self.host}:{self.port}"
            try:
                sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
            except OSError as exc:
                raise BridgeError("unreachable", f"cannot reach the engine at {where}: {_reason(exc)}") from None
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                stream, engine = connect_engine(
                    sock, token=self._token, client_name=self.client_name, host=self.host,
                    tls=self.tls, deadline=time.monotonic() + self.timeout)
            except TimeoutError:
                sock.close()
                raise BridgeError("unreachable", f"no handshake answer from {where} within "
                                                 f"{self.timeout:g} s") from None
            except OSError as exc:
                sock.close()
                raise BridgeError("unreachable", f"lost the engine at {where} during the handshake: "
                                                 f"{_reason(exc)}") from None
            except BridgeError:
                sock.close()
                raise
            # The timeout stays on the socket: it bounds send(); the reader just retries on it.
            stream.settimeout(self.timeout)
            self._sock, self.engine, self._state = stream, engine, "open"
            return dict(engine)

    def start(self) -> None:
        """Start the reader thread, connecting first if connect() has not been called."""
        if self._state == "new":
            self.connect()
        with self._lock:
            if self._reader is not None:
                return
            if self._state != "open":
                raise BridgeError("unreachable", "not connected to the engine")
            self._reader = threading.Thread(target=self._read_loop, daemon=True,
                                            name=f"swapline-bridge-client-{self.port}")
            self._reader.start()

    def send(self, op: str, args: dict | None = None) -> int:
        """Send a request and return its id; the response arrives on `inbox`."""
        return self._send(op, args, None)

    def call(self, op: str, args: dict | None = None, timeout: float = 30.0) -> Any:
        """Send a request and wait for its result (never on Blender's main thread).

        Raises the engine's BridgeError for an error response, BridgeError("timeout") when no answer
        comes in time (a late answer is then dropped), BridgeError("unreachable") if the connection ends.
        """
        waiter = _Waiter()
        request_id = self._send(op, args, waiter)
        if not waiter.done.wait(timeout):
            with self._lock:
                timed_out = self._waiters.pop(request_id, None) is not None
                if timed_out:
                    self._abandoned.add(request_id)
            if timed_out:
                raise BridgeError("timeout", f"no answer to {op} within {timeout:g} s")
            # Otherwise the reader filled the waiter (under the lock) just as the wait ran out.
        if waiter.error is not None:
            raise waiter.error
        assert waiter.response is not None
        if waiter.response["ok"]:
            return waiter.response.get("result")
        raise BridgeError.from_wire(waiter.response.get("error"))

    def close(self) -> None:
        """End the connection; the inbox gets Message("closed", "closed by the client")."""
        with self._lock:
            if self._state == "new":
                self._state = "closed"
                return
        reader = self._abort("closed by the client")
        if reader is not None and reader is not threading.current_thread():
            reader.join(self.timeout)

    # -- internals --------------------------------------------------------------------------

    def _send(self, op: str, args: dict | None, waiter: _Waiter | None) -> int:
        if not isinstance(op, str):
            raise BridgeError("bad_request", f"op must be a string, not {type(op).__name__}")
        if args is not None and not isinstance(args, dict):
            raise BridgeError("bad_request", f"args must be a map, not {type(args).__name__}")
        if self._reader is None and self._state == "open":
            self.start()
        with self._lock:
            request_id = next(self._ids)
        frame = encode_frame(request(request_id, op, args or {}))
        with self._lock:
            if self._state != "open":
                raise BridgeError("unreachable", "not connected to the engine")
            if waiter is not None:
                self._waiters[request_id] = waiter
            sock = self._sock
        assert sock is not None
        try:
            with self._write_lock:
                sock.sendall(frame)
        except OSError as exc:
            # A partial frame may be on the wire, so the stream is unusable either way.
            reason = f"sending {op} failed: {_reason(exc)}"
            self._abort(reason)
            raise BridgeError("unreachable", reason) from None
        return request_id

    def _read_loop(self) -> None:
        assert self._sock is not None
        sock = self._sock
        decoder = FrameDecoder()
        reason = "the engine closed the connection"
        try:
            while True:
                try:
                    data = sock.recv(RECV_SIZE)
                except TimeoutError:
                    continue  # the timeout exists for send(); an idle connection is fine
                except OSError as exc:
                    reason = f"connection to the engine lost: {_reason(exc)}"
                    break
                if not data:
                    if decoder.buffered:
                        reason = "the engine closed the connection inside a frame"
                    break
                for message in decoder.decode(data):
                    self._route(message)
        except BridgeError as err:
            reason = f"protocol error: {err.message}"
        except Exception:  # noqa: BLE001 - the inbox must still get its closing message
            logger.exception("bridge client reader failed")
            reason = "internal error in the bridge client"
        finally:
            self._finish(self._abort_reason or reason)

    def _route(self, message: dict) -> None:
        kind = message_kind(message)
        if kind == "event":
            self.inbox.put(Message("event", message))
        elif kind == "response":
            with self._lock:
                waiter = self._waiters.pop(message["id"], None)
                if waiter is not None:
                    waiter.response = message
                    waiter.done.set()
                    return
                if message["id"] in self._abandoned:
                    self._abandoned.discard(message["id"])
                    return
            self.inbox.put(Message("response", message))
        elif kind == "error":
            raise BridgeError("protocol", "the engine refused a frame: "
                                          f"{BridgeError.from_wire(message['error']).message}")
        else:
            raise BridgeError("protocol", f"unexpected {kind} frame from the engine")

    def _abort(self, reason: str) -> threading.Thread | None:
        """Tear the connection down; the reader, if running, finishes it and returns it."""
        with self._lock:
            sock, reader = self._sock, self._reader
            reason = self._abort_reason = self._abort_reason or reason  # the first cause wins
        if sock is not None:
            shutdown_socket(sock)  # wakes the reader, which then finishes the close
        if reader is None:
            self._finish(reason)
        return reader

    def _finish(self, reason: str) -> None:
        """Exactly once per connection: fail waiting calls, close the socket, post "closed"."""
        with self._lock:
            if self._state == "closed":
                return
            self._state = "closed"
            waiters, self._waiters = self._waiters, {}
            for waiter in waiters.values():
                waiter.error = BridgeError("unreachable", reason)
                waiter.done.set()
            sock = self._sock
        if sock is not None:
            shutdown_socket(sock)
            # Under the write lock, so no send() is inside a syscall on the descriptor we close.
            with self._write_lock:
                sock.close()
        logger.info("bridge client %s:%d closed: %s", self.host, self.port, reason)
        self.inbox.put(Message("closed", reason))


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc) or type(exc).__name__
