"""RPC layer, both sides: the I/O of one connection's handshake (optional TLS, challenge, proofs).

protocol.py says what each step's frame holds; this module sends and reads them, every step under
one deadline for the whole exchange, so a peer dripping a byte at a time cannot stay. docs/protocol.md
"Handshake" and "TLS" describe the exchange.
"""

from __future__ import annotations

import socket
import ssl
import time
from dataclasses import dataclass, field
from typing import Iterator

from .auth import client_proof, new_nonce
from .framing import RECV_SIZE, FrameDecoder, read_frame, write_frame
from .protocol import (BridgeError, check_accepted, check_challenge, check_hello, check_proof,
                       hello_challenge, hello_proof, hello_refused, hello_request)
from .tls import TLS_RECORD_TYPE_HANDSHAKE, TLSConfig, TLSStream, client_context

__all__ = ["HandshakeFailed", "Greeting", "secure_server_side", "accept_client", "refuse",
           "connect_engine"]

Stream = socket.socket | TLSStream

# The largest handshake frame the server holds while it waits for the rest: a real hello is about
# 100 bytes. Without it each unauthenticated connection could make the engine buffer a 64 MiB frame.
MAX_HELLO = 64 * 1024


class HandshakeFailed(Exception):
    """The server ends a connection in its handshake: `error` is for the peer (see refuse()), or
    None to close without a word. Not sent here: the server counts a failed login first."""

    def __init__(self, reason: str, error: BridgeError | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.error = error


@dataclass
class Greeting:
    """A client that proved it holds the token; `frames` are those it pipelined behind its proof."""

    client: str
    nonce: bytes
    challenge: bytes
    decoder: FrameDecoder
    frames: Iterator[dict] = field(default_factory=lambda: iter(()))


def _remaining(deadline: float) -> float:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimeoutError("the handshake deadline passed")
    return remaining


# -- server side ---------------------------------------------------------------------------

def secure_server_side(sock: socket.socket, context: ssl.SSLContext, deadline: float) -> TLSStream:
    """Run the server's TLS handshake; a client speaking plain bridge frames is told TLS is required."""
    sock.settimeout(_remaining(deadline))
    first = sock.recv(1, socket.MSG_PEEK)
    if not first:
        raise HandshakeFailed("closed before the TLS handshake")
    if first[0] != TLS_RECORD_TYPE_HANDSHAKE:
        error = BridgeError("tls_required", "this engine accepts TLS connections only: turn TLS on "
                                            "and pin the engine's certificate fingerprint")
        raise HandshakeFailed("a plain connection to a TLS engine", error)
    stream = TLSStream(sock, context, server_side=True)
    try:
        stream.handshake(deadline)
    except ssl.SSLError as exc:
        raise HandshakeFailed(f"TLS handshake failed: {exc.reason or exc}") from None
    return stream


def _next_frame(stream: Stream, greeting: Greeting, deadline: float) -> dict:
    try:
        while (frame := next(greeting.frames, None)) is None:
            # Every complete frame has been taken: what is buffered is the start of the awaited hello.
            if greeting.decoder.buffered > MAX_HELLO:
                raise HandshakeFailed(f"a handshake frame of more than {MAX_HELLO} bytes")
            stream.settimeout(_remaining(deadline))
            data = stream.recv(RECV_SIZE)
            if not data:
                raise HandshakeFailed("closed during the handshake")
            greeting.frames = greeting.decoder.decode(data)
    except BridgeError as err:  # an undecodable or oversized frame: no word, just close
        raise HandshakeFailed(f"bad frame in the handshake: {err.message}") from None
    hello = frame.get("hello")
    if not isinstance(hello, dict):
        # Nothing but the handshake is answered before it completes: no word, just close.
        raise HandshakeFailed("sent something other than a hello in the handshake")
    return hello


def refuse(stream: Stream, error: BridgeError) -> None:
    """Send the refusal hello; the handshake deadline is still on the socket, so this is bounded."""
    write_frame(stream, hello_refused(error))


def accept_client(stream: Stream, token: str | None, deadline: float) -> Greeting:
    """Steps 1-3: hello, challenge, proof. Raises HandshakeFailed, the refusal not yet sent.

    Step 4, the accepted hello with the server's proof, is the caller's: it registers the session
    first, so no broadcast sent after the client has read that hello can miss it.
    """
    greeting = Greeting("", b"", new_nonce(), FrameDecoder())
    try:
        greeting.client, greeting.nonce = check_hello(_next_frame(stream, greeting, deadline))
    except BridgeError as err:
        raise HandshakeFailed(str(err), err) from None
    write_frame(stream, hello_challenge(greeting.challenge))
    try:
        check_proof(_next_frame(stream, greeting, deadline), token, greeting.challenge, greeting.nonce)
    except BridgeError as err:
        raise HandshakeFailed(str(err), err) from None
    return greeting


# -- client side ---------------------------------------------------------------------------

def _secure_client_side(sock: socket.socket, tls: TLSConfig, host: str, where: str,
                        deadline: float) -> TLSStream:
    context = client_context(tls)
    stream = TLSStream(sock, context, server_side=False, server_hostname=host)
    try:
        stream.handshake(deadline)
    except ssl.SSLCertVerificationError as exc:
        raise BridgeError("untrusted_engine", f"the engine at {where} has a certificate this "
                                              f"client does not trust: {exc.verify_message}") from None
    except TimeoutError:
        raise
    except OSError as exc:  # ssl.SSLError is one; so is the reset of a plain engine hanging up
        raise BridgeError("tls", f"no TLS handshake with the engine at {where} ({_why(exc)}): "
                                 "is TLS turned on for that engine?") from None
    stream.verify(tls, where)
    return stream


def _why(exc: OSError) -> str:
    return getattr(exc, "reason", None) or exc.strerror or str(exc) or type(exc).__name__


def _read(stream: Stream, where: str, deadline: float) -> dict:
    stream.settimeout(_remaining(deadline))
    reply = read_frame(stream)
    if reply is None:
        raise BridgeError("unreachable", f"the engine at {where} closed the connection during the "
                                         "handshake (it turns an address away for a while after "
                                         "repeated failed logins)")
    return reply


def connect_engine(sock: socket.socket, *, token: str | None, client_name: str, host: str,
                   tls: TLSConfig | None, deadline: float) -> tuple[Stream, dict]:
    """Client side of the whole handshake on a connected socket; returns the stream and engine info.

    Raises BridgeError for refusals and an engine that cannot prove it holds the token; socket
    errors and TimeoutError pass through for the caller to word.
    """
    where = f"{host}:{sock.getpeername()[1]}"
    stream: Stream = sock if tls is None else _secure_client_side(sock, tls, host, where, deadline)
    nonce = new_nonce()
    write_frame(stream, hello_request(client_name, nonce))
    challenge = check_challenge(_read(stream, where, deadline))
    write_frame(stream, hello_proof(client_proof(token, challenge, nonce)))
    return stream, check_accepted(_read(stream, where, deadline), token, nonce, challenge)
