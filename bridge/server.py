"""RPC layer, server side: accept connections, run the handshake, dispatch requests to a handler.

Threads: one accept thread; per connection one reader thread (TLS when configured, the handshake,
then requests) and, once authenticated, the Session's writer thread. Requests from one connection are dispatched one after
another on its reader thread, so its responses come back in request order; a slow request holds up
only its own connection. All threads are daemons, and stop() returns within about two seconds.
"""

from __future__ import annotations

import itertools
import logging
import socket
import ssl
import threading
import time
from typing import Any, Callable, Iterator

from .auth import FailureLimiter, is_loopback, server_proof
from .framing import RECV_SIZE, FrameDecoder, encode_frame, shutdown_socket
from .handshake import Greeting, HandshakeFailed, Stream, accept_client, refuse, secure_server_side
from .protocol import (HANDSHAKE_TIMEOUT, BridgeError, hello_accepted, message_kind, protocol_error,
                       response_error, response_ok)
from .session import Session, check_event

__all__ = ["BridgeServer", "Session", "Handler"]

logger = logging.getLogger("swapline.bridge")

Handler = Callable[[str, dict, Session], Any]


class BridgeServer:
    """The engine's end of the bridge: `handler(op, args, session)` answers every request.

    token None disables authentication: the exchange still runs and any proof is accepted, and the
    server proves itself with the empty token, so only clients without a token accept it. That
    exists for tests and trusted scripts; the engine always passes a token. `tls` wraps every
    connection (in its own thread, under the handshake deadline). Failed logins are counted per
    peer address by `limiter`; a locked-out address's connections are closed at once.
    A stopped server cannot be started again.
    """

    handshake_timeout = HANDSHAKE_TIMEOUT
    max_connections = 64      # bounds the threads an unauthenticated flood can make us start
    # Connections one address may have in the handshake at once, else one peer holding 64 silent ones
    # locks everyone out. Loopback is exempt (a local user could stop the engine; load tests log in 32).
    max_handshakes_per_address = 8
    exempt_loopback = True
    accept_poll = 0.2         # accept() wakes this often to notice stop() where shutdown() won't
    close_grace = 2.0         # how long a closing connection may take to flush its last frames
    linger = 1.0              # how long we drain a closing peer's input (see _close_socket)

    def __init__(self, handler: Handler, *, host: str = "127.0.0.1", port: int = 0,
                 token: str | None = None, engine_info: dict | None = None,
                 tls: ssl.SSLContext | None = None) -> None:
        self._handler = handler
        self._tls = tls
        self._host = host
        self._port = port
        self._token = token
        self._engine_info = engine_info or {}
        encode_frame(hello_accepted(self._engine_info, bytes(32)))  # a bad engine_info fails here
        self.limiter = FailureLimiter()
        self._listener: socket.socket | None = None
        self._accept_thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()        # every live connection, authenticated or not
        self._threads: set[threading.Thread] = set()
        self._sessions: dict[int, Session] = {}
        self._handshaking: dict[str, int] = {}           # address -> its connections still logging in
        self._ids = itertools.count(1)

    @property
    def port(self) -> int:
        return self._port

    def start(self) -> int:
        """Bind, listen, start accepting; returns the bound port (useful with port=0)."""
        if self._stopping.is_set():
            raise RuntimeError("a stopped BridgeServer cannot be started again")
        if self._listener is not None:
            return self._port
        family = socket.AF_INET6 if ":" in self._host else socket.AF_INET
        listener = socket.create_server((self._host, self._port), family=family)
        listener.settimeout(self.accept_poll)
        self._listener = listener
        self._port = listener.getsockname()[1]
        if self._token is None:
            logger.warning("bridge on %s:%d accepts any client: no token set", self._host, self._port)
        self._accept_thread = threading.Thread(target=self._accept_loop, daemon=True,
                                               name="swapline-bridge-accept")
        self._accept_thread.start()
        logger.info("bridge listening on %s:%d", self._host, self._port)
        return self._port

    def broadcast(self, event: dict) -> None:
        """Send an event to every authenticated session; thread-safe, never blocks on a socket."""
        frame = encode_frame(check_event(event))
        with self._lock:
            sessions = list(self._sessions.values())
        for session in sessions:
            session.send_frame(frame)

    def serve_forever(self) -> None:
        """Block until stop() is called from another thread, or until Ctrl-C (which stops too)."""
        self.start()
        try:
            # A timed wait keeps Ctrl-C deliverable on every platform.
            while not self._stopping.wait(0.5):
                pass
        except KeyboardInterrupt:
            logger.info("bridge interrupted")
        finally:
            self.stop()

    def stop(self) -> None:
        """Stop accepting, drop every connection, wait briefly for the threads; idempotent."""
        self._stopping.set()
        if self._listener is not None:
            try:
                self._listener.shutdown(socket.SHUT_RDWR)  # wakes accept() at once on Linux
            except OSError:
                pass  # elsewhere accept() notices the flag within accept_poll
        if self._accept_thread is not None and self._accept_thread is not threading.current_thread():
            self._accept_thread.join(self.accept_poll + 1.0)
        if self._listener is not None:
            self._listener.close()
        with self._lock:
            sockets = list(self._sockets)
            threads = list(self._threads)
        for sock in sockets:
            shutdown_socket(sock)
        # A handler cannot be interrupted; a thread still inside one is left behind (it is a daemon).
        deadline = time.monotonic() + self.close_grace
        for thread in threads:
            if thread is not threading.current_thread():
                thread.join(max(0.0, deadline - time.monotonic()))

    # -- connections -----------------------------------------------------------------------

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self._stopping.is_set():
            try:
                sock, address = self._listener.accept()
            except TimeoutError:
                continue
            except OSError as exc:
                if self._stopping.is_set():
                    break
                # e.g. out of file descriptors: pause instead of spinning on the same error.
                logger.warning("bridge accept failed: %s", exc)
                time.sleep(self.accept_poll)
                continue
            peer = f"{address[0]}:{address[1]}"
            if (lockout := self.limiter.locked(address[0])) > 0:
                # At once and without a word: a locked-out address costs no thread and no TLS.
                logger.info("bridge closed %s: locked out for %.0f s more", peer, lockout)
                sock.close()
                continue
            thread = threading.Thread(target=self._serve_connection, args=(sock, address[0], peer),
                                      daemon=True, name=f"swapline-bridge-conn-{peer}")
            limited = not (self.exempt_loopback and is_loopback(address[0]))
            with self._lock:
                pending = self._handshaking.get(address[0], 0)
                crowded = limited and pending >= self.max_handshakes_per_address
                admitted = not self._stopping.is_set() and len(self._sockets) < self.max_connections and not crowded
                if admitted:
                    self._sockets.add(sock)
                    self._threads.add(thread)
                    self._handshaking[address[0]] = pending + 1
            if not admitted:
                why = f"{pending} of its connections logging in" if crowded else f"{self.max_connections} open"
                logger.warning("bridge refused %s: %s", peer, why)
                sock.close()
                continue
            thread.start()

    def _serve_connection(self, sock: socket.socket, address: str, peer: str) -> None:
        session: Session | None = None
        stream: Stream = sock
        logging_in = True
        try:
            # One deadline for TLS and the whole handshake, from the moment of accepting.
            deadline = time.monotonic() + self.handshake_timeout
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._tls is not None:
                stream = secure_server_side(sock, self._tls, deadline)
            greeting = accept_client(stream, self._token, deadline)
            logging_in = False
            self._logged_in(address)
            self.limiter.success(address)
            session = self._open_session(stream, peer, greeting)
            if session is not None:
                self._serve_session(stream, session, greeting.decoder, greeting.frames)
        except HandshakeFailed as failed:
            self._handshake_failed(address, peer, failed)
            if failed.error is not None:
                try:
                    refuse(stream, failed.error)
                except OSError:
                    pass  # the peer has gone or stalled: it was being turned away anyway
        except TimeoutError:
            logger.info("bridge: no handshake from %s in %g s", peer, self.handshake_timeout)
        except OSError as exc:
            logger.debug("bridge connection %s: %s", peer, exc)
        except Exception:  # noqa: BLE001 - one broken connection must not take the server down
            logger.exception("bridge connection %s failed", peer)
        finally:
            if logging_in:
                self._logged_in(address)
            self._end_connection(sock, stream, session)

    def _logged_in(self, address: str) -> None:
        """One connection of `address` has left the handshake (in or out)."""
        with self._lock:
            left = self._handshaking.pop(address, 1) - 1
            if left > 0:
                self._handshaking[address] = left

    def _handshake_failed(self, address: str, peer: str, failed: HandshakeFailed) -> None:
        # Counted before the refusal goes out, so no retry can overtake its own failure.
        if failed.error is None:
            logger.info("bridge: closing %s in the handshake: %s", peer, failed.reason)
            return
        logger.warning("bridge refused %s: %s", peer, failed.error)
        if failed.error.code == "unauthorized":
            lockout = self.limiter.failure(address)
            if lockout:
                logger.warning("bridge: locking out %s for %.0f s after repeated failed logins",
                               address, lockout)

    def _open_session(self, stream: Stream, peer: str, greeting: Greeting) -> Session | None:
        session = Session(next(self._ids), stream, peer, greeting.client)
        hello = encode_frame(hello_accepted(self._engine_info, server_proof(
            self._token, greeting.nonce, greeting.challenge)))
        # Registered before the hello goes out, so every broadcast after the client has read its
        # hello reaches it; events sent meanwhile wait in the queue until the writer starts.
        with self._lock:
            if self._stopping.is_set():
                return None
            self._sessions[session.id] = session
        try:
            stream.sendall(hello)
        except BaseException:
            with self._lock:
                self._sessions.pop(session.id, None)
            raise
        stream.settimeout(None)  # the writer's sendall must not time out mid-frame; stop() shuts down
        session.start()
        logger.info("bridge session %d: %r from %s", session.id, greeting.client, peer)
        return session

    def _serve_session(self, sock: Stream, session: Session, decoder: FrameDecoder,
                       frames: Iterator[dict]) -> None:
        while True:
            try:
                for message in frames:
                    kind = message_kind(message)
                    if kind != "request":
                        raise BridgeError("protocol", f"a client may not send a {kind} frame here")
                    self._dispatch(session, message)
            except BridgeError as err:  # from decoding or classifying; _dispatch raises none
                self._refuse(session, err.message)
                return
            if session.closed:
                return
            data = sock.recv(RECV_SIZE)
            if not data:
                if decoder.buffered:
                    logger.info("bridge session %d: closed inside a frame", session.id)
                return
            frames = decoder.decode(data)

    def _refuse(self, session: Session, reason: str) -> None:
        logger.warning("bridge session %d: protocol error, closing: %s", session.id, reason)
        session.send_frame(encode_frame(protocol_error(reason)))
        session.finish()

    def _dispatch(self, session: Session, message: dict) -> None:
        request_id, op = message["id"], message["op"]
        try:
            result = self._handler(op, message.get("args", {}), session)
        except BridgeError as err:
            reply = response_error(request_id, err)
        except Exception as exc:  # noqa: BLE001 - any handler bug becomes `internal`, logged in full
            logger.exception("bridge op %r from session %d failed", op, session.id)
            summary = " ".join(f"{op} failed: {type(exc).__name__}: {exc}".split())  # one line
            reply = response_error(request_id, BridgeError("internal", summary[:200]))
        else:
            reply = response_ok(request_id, result)
        try:
            frame = encode_frame(reply)
        except BridgeError as err:
            logger.error("bridge op %r: reply cannot be sent: %s", op, err.message)
            failure = BridgeError("internal", f"the result of {op} cannot be sent: {err.message}"[:200])
            frame = encode_frame(response_error(request_id, failure))
        session.send_frame(frame)

    def _end_connection(self, sock: socket.socket, stream: Stream, session: Session | None) -> None:
        if session is not None:
            with self._lock:
                self._sessions.pop(session.id, None)
            session.finish()
            if not session.join_writer(self.close_grace):
                session.abort()
                session.join_writer(self.close_grace)
        self._close_socket(stream)
        with self._lock:
            self._sockets.discard(sock)
            self._threads.discard(threading.current_thread())

    def _close_socket(self, sock: Stream) -> None:
        # Closing with unread input makes the kernel send RST, which can destroy our last frame
        # (a refusal, a protocol error) before the peer reads it. So: FIN first, then read and
        # discard the peer's input until it closes too, for at most `linger` seconds.
        try:
            sock.shutdown(socket.SHUT_WR)
            deadline = time.monotonic() + self.linger
            while not self._stopping.is_set() and (remaining := deadline - time.monotonic()) > 0:
                sock.settimeout(remaining)
                if not sock.recv(RECV_SIZE):
                    break
        except OSError:
            pass  # the peer is gone already, which is all the draining waits for
        finally:
            sock.close()
