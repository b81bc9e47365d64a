"""Tests for bridge.server, driven through raw sockets so every byte a bad client sends is chosen."""

from __future__ import annotations

import logging
import struct
import threading
import time

import pytest

from bridge import MAX_FRAME, PROTOCOL_VERSION, BridgeClient, BridgeError, BridgeServer, Session
from bridge.auth import client_proof, server_proof
from bridge.framing import RECV_SIZE, encode_frame
from bridge.handshake import MAX_HELLO
from bridge.protocol import hello_proof, hello_request, request

pytestmark = pytest.mark.timeout(15)


def test_handshake_answers_with_the_engine_info_and_the_servers_proof(raw_peer, engine_info, token):
    peer = raw_peer()
    reply = peer.hello()
    assert reply == {"hello": {"protocol": PROTOCOL_VERSION, "ok": True, "engine": engine_info,
                               "proof": server_proof(token, peer.nonce, peer.challenge)}}


def test_every_connection_gets_a_fresh_challenge(raw_peer):
    challenges = {raw_peer().challenge_me()["hello"]["challenge"] for _ in range(3)}
    assert len(challenges) == 3 and all(len(c) == 32 for c in challenges)


def test_request_and_response_after_handshake(raw_peer):
    peer = raw_peer()
    peer.hello()
    peer.send(request(41, "echo", {"x": [1, 2]}))
    assert peer.recv() == {"id": 41, "ok": True, "result": {"x": [1, 2]}}


def test_wrong_token_gets_only_a_refusal_then_close_and_runs_nothing(raw_peer, handler):
    peer = raw_peer()
    challenge = peer.challenge_me("intruder")["hello"]["challenge"]
    peer.send(hello_proof(client_proof("guess", challenge, peer.nonce)))
    peer.send(request(1, "echo", {}))  # pipelined right behind the proof: must never run
    frames = peer.read_until_closed()
    assert frames == [{"hello": {"protocol": PROTOCOL_VERSION, "ok": False, "error": {
        "code": "unauthorized", "message": "the engine refused the token"}}}]
    assert handler.calls == []


@pytest.mark.parametrize("proof", [None, "text", b"", b"\x00" * 32, 12])
def test_a_missing_or_malformed_proof_is_unauthorized(raw_peer, handler, proof):
    peer = raw_peer()
    peer.challenge_me()
    peer.send({"hello": {"proof": proof}})
    frames = peer.read_until_closed()
    assert len(frames) == 1 and frames[0]["hello"]["error"]["code"] == "unauthorized"
    assert handler.calls == []


def test_a_replayed_proof_is_refused(raw_peer, handler):
    first = raw_peer()
    assert first.hello()["hello"]["ok"] is True
    replay = raw_peer()
    replay.nonce = first.nonce  # the same nonce too: only the server's fresh challenge differs
    replay.challenge_me()
    replay.send(hello_proof(first.proof))
    frames = replay.read_until_closed()
    assert len(frames) == 1 and frames[0]["hello"]["error"]["code"] == "unauthorized"


@pytest.mark.parametrize("hello", [
    {"protocol": PROTOCOL_VERSION + 1, "client": "future", "nonce": b"n" * 32},
    {"protocol": 1, "token": "test-token", "client": "an add-on of the first release"},
], ids=["newer", "version-1"])
def test_other_protocol_version_is_refused(raw_peer, hello):
    peer = raw_peer()
    peer.send({"hello": hello})
    frames = peer.read_until_closed()
    assert len(frames) == 1 and frames[0]["hello"]["error"]["code"] == "protocol_version"


@pytest.mark.parametrize("nonce", [None, b"short", "x" * 32])
def test_hello_without_a_proper_nonce_is_refused(raw_peer, nonce):
    peer = raw_peer()
    peer.send({"hello": {"protocol": PROTOCOL_VERSION, "client": "c", "nonce": nonce}})
    frames = peer.read_until_closed()
    assert len(frames) == 1 and frames[0]["hello"]["error"]["code"] == "protocol"


def test_request_between_hello_and_proof_is_not_answered(raw_peer, handler):
    peer = raw_peer()
    peer.challenge_me()
    peer.send(request(1, "echo", {"a": 1}))
    assert peer.read_until_closed() == []
    assert handler.calls == []


def test_request_before_handshake_is_not_answered(raw_peer, handler):
    peer = raw_peer()
    peer.send(request(1, "echo", {"a": 1}))
    assert peer.read_until_closed() == []
    assert handler.calls == []


def test_garbage_before_handshake_closes_without_a_word(raw_peer):
    peer = raw_peer()
    peer.send_bytes(struct.pack(">I", 2) + b"\xc1\xc1")
    assert peer.read_until_closed() == []


def test_silent_client_is_dropped_after_the_handshake_timeout(server, raw_peer):
    server.handshake_timeout = 0.3
    peer = raw_peer()
    started = time.monotonic()
    assert peer.read_until_closed() == []
    assert time.monotonic() - started < 2.0


def test_client_dripping_bytes_is_still_held_to_the_handshake_deadline(server, raw_peer):
    server.handshake_timeout = 0.5
    peer = raw_peer()
    stop_dripping = threading.Event()
    started = time.monotonic()

    def drip() -> None:
        # A byte every 0.1 s for 3 s: a per-recv timeout would never expire meanwhile.
        try:
            peer.send_bytes(struct.pack(">I", 1000))
            while not stop_dripping.wait(0.1) and time.monotonic() - started < 3.0:
                peer.send_bytes(b"\x00")
        except OSError:
            pass  # the server has gone; nothing more to drip

    dripper = threading.Thread(target=drip, daemon=True)
    dripper.start()
    try:
        assert peer.read_until_closed() == []
        assert time.monotonic() - started < 2.0  # closed mid-drip, not after it
    finally:
        stop_dripping.set()
        dripper.join(3.0)


def assert_server_still_serves(raw_peer):
    fresh = raw_peer()
    fresh.hello()
    fresh.send(request(1, "echo", {"still": "alive"}))
    assert fresh.recv() == {"id": 1, "ok": True, "result": {"still": "alive"}}


@pytest.mark.parametrize("data", [
    struct.pack(">I", 3) + b"\xc1\xc1\xc1",                       # not msgpack at all
    struct.pack(">I", 4) + b"\x93\x01\x02\x03",                   # msgpack, but a list
    struct.pack(">I", 5) + b"\x81\xa3foo\x01",                    # a map of no known kind
    struct.pack(">I", 11) + b"\x81\xa5event\xa4ping",             # a kind clients may not send
    struct.pack(">I", MAX_FRAME + 1),                             # oversized, refused by length
], ids=["garbage", "list", "unknown-map", "event-from-client", "oversized"])
def test_bad_frame_after_handshake_gets_protocol_error_then_close(raw_peer, handler, data):
    peer = raw_peer()
    peer.hello()
    peer.send_bytes(data)
    frames = peer.read_until_closed()
    assert len(frames) == 1
    assert frames[0]["error"]["code"] == "protocol" and "id" not in frames[0]
    assert handler.calls == []
    assert_server_still_serves(raw_peer)


def test_truncated_frame_then_close_leaves_the_server_serving(raw_peer, handler):
    peer = raw_peer()
    peer.hello()
    peer.send_bytes(struct.pack(">I", 100) + b"0123456789")
    peer.sock.shutdown(1)  # SHUT_WR: the 90 missing bytes will never come
    assert peer.read_until_closed() == []  # a connection ending inside a frame is simply closed
    assert handler.calls == []
    assert_server_still_serves(raw_peer)


def test_oversized_length_before_handshake_closes_and_server_serves_on(raw_peer):
    peer = raw_peer()
    peer.send_bytes(struct.pack(">I", MAX_FRAME + 1))
    assert peer.read_until_closed() == []
    assert_server_still_serves(raw_peer)


def test_a_big_frame_before_the_handshake_is_not_buffered(server, raw_peer):
    # Within the frame limit but far over any hello: closed as soon as that much has arrived, long
    # before the handshake deadline, so unauthenticated peers cannot make the engine hold 64 MiB each.
    server.handshake_timeout = 60.0
    peer = raw_peer()
    try:
        peer.send_bytes(struct.pack(">I", MAX_FRAME) + b"\0" * (MAX_HELLO + RECV_SIZE))
    except OSError:
        pass  # the server may already have closed while we were still sending
    assert peer.read_until_closed() == []  # the peer's 3 s timeout would raise if it waited for the deadline
    assert_server_still_serves(raw_peer)


def test_pipelined_requests_are_answered_in_order(raw_peer):
    peer = raw_peer()
    peer.hello()
    peer.send_bytes(b"".join(encode_frame(request(n, "echo", {"n": n})) for n in range(1, 21)))
    assert [peer.recv()["id"] for _ in range(20)] == list(range(1, 21))


def test_request_pipelined_behind_the_proof_is_answered(raw_peer, token):
    peer = raw_peer()
    challenge = peer.challenge_me("eager")["hello"]["challenge"]
    peer.send_bytes(encode_frame(hello_proof(client_proof(token, challenge, peer.nonce)))
                    + encode_frame(request(1, "echo", {})))
    assert peer.recv()["hello"]["ok"] is True
    assert peer.recv() == {"id": 1, "ok": True, "result": {}}


def test_requests_before_the_handshake_completes_are_never_answered(raw_peer, handler):
    peer = raw_peer()
    peer.send_bytes(encode_frame(hello_request("eager", peer.nonce)) + encode_frame(request(1, "echo", {})))
    assert peer.recv()["hello"]["challenge"]
    assert peer.read_until_closed() == []  # the request stood where the proof belongs
    assert handler.calls == []


def test_request_ahead_of_a_bad_frame_in_one_chunk_is_still_answered(raw_peer):
    peer = raw_peer()
    peer.hello()
    peer.send_bytes(encode_frame(request(1, "echo", {"first": 1})) + struct.pack(">I", 1) + b"\xc1")
    frames = peer.read_until_closed()
    assert frames[0] == {"id": 1, "ok": True, "result": {"first": 1}}
    assert frames[1]["error"]["code"] == "protocol" and len(frames) == 2


def test_handler_bridge_error_keeps_its_code(raw_peer):
    peer = raw_peer()
    peer.hello()
    peer.send(request(5, "fail", {"code": "no_faces", "message": "no face in frames 1-9"}))
    assert peer.recv() == {"id": 5, "ok": False,
                           "error": {"code": "no_faces", "message": "no face in frames 1-9"}}


def test_crashing_handler_gives_internal_logs_traceback_and_keeps_serving(raw_peer, caplog):
    peer = raw_peer()
    peer.hello()
    with caplog.at_level(logging.ERROR, logger="swapline.bridge"):
        peer.send(request(1, "crash", {}))
        reply = peer.recv()
    assert reply["ok"] is False and reply["error"]["code"] == "internal"
    assert "Traceback" not in reply["error"]["message"] and len(reply["error"]["message"]) <= 200
    assert any(record.exc_info and "handler exploded" in str(record.exc_info[1])
               for record in caplog.records)
    peer.send(request(2, "echo", {"same": "connection"}))
    assert peer.recv() == {"id": 2, "ok": True, "result": {"same": "connection"}}


def test_unencodable_result_gives_internal(raw_peer):
    peer = raw_peer()
    peer.hello()
    peer.send(request(3, "unencodable", {}))
    reply = peer.recv()
    assert reply["id"] == 3 and reply["error"]["code"] == "internal"


def test_unknown_op_is_the_handlers_answer(raw_peer):
    peer = raw_peer()
    peer.hello()
    peer.send(request(4, "no.such.op", {}))
    assert peer.recv()["error"]["code"] == "unknown_op"


def test_broadcast_reaches_every_session_but_not_unauthenticated_peers(server, raw_peer):
    peers = [raw_peer() for _ in range(3)]
    for peer in peers:
        peer.hello()
    stranger = raw_peer()
    server.broadcast({"event": "job", "job": {"id": 1, "state": "running"}})
    for peer in peers:
        assert peer.recv() == {"event": "job", "job": {"id": 1, "state": "running"}}
    stranger.sock.settimeout(0.3)
    with pytest.raises(TimeoutError):
        stranger.recv()


def test_send_event_reaches_only_its_session(raw_peer):
    first, second = raw_peer(), raw_peer()
    first.hello()
    second.hello()
    first.send(request(1, "notify_me", {}))
    frames = [first.recv(), first.recv()]
    assert {"id": 1, "ok": True, "result": True} in frames
    assert any(frame.get("event") == "note" for frame in frames)
    second.sock.settimeout(0.3)
    with pytest.raises(TimeoutError):
        second.recv()


def test_malformed_events_are_refused_at_the_sender(server):
    with pytest.raises(ValueError):
        server.broadcast({"name": "job"})
    with pytest.raises(BridgeError):
        server.broadcast({"event": "job", "payload": object()})


def test_stop_is_prompt_with_sessions_and_half_open_peers(server, raw_peer):
    ready = raw_peer()
    ready.hello()
    waiting = raw_peer()  # never says hello
    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started < 2.0
    assert ready.read_until_closed() == []
    assert waiting.read_until_closed() == []


def test_server_without_token_accepts_any_proof_but_only_tokenless_clients_accept_it(handler, peer_of):
    server = BridgeServer(handler, token=None)
    server.start()
    try:
        for token in ("", None):
            client = BridgeClient("127.0.0.1", server.port, token, timeout=3.0)
            assert client.connect() == {}
            assert client.call("echo", {"open": True}, timeout=3.0) == {"open": True}
            client.close()
        peer = peer_of(server.port)
        peer.challenge_me()
        peer.send(hello_proof(b"anything"))
        assert peer.recv()["hello"]["ok"] is True
        # A client that holds a token refuses it: an open server could be anybody's.
        with pytest.raises(BridgeError) as caught:
            BridgeClient("127.0.0.1", server.port, "whatever", timeout=3.0).connect()
        assert caught.value.code == "untrusted_engine"
    finally:
        server.stop()


def test_stopped_server_cannot_restart_and_stop_is_idempotent(handler):
    server = BridgeServer(handler, token="t")
    assert server.start() == server.port > 0
    server.stop()
    server.stop()
    with pytest.raises(RuntimeError):
        server.start()


def test_serve_forever_returns_after_stop_from_another_thread(handler):
    server = BridgeServer(handler, token="t")
    threading.Timer(0.2, server.stop).start()
    started = time.monotonic()
    server.serve_forever()
    assert time.monotonic() - started < 3.0


def test_unencodable_engine_info_fails_at_construction(handler):
    with pytest.raises(BridgeError):
        BridgeServer(handler, token="t", engine_info={"bad": object()})


class _StuckSocket:
    """A peer that never reads: sendall blocks until the session shuts the socket down."""

    def __init__(self) -> None:
        self.shut = threading.Event()

    def sendall(self, data: bytes) -> None:
        self.shut.wait(10.0)

    def shutdown(self, how: int) -> None:
        self.shut.set()


def test_a_session_is_dropped_when_the_bytes_queued_for_it_pass_the_limit(monkeypatch):
    # Few frames but big ones (files.read answers are 8 MiB): the frame count alone would let a
    # client that stops reading grow the engine's memory by gigabytes.
    monkeypatch.setattr(Session, "MAX_QUEUED_BYTES", 8 * 2**20)
    sock = _StuckSocket()
    session = Session(1, sock, "127.0.0.1:1", "stuck")  # type: ignore[arg-type]
    session.start()
    frame = b"x" * 2**20
    for _ in range(8):  # the one the writer is stuck sending still counts
        session.send_frame(frame)
    assert not sock.shut.is_set() and not session.closed
    session.send_frame(frame)
    assert sock.shut.is_set() and session.closed
    assert session.join_writer(5.0)
