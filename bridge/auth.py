"""Bridge, authentication: the keyed-hash proofs of the handshake and the limiter of failed logins.

Pure maths and bookkeeping, no sockets. Each side proves it holds the token by an HMAC-SHA256 over
both sides' fresh random values, so the token never crosses the wire and a recorded proof is
worthless on the next connection. The two proofs carry different labels so one side's proof can
never be replayed as the other's.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

NONCE_SIZE = 32          # bytes of the client's nonce and of the server's challenge
PROOF_SIZE = 32          # bytes of an HMAC-SHA256
_CLIENT_LABEL = b"swapline-client\0"
_SERVER_LABEL = b"swapline-server\0"


def new_nonce() -> bytes:
    """A fresh random value for one handshake (the client's nonce or the server's challenge)."""
    return secrets.token_bytes(NONCE_SIZE)


def _key(token: str | None) -> bytes:
    # A server without a token proves itself with the empty key: only a client that was given no
    # token either accepts it, so an open test server can never pass for a real engine.
    return (token or "").encode()


def client_proof(token: str | None, challenge: bytes, nonce: bytes) -> bytes:
    """What the client sends to show it holds the token."""
    return hmac.new(_key(token), _CLIENT_LABEL + challenge + nonce, hashlib.sha256).digest()


def server_proof(token: str | None, nonce: bytes, challenge: bytes) -> bytes:
    """What the engine sends back to show it holds the token too (mutual authentication)."""
    return hmac.new(_key(token), _SERVER_LABEL + nonce + challenge, hashlib.sha256).digest()


def proof_matches(expected: bytes, offered: object) -> bool:
    """Constant-time comparison; anything that is not bytes of the right size is simply wrong."""
    return isinstance(offered, bytes) and hmac.compare_digest(expected, offered)


@dataclass
class _Record:
    times: list[float] = field(default_factory=list)   # failures inside the window
    strikes: int = 0                                    # lockouts so far: each doubles the next
    until: float = 0.0                                  # end of the current lockout


class FailureLimiter:
    """Failed logins per peer address, thread-safe.

    After `max_failures` failures within `window` seconds the address is locked out for `lockout`
    seconds; each further failure doubles the lockout, up to `max_lockout`. A success forgets the
    address, and so does a whole quiet window after its last lockout ended. The numbers are class
    attributes so tests can shrink them; at most `max_peers` addresses are remembered.
    """

    max_failures = 5
    window = 60.0
    lockout = 30.0
    max_lockout = 300.0
    max_peers = 4096

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._records: dict[str, _Record] = {}   # insertion order = least recently failed first

    def locked(self, address: str) -> float:
        """Seconds left of this address's lockout; 0.0 when it may try to log in."""
        with self._lock:
            record = self._records.get(address)
            return max(0.0, record.until - self._clock()) if record is not None else 0.0

    def failure(self, address: str) -> float:
        """Record a failed login; returns the lockout it starts in seconds, 0.0 for none."""
        now = self._clock()
        with self._lock:
            record = self._records.pop(address, None) or _Record()
            if record.strikes and now - record.until >= self.window:
                record = _Record()
            record.times = [t for t in record.times if now - t < self.window] + [now]
            lockout = 0.0
            if record.strikes or len(record.times) >= self.max_failures:
                # The exponent is capped first: 2 ** a huge count would overflow the float.
                lockout = min(float(self.max_lockout), self.lockout * 2 ** min(record.strikes, 16))
                record.strikes += 1
                record.until = now + lockout
            self._records[address] = record
            self._trim(now)
            return lockout

    def success(self, address: str) -> None:
        """A good login clears the address's failures and any lockout."""
        with self._lock:
            self._records.pop(address, None)

    def _trim(self, now: float) -> None:
        if len(self._records) <= self.max_peers:
            return
        for address, record in list(self._records.items()):
            if record.until <= now and all(now - t >= self.window for t in record.times):
                del self._records[address]
        while len(self._records) > self.max_peers:  # a flood of addresses: forget the oldest
            del self._records[next(iter(self._records))]


def is_loopback(address: str) -> bool:
    """Whether a peer address is this machine's own (127.0.0.0/8, ::1, or ::ffff:127.x)."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)  # ::ffff:127.0.0.1 on a dual-stack listener
    return (mapped or ip).is_loopback
