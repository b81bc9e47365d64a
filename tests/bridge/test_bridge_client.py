"""Tests for bridge.client against a live BridgeServer, and against fake engines that misbehave."""

from __future__ import annotations

import queue
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from bridge import BridgeClient, BridgeError, Message
from bridge.auth import new_nonce, server_proof
from bridge.framing import encode_frame, read_frame, write_frame
from bridge.protocol import hello_accepted, hello_challenge

pytestmark = pytest.mark.timeout(15)


def next_message(client: BridgeClient, timeout: float = 3.0) -> Message:
    return client.inbox.get(timeout=timeout)


def assert_inbox_empty(client: BridgeClient, wait: float = 0.2) -> None:
    with pytest.raises(queue.Empty):
        client.inbox.get(timeout=wait)


def test_connect_returns_engine_info(connect, engine_info):
    client = connect()
    assert client.connected
    assert client.engine == engine_info
    assert client.connect() == engine_info  # idempotent while open


def test_call_round_trips_a_result(connect):
    client = connect()
    args = {"text": "ünï", "blob": b"\x00\x01", "nested": {"list": [1, 2.5, None]}}
    assert client.call("echo", args) == args
    assert client.call("echo") == {}


def test_call_raises_the_engines_error_with_its_code(connect):
    client = connect()
    with pytest.raises(BridgeError) as caught:
        client.call("fail", {"code": "model_mismatch", "message": "resolution 64 vs 128"})
    assert (caught.value.code, caught.value.message) == ("model_mismatch", "resolution 64 vs 128")


def test_call_on_crashing_handler_raises_internal_and_connection_lives(connect):
    client = connect()
    with pytest.raises(BridgeError) as caught:
        client.call("crash")
    assert caught.value.code == "internal"
    assert client.call("echo", {"ok": 1}) == {"ok": 1}


def test_send_delivers_responses_to_the_inbox(connect):
    client = connect()
    first = client.send("echo", {"n": 1})
    second = client.send("fail", {"code": "not_found", "message": "no job 9"})
    assert second != first
    assert next_message(client) == Message("response", {"id": first, "ok": True, "result": {"n": 1}})
    assert next_message(client) == Message("response", {
        "id": second, "ok": False, "error": {"code": "not_found", "message": "no job 9"}})


def test_call_responses_do_not_reach_the_inbox(connect):
    client = connect()
    client.call("echo", {"n": 1})
    assert_inbox_empty(client)


def test_events_reach_every_client_inbox(server, connect):
    clients = [connect(client_name=f"c{n}") for n in range(3)]
    server.broadcast({"event": "job", "job": {"id": 7, "progress": 0.5}})
    for client in clients:
        assert next_message(client) == Message("event", {"event": "job", "job": {"id": 7, "progress": 0.5}})


def test_handshake_carries_the_client_name(connect):
    assert connect(client_name="blender-5.0").call("whoami")["client"] == "blender-5.0"


def test_client_gets_closed_message_when_server_stops(server, connect):
    client = connect()
    server.stop()
    message = next_message(client)
    assert message.kind == "closed" and isinstance(message.payload, str) and message.payload
    assert not client.connected
    with pytest.raises(BridgeError) as caught:
        client.send("echo")
    assert caught.value.code == "unreachable"


def test_pending_call_fails_as_unreachable_when_connection_ends(server, connect):
    client = connect()
    threading.Timer(0.3, server.stop).start()
    with pytest.raises(BridgeError) as caught:
        client.call("wait", {"seconds": 5.0}, timeout=5.0)
    assert caught.value.code == "unreachable"


def test_call_timeout_raises_timeout_and_the_late_answer_is_dropped(connect):
    client = connect()
    started = time.monotonic()
    with pytest.raises(BridgeError) as caught:
        client.call("sleep", {"seconds": 2.0}, timeout=0.2)
    assert caught.value.code == "timeout"
    assert time.monotonic() - started < 1.5  # well before the answer could have come
    assert client.call("echo", {"after": True}) == {"after": True}  # waits out the sleep in order
    assert_inbox_empty(client)


def test_slow_request_on_one_client_does_not_block_another(connect):
    slow, quick = connect(), connect()
    slow_id = slow.send("sleep", {"seconds": 3.0})
    # The call's own timeout is the check: an answer queued behind the sleep would come after 3 s.
    assert quick.call("echo", {"x": 1}, timeout=2.5) == {"x": 1}
    assert next_message(slow, timeout=6.0).payload == {"id": slow_id, "ok": True, "result": "slept"}


def test_concurrent_calls_on_one_client_each_get_their_own_answer(connect):
    client = connect()
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda n: client.call("echo", {"n": n}), range(64)))
    assert results == [{"n": n} for n in range(64)]


def test_close_posts_one_closed_message_and_ends_the_client(connect):
    client = connect()
    client.close()
    assert next_message(client) == Message("closed", "closed by the client")
    client.close()
    assert_inbox_empty(client)
    with pytest.raises(BridgeError) as caught:
        client.connect()
    assert caught.value.code == "unreachable"


def test_start_connects_when_connect_was_not_called(server, token):
    client = BridgeClient("127.0.0.1", server.port, token, timeout=3.0)
    try:
        client.start()
        assert client.connected and client.call("echo", {"a": 1}) == {"a": 1}
    finally:
        client.close()


def test_call_starts_the_reader_after_a_bare_connect(server, token):
    client = BridgeClient("127.0.0.1", server.port, token, timeout=3.0)
    try:
        client.connect()
        assert client.call("echo", {"a": 2}) == {"a": 2}
    finally:
        client.close()


def test_wrong_token_raises_unauthorized_and_runs_nothing(server, handler):
    client = BridgeClient("127.0.0.1", server.port, "not-the-token", timeout=3.0)
    with pytest.raises(BridgeError) as caught:
        client.connect()
    assert caught.value.code == "unauthorized"
    assert not client.connected and handler.calls == []
    assert_inbox_empty(client, wait=0.05)


def test_nobody_listening_raises_unreachable_with_a_readable_reason():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # bound but not listening: connections are refused
        client = BridgeClient("127.0.0.1", port, "t", timeout=2.0)
        with pytest.raises(BridgeError) as caught:
            client.connect()
    assert caught.value.code == "unreachable"
    assert f"127.0.0.1:{port}" in caught.value.message


def test_bad_arguments_are_refused_before_sending(connect):
    client = connect()
    with pytest.raises(BridgeError) as caught:
        client.send("echo", ["not", "a", "map"])  # type: ignore[arg-type]
    assert caught.value.code == "bad_request"
    with pytest.raises(BridgeError) as caught:
        client.call("echo", {"x": object()})
    assert caught.value.code == "bad_request"
    assert client.call("echo", {"still": "fine"}) == {"still": "fine"}


class FakeEngine:
    """A one-connection TCP listener whose behaviour after accept() the test scripts."""

    def __init__(self, behave) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(behave,), daemon=True)
        self.thread.start()

    def _run(self, behave) -> None:
        conn, _ = self.listener.accept()
        conn.settimeout(3.0)
        try:
            behave(conn)
            self.done.wait(3.0)
        finally:
            conn.close()

    def close(self) -> None:
        self.done.set()
        self.thread.join(3.0)
        self.listener.close()


@pytest.fixture
def fake_engine():
    engines: list[FakeEngine] = []

    def make(behave) -> FakeEngine:
        engines.append(FakeEngine(behave))
        return engines[-1]

    yield make
    for engine in engines:
        engine.close()


def test_engine_that_never_answers_the_handshake_is_unreachable(fake_engine):
    engine = fake_engine(lambda conn: read_frame(conn))
    client = BridgeClient("127.0.0.1", engine.port, "t", timeout=0.3)
    started = time.monotonic()
    with pytest.raises(BridgeError) as caught:
        client.connect()
    assert caught.value.code == "unreachable" and time.monotonic() - started < 2.0


def fake_handshake(conn: socket.socket, token: str | None, engine: dict | None = None) -> None:
    """The engine's side of the handshake, by hand: challenge, read the proof, accept with its proof."""
    nonce, challenge = read_frame(conn)["hello"]["nonce"], new_nonce()
    write_frame(conn, hello_challenge(challenge))
    read_frame(conn)
    write_frame(conn, hello_accepted(engine or {"name": "fake"}, server_proof(token, nonce, challenge)))


def test_engine_sending_garbage_ends_the_connection_with_a_closed_message(fake_engine):
    def behave(conn: socket.socket) -> None:
        fake_handshake(conn, "t")
        conn.sendall(encode_frame({"event": "fine"}) + b"\x00\x00\x00\x02\xc1\xc1")

    client = BridgeClient("127.0.0.1", fake_engine(behave).port, "t", timeout=3.0)
    assert client.connect() == {"name": "fake"}
    client.start()
    assert next_message(client) == Message("event", {"event": "fine"})
    closed = next_message(client)
    assert closed.kind == "closed" and "protocol" in closed.payload
    assert not client.connected


def test_engine_speaking_another_protocol_version_is_refused(fake_engine):
    def behave(conn: socket.socket) -> None:
        read_frame(conn)
        write_frame(conn, {"hello": {"protocol": 3, "challenge": new_nonce()}})

    client = BridgeClient("127.0.0.1", fake_engine(behave).port, "t", timeout=3.0)
    with pytest.raises(BridgeError) as caught:
        client.connect()
    assert caught.value.code == "protocol_version"


def test_engine_of_the_first_protocol_refusing_us_says_so(fake_engine):
    def behave(conn: socket.socket) -> None:
        read_frame(conn)
        write_frame(conn, {"hello": {"protocol": 1, "ok": False, "error": {
            "code": "protocol_version", "message": "the engine speaks bridge protocol 1, the client speaks 2"}}})

    client = BridgeClient("127.0.0.1", fake_engine(behave).port, "t", timeout=3.0)
    with pytest.raises(BridgeError) as caught:
        client.connect()
    assert caught.value.code == "protocol_version" and "protocol 1" in caught.value.message


@pytest.mark.parametrize("fake_token", [None, "another-token"])
def test_engine_that_cannot_prove_it_holds_the_token_is_refused(fake_engine, fake_token):
    # An impostor accepts any proof, but cannot make the engine's own without the token.
    client = BridgeClient("127.0.0.1", fake_engine(lambda conn: fake_handshake(conn, fake_token)).port,
                          "t", timeout=3.0)
    with pytest.raises(BridgeError) as caught:
        client.connect()
    assert caught.value.code == "untrusted_engine"
    assert not client.connected


def test_engine_that_never_sends_its_challenge_is_held_to_the_timeout(fake_engine):
    engine = fake_engine(lambda conn: (read_frame(conn), read_frame(conn)))
    client = BridgeClient("127.0.0.1", engine.port, "t", timeout=0.3)
    started = time.monotonic()
    with pytest.raises(BridgeError) as caught:
        client.connect()
    assert caught.value.code == "unreachable" and time.monotonic() - started < 2.0


def test_engine_closing_during_the_handshake_is_unreachable_with_a_hint(fake_engine):
    client = BridgeClient("127.0.0.1", fake_engine(lambda conn: conn.close()).port, "t", timeout=3.0)
    with pytest.raises(BridgeError) as caught:
        client.connect()
    assert caught.value.code == "unreachable" and "handshake" in caught.value.message
