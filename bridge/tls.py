"""Bridge, TLS: optional encryption of a connection, the engine's certificate pinned or CA-checked.

A connection's reader and writer are different threads on both ends, and OpenSSL forbids using one
SSL object from two threads at once (ssl.SSLSocket crashes or corrupts records when it is done). So
TLSStream runs OpenSSL over memory buffers under a lock that is never held across socket I/O, and
whoever takes encrypted bytes out of it sends them before anyone else may: records keep their order
and a slow peer blocks only the sender, never the reader.
"""

from __future__ import annotations

import hashlib
import hmac
import socket
import ssl
import threading
import time
from dataclasses import dataclass

from .protocol import BridgeError

__all__ = ["TLSConfig", "TLSStream", "server_context", "client_context", "certificate_fingerprint",
           "normalize_fingerprint"]

_CHUNK = 256 * 1024          # plaintext encrypted at a time, so a 4 MiB frame is not copied whole
TLS_RECORD_TYPE_HANDSHAKE = 0x16  # the first byte a TLS client sends; a bridge frame starts with 0x00


@dataclass(frozen=True)
class TLSConfig:
    """The client's TLS settings: pin the SHA-256 of the engine's DER certificate, or trust a CA file.

    With a CA file the certificate must also name the host connected to; with both, both must hold.
    """

    fingerprint: str = ""
    cafile: str = ""


def normalize_fingerprint(text: str) -> str:
    """Lower-case hex without separators; BridgeError("tls") unless it is a SHA-256 (64 hex digits)."""
    digits = "".join(text.split()).replace(":", "").lower()
    if len(digits) != 64 or any(c not in "0123456789abcdef" for c in digits):
        raise BridgeError("tls", "the engine's certificate fingerprint must be a SHA-256: 64 hex digits")
    return digits


def certificate_fingerprint(certfile: str) -> str:
    """SHA-256 hex of the DER form of the first certificate in a PEM file (what clients pin)."""
    with open(certfile, encoding="ascii") as f:
        der = ssl.PEM_cert_to_DER_cert(f.read())
    return hashlib.sha256(der).hexdigest()


def server_context(certfile: str, keyfile: str | None = None) -> ssl.SSLContext:
    """The engine's TLS context (TLS 1.2 or later); a bad certificate or key is BridgeError("tls")."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(certfile, keyfile)
    except (OSError, ssl.SSLError) as exc:
        raise BridgeError("tls", f"cannot load the TLS certificate {certfile}: {exc}") from None
    return context


def client_context(config: TLSConfig) -> ssl.SSLContext:
    """The client's context; without a fingerprint or a CA file nothing would be verified: refused."""
    if not config.fingerprint and not config.cafile:
        raise BridgeError("tls", "TLS needs the engine's certificate fingerprint or a CA file")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if config.cafile:
        try:
            context.load_verify_locations(config.cafile)
        except (OSError, ssl.SSLError) as exc:
            raise BridgeError("tls", f"cannot load the CA file {config.cafile}: {exc}") from None
    else:
        # The pin is checked after the handshake (TLSStream.verify); a pinned self-signed
        # certificate has no CA and no host name to check.
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class TLSStream:
    """A TLS connection over a connected socket, with the socket methods the bridge uses.

    Safe for one reading thread and any number of writing threads at once. shutdown() and close()
    act on the socket alone, so stop() can wake a blocked reader from any thread.
    """

    def __init__(self, sock: socket.socket, context: ssl.SSLContext, *, server_side: bool,
                 server_hostname: str | None = None) -> None:
        self._sock = sock
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._tls = context.wrap_bio(self._incoming, self._outgoing, server_side=server_side,
                                     server_hostname=server_hostname)
        self._state_lock = threading.Lock()   # the SSL object and its two buffers
        self._send_lock = threading.Lock()    # taken before _state_lock by whoever drains _outgoing

    def handshake(self, deadline: float) -> None:
        """Run the TLS handshake within `deadline` (time.monotonic()); TimeoutError past it."""
        while True:
            try:
                with self._state_lock:
                    self._tls.do_handshake()
                self._flush()
                return
            except ssl.SSLWantReadError:
                self._flush()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("TLS handshake took too long")
            self._sock.settimeout(remaining)
            data = self._sock.recv(_CHUNK)
            if not data:
                raise ssl.SSLEOFError("the peer closed the connection during the TLS handshake")
            with self._state_lock:
                self._incoming.write(data)

    def peer_fingerprint(self) -> str:
        der = self._tls.getpeercert(binary_form=True)
        return hashlib.sha256(der).hexdigest() if der else ""

    def verify(self, config: TLSConfig, where: str) -> None:
        """Client side, after the handshake: the engine's certificate must match the pin."""
        if config.fingerprint:
            expected, seen = normalize_fingerprint(config.fingerprint), self.peer_fingerprint()
            if not seen or not hmac.compare_digest(expected, seen):
                raise BridgeError("untrusted_engine",
                                  f"the engine at {where} shows certificate SHA-256 {seen or 'none'}, "
                                  f"not the pinned {expected}")

    # -- the socket methods the bridge calls --------------------------------------------------

    def recv(self, size: int) -> bytes:
        """Up to `size` decrypted bytes; b"" once the peer has closed. Socket timeouts pass through."""
        while True:
            with self._state_lock:
                try:
                    data: bytes | None = self._tls.read(size)
                except ssl.SSLWantReadError:
                    data = None
                except ssl.SSLZeroReturnError:
                    data = b""
                # Reading can make TLS answer (a key update): that goes out in order, like a write.
                answer = self._outgoing.pending
            if answer:
                self._flush()
            if data is not None:
                return data
            raw = self._sock.recv(_CHUNK)
            if not raw:
                return b""  # a close without close_notify: frames are length-prefixed, nothing is lost
            with self._state_lock:
                self._incoming.write(raw)

    def recv_into(self, buffer: memoryview | bytearray) -> int:
        data = self.recv(len(buffer))
        buffer[:len(data)] = data
        return len(data)

    def sendall(self, data: bytes) -> None:
        view = memoryview(data)
        with self._send_lock:
            for start in range(0, len(view), _CHUNK):
                with self._state_lock:
                    self._tls.write(view[start:start + _CHUNK])
                    records = self._outgoing.read()
                self._sock.sendall(records)

    def _flush(self) -> None:
        with self._send_lock:
            with self._state_lock:
                records = self._outgoing.read()
            if records:
                self._sock.sendall(records)

    def settimeout(self, timeout: float | None) -> None:
        self._sock.settimeout(timeout)

    def setsockopt(self, *args) -> None:
        self._sock.setsockopt(*args)

    def shutdown(self, how: int) -> None:
        self._sock.shutdown(how)

    def close(self) -> None:
        self._sock.close()

    def fileno(self) -> int:
        return self._sock.fileno()
