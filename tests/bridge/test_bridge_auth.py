"""Authentication: the token never on the wire, proofs both ways, and failed logins rate-limited."""

from __future__ import annotations

import logging
import socket
import threading
import time

import pytest

from bridge import BridgeClient, BridgeError
from bridge.auth import FailureLimiter, client_proof, is_loopback, server_proof
from bridge.handshake import connect_engine
from bridge.protocol import hello_proof

pytestmark = pytest.mark.timeout(15)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def limiter(clock) -> FailureLimiter:
    return FailureLimiter(clock=clock)


def test_proofs_depend_on_token_challenge_nonce_and_side():
    a, b = b"a" * 32, b"b" * 32
    proof = client_proof("tok", a, b)
    assert len(proof) == 32 and proof == client_proof("tok", a, b)
    assert len({proof, client_proof("tok2", a, b), client_proof("tok", b, b), client_proof("tok", a, a),
                server_proof("tok", b, a)}) == 5


def test_limiter_locks_out_after_max_failures_within_the_window(limiter, clock):
    for _ in range(FailureLimiter.max_failures - 1):
        assert limiter.failure("10.0.0.9") == 0.0
        clock.now += 1
    assert limiter.locked("10.0.0.9") == 0.0
    assert limiter.failure("10.0.0.9") == FailureLimiter.lockout
    assert limiter.locked("10.0.0.9") == FailureLimiter.lockout
    assert limiter.locked("10.0.0.10") == 0.0  # per address
    clock.now += FailureLimiter.lockout
    assert limiter.locked("10.0.0.9") == 0.0


def test_limiter_window_slides(limiter, clock):
    # Failures further apart than window / max_failures never pile up to a lockout.
    for _ in range(3 * FailureLimiter.max_failures):
        assert limiter.failure("10.0.0.9") == 0.0
        clock.now += FailureLimiter.window / (FailureLimiter.max_failures - 1)


def test_each_further_failure_doubles_the_lockout_up_to_the_cap(limiter, clock):
    for _ in range(FailureLimiter.max_failures - 1):
        limiter.failure("10.0.0.9")
    lockouts = []
    for _ in range(6):
        lockouts.append(limiter.failure("10.0.0.9"))
        clock.now += lockouts[-1]  # the next attempt comes once the lockout is over
    assert lockouts == [30.0, 60.0, 120.0, 240.0, 300.0, 300.0]


def test_success_clears_and_a_quiet_window_forgets(limiter, clock):
    for _ in range(FailureLimiter.max_failures):
        limiter.failure("10.0.0.9")
    limiter.success("10.0.0.9")
    assert limiter.locked("10.0.0.9") == 0.0
    assert limiter.failure("10.0.0.9") == 0.0  # counting starts again
    for _ in range(FailureLimiter.max_failures - 1):
        limiter.failure("10.0.0.9")
    clock.now += FailureLimiter.lockout + FailureLimiter.window
    assert limiter.failure("10.0.0.9") == 0.0  # a whole quiet window after the lockout: forgiven


def test_limiter_remembers_a_bounded_number_of_addresses(clock):
    limiter = FailureLimiter(clock=clock)
    limiter.max_peers = 10
    for n in range(50):
        limiter.failure(f"10.0.{n}.1")
    assert len(limiter._records) == 10


@pytest.fixture
def strict(server, clock):
    """The fixture server with a limiter that locks out after two failures, on the test's clock."""
    server.limiter = FailureLimiter(clock=clock)
    server.limiter.max_failures = 2
    return server


def test_lockout_closes_connections_at_once_and_is_logged(strict, clock, token, caplog):
    caplog.set_level(logging.INFO, logger="swapline.bridge")
    for _ in range(2):
        with pytest.raises(BridgeError) as caught:
            BridgeClient("127.0.0.1", strict.port, "guess", timeout=3.0).connect()
        assert caught.value.code == "unauthorized"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert sum("refused 127.0.0.1:" in m and "unauthorized" in m for m in warnings) == 2
    assert any("locking out 127.0.0.1 for 30 s" in m for m in warnings)
    # Locked out: even the right token is turned away, before any handshake.
    with pytest.raises(BridgeError) as caught:
        BridgeClient("127.0.0.1", strict.port, token, timeout=3.0).connect()
    assert caught.value.code == "unreachable"
    assert any("closed 127.0.0.1:" in r.getMessage() and "locked out" in r.getMessage()
               for r in caplog.records)
    clock.now += 30.0
    client = BridgeClient("127.0.0.1", strict.port, token, timeout=3.0)
    assert client.connect()["name"] == "test-engine"
    client.close()
    assert strict.limiter.locked("127.0.0.1") == 0.0


def test_success_resets_the_count_of_failures(strict, connect):
    with pytest.raises(BridgeError):
        BridgeClient("127.0.0.1", strict.port, "guess", timeout=3.0).connect()
    connect()
    with pytest.raises(BridgeError) as caught:
        BridgeClient("127.0.0.1", strict.port, "guess", timeout=3.0).connect()
    assert caught.value.code == "unauthorized"
    assert strict.limiter.locked("127.0.0.1") == 0.0


def test_protocol_mistakes_are_not_counted_as_failed_logins(strict, raw_peer):
    for _ in range(3):
        peer = raw_peer()
        peer.send({"hello": {"protocol": 1, "token": "x", "client": "old"}})
        assert peer.read_until_closed()[0]["hello"]["error"]["code"] == "protocol_version"
    assert strict.limiter.locked("127.0.0.1") == 0.0


class RecordingProxy:
    """A TCP relay between a client and the server that keeps every byte the client sent."""

    def __init__(self, target_port: int) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.target_port = target_port
        self.sent = bytearray()
        self.threads = [threading.Thread(target=self._run, daemon=True)]
        self.threads[0].start()

    def _run(self) -> None:
        client, _ = self.listener.accept()
        upstream = socket.create_connection(("127.0.0.1", self.target_port))
        back = threading.Thread(target=self._pump, args=(upstream, client, None), daemon=True)
        back.start()
        self.threads.append(back)
        self._pump(client, upstream, self.sent)

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket, record: bytearray | None) -> None:
        try:
            while data := source.recv(65536):
                if record is not None:
                    record += data
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self.listener.close()
        for thread in self.threads:
            thread.join(3.0)


def test_the_token_never_crosses_the_wire(server, token):
    proxy = RecordingProxy(server.port)
    client = BridgeClient("127.0.0.1", proxy.port, token, timeout=3.0)
    try:
        assert client.connect()["name"] == "test-engine"
        assert client.call("echo", {"n": 1}) == {"n": 1}
    finally:
        client.close()
        proxy.close()
    assert len(proxy.sent) > 100 and token.encode() not in bytes(proxy.sent)


def _login_from(source: str, port: int, token: str) -> dict:
    """A whole handshake from a chosen loopback source address; returns the engine info."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=3.0, source_address=(source, 0))
    try:
        _, engine = connect_engine(sock, token=token, client_name=source, host="127.0.0.1", tls=None,
                                   deadline=time.monotonic() + 3.0)
        return engine
    finally:
        sock.close()


def test_one_address_cannot_fill_the_server_with_silent_connections(server, raw_peer, token):
    # Silent connections hold a slot until the handshake deadline; one peer must not take them all.
    server.exempt_loopback = False  # loopback stands in for a network peer here
    server.max_handshakes_per_address = 2
    server.handshake_timeout = 60.0  # so nothing below is closed by the deadline
    silent = [raw_peer(), raw_peer()]
    try:
        silent[0].challenge_me()  # in the handshake: sockets the server has surely accepted
        silent[1].challenge_me()
        third = raw_peer()
        assert third.read_until_closed() == []  # turned away at once (its 3 s timeout would raise)
        try:
            assert _login_from("127.0.0.2", server.port, token)["name"] == "test-engine"  # another address
        except OSError as exc:  # 127.0.0.2 is not a local address on every system
            pytest.skip(f"no second loopback address here: {exc}")
        # one that logs in leaves the handshake, so the address may start another
        silent[0].send(hello_proof(client_proof(token, silent[0].challenge, silent[0].nonce)))
        assert silent[0].recv()["hello"]["ok"] is True
        assert _login_from("127.0.0.1", server.port, token)["name"] == "test-engine"
    finally:
        for peer in silent:
            peer.close()


def test_loopback_is_exempt_from_the_per_address_limit(server, raw_peer, connect):
    server.max_handshakes_per_address = 1
    waiting = raw_peer()
    waiting.challenge_me()
    assert connect().call("echo", {"n": 1}) == {"n": 1}


def test_loopback_addresses_are_recognised():
    assert all(map(is_loopback, ("127.0.0.1", "127.0.0.2", "::1", "::ffff:127.0.0.1")))
    assert not any(map(is_loopback, ("10.0.0.1", "192.168.1.2", "fe80::1%eth0", "::ffff:10.0.0.1", "nonsense")))
