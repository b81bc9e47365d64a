"""RPC layer, server side: one authenticated connection and its ordered outgoing queue."""

from __future__ import annotations

import logging
import queue
import socket
import threading

from .framing import encode_frame, shutdown_socket

logger = logging.getLogger("swapline.bridge")


def check_event(event: dict) -> dict:
    """Refuse a malformed event early: it is a bug in the engine, not something to send."""
    if not isinstance(event, dict) or not isinstance(event.get("event"), str):
        raise ValueError(f"an event is a map with a string 'event' key, got {event!r:.100}")
    return event


class Session:
    """One authenticated connection, as a request handler sees it.

    Frames leave through a queue drained by this session's own writer thread, so send_event() and
    BridgeServer.broadcast() never wait on a slow client's socket. A client that stops reading until
    MAX_QUEUED frames or MAX_QUEUED_BYTES pile up is disconnected rather than allowed to grow the
    engine's memory (bytes too: 4096 answers of files.read would be 32 GiB).
    """

    MAX_QUEUED = 4096
    MAX_QUEUED_BYTES = 256 * 2**20  # a frame counts until it is sent; one frame is at most 64 MiB

    def __init__(self, session_id: int, sock: socket.socket, peer: str, client: str) -> None:
        self.id = session_id
        self.peer = peer
        self.client = client
        self._sock = sock
        self._queue: queue.Queue[bytes | None] = queue.Queue()
        self._lock = threading.Lock()
        self._closed = False
        self._queued_bytes = 0
        self._writer = threading.Thread(target=self._write_loop, daemon=True,
                                        name=f"swapline-bridge-send-{session_id}")

    def __repr__(self) -> str:
        return f"<Session {self.id} {self.client!r} from {self.peer}>"

    @property
    def closed(self) -> bool:
        return self._closed

    def send_event(self, event: dict) -> None:
        """Queue an event for this client; thread-safe, silently dropped once the session closed."""
        self.send_frame(encode_frame(check_event(event)))

    def send_frame(self, frame: bytes) -> None:
        """Queue an already encoded frame (lets broadcast() encode once for every session)."""
        with self._lock:
            if self._closed:
                return
            if self._queue.qsize() < self.MAX_QUEUED and \
                    self._queued_bytes + len(frame) <= self.MAX_QUEUED_BYTES:
                self._queued_bytes += len(frame)
                self._queue.put(frame)
                return
            frames, size = self._queue.qsize(), self._queued_bytes
        logger.warning("session %d (%s) stopped reading; %d frames (%d bytes) queued, disconnecting",
                       self.id, self.peer, frames, size)
        self.abort()

    def start(self) -> None:
        self._writer.start()

    def finish(self) -> None:
        """Accept no more frames; the writer sends what is queued, then stops."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._queue.put(None)

    def abort(self) -> None:
        """Close now: queued frames are lost; the blocked reader and writer both wake up."""
        self.finish()
        shutdown_socket(self._sock)

    def join_writer(self, timeout: float) -> bool:
        """Wait for the writer to stop; False if it is still blocked on the socket."""
        if self._writer.is_alive():
            self._writer.join(timeout)
        return not self._writer.is_alive()

    def _write_loop(self) -> None:
        try:
            while (frame := self._queue.get()) is not None:
                self._sock.sendall(frame)
                with self._lock:
                    self._queued_bytes -= len(frame)
        except OSError as exc:
            logger.debug("session %d: send failed: %s", self.id, exc)
            self.abort()
