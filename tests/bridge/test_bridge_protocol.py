"""Tests for bridge.protocol: the error type, message classification and the handshake checks."""

from __future__ import annotations

import pickle

import pytest

from bridge import PROTOCOL_VERSION, BridgeError
from bridge.auth import client_proof, new_nonce, server_proof
from bridge.protocol import (check_accepted, check_challenge, check_hello, check_proof,
                             hello_accepted, hello_challenge, hello_proof, hello_refused,
                             hello_request, message_kind, protocol_error, request, response_error,
                             response_ok)

NONCE, CHALLENGE = b"n" * 32, b"c" * 32

pytestmark = pytest.mark.timeout(10)


def test_error_round_trips_through_its_wire_map():
    error = BridgeError("no_faces", "no face found in frames 10-20")
    assert error.to_wire() == {"code": "no_faces", "message": "no face found in frames 10-20"}
    again = BridgeError.from_wire(error.to_wire())
    assert (again.code, again.message) == ("no_faces", "no face found in frames 10-20")


def test_error_reads_well_and_survives_pickling():
    error = BridgeError("unauthorized", "the engine refused the token")
    assert "the engine refused the token" in str(error) and "unauthorized" in str(error)
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.code, copy.message) == (error.code, error.message)


@pytest.mark.parametrize("payload", [None, "oops", {"message": "no code"}, {"code": 3}])
def test_malformed_error_payload_becomes_a_protocol_error(payload):
    assert BridgeError.from_wire(payload).code == "protocol"


def test_error_payload_without_message_still_reads():
    assert BridgeError.from_wire({"code": "busy"}).message == "busy"


@pytest.mark.parametrize("message, kind", [
    (hello_request("me", NONCE), "hello"),
    (hello_challenge(CHALLENGE), "hello"),
    (hello_proof(b"p" * 32), "hello"),
    (hello_accepted({"name": "e"}, b"p" * 32), "hello"),
    (request(1, "job.list", {}), "request"),
    ({"id": 2, "op": "job.list"}, "request"),
    (response_ok(3, None), "response"),
    (response_error(4, BridgeError("busy", "later")), "response"),
    ({"event": "job", "job": {"id": 1}}, "event"),
    ({"event": "job", "ok": True, "op": "x"}, "event"),  # events own their other keys
    (protocol_error("bad"), "error"),
])
def test_message_kind_classifies_every_kind(message, kind):
    assert message_kind(message) == kind


@pytest.mark.parametrize("message", [
    [1, 2], "text", {}, {"unknown": 1},
    {"id": True, "op": "x", "args": {}},
    {"id": 1, "op": 5, "args": {}},
    {"id": 1, "op": "x", "args": [1]},
    {"id": "1", "op": "x"},
    {"id": 1, "ok": False},
    {"id": 1, "ok": "yes", "result": 1},
    {"event": 3},
    {"hello": "hi"},
    {"error": "bad"},
])
def test_message_kind_rejects_malformed_frames(message):
    with pytest.raises(BridgeError) as caught:
        message_kind(message)
    assert caught.value.code == "protocol"


def test_check_hello_names_the_client_and_returns_its_nonce():
    assert check_hello(hello_request("blender", NONCE)["hello"]) == ("blender", NONCE)
    assert check_hello({"protocol": PROTOCOL_VERSION, "client": 5, "nonce": NONCE}) == ("unknown", NONCE)


@pytest.mark.parametrize("version", [0, 1, 3, "2", True, None])
def test_check_hello_refuses_other_protocol_versions(version):
    with pytest.raises(BridgeError) as caught:
        check_hello({"protocol": version, "client": "c", "nonce": NONCE, "token": "s3cret"})
    assert caught.value.code == "protocol_version"


@pytest.mark.parametrize("nonce", [None, b"", b"n" * 31, b"n" * 33, "n" * 32])
def test_check_hello_wants_a_32_byte_nonce(nonce):
    with pytest.raises(BridgeError) as caught:
        check_hello({"protocol": PROTOCOL_VERSION, "client": "c", "nonce": nonce})
    assert caught.value.code == "protocol"


def test_the_token_never_appears_in_any_handshake_frame():
    token = "s3cret-token"
    proof = client_proof(token, CHALLENGE, NONCE)
    frames = [hello_request("c", NONCE), hello_challenge(CHALLENGE), hello_proof(proof),
              hello_accepted({}, server_proof(token, NONCE, CHALLENGE))]
    assert all(token.encode() not in repr(frame).encode() for frame in frames)


def test_check_proof_accepts_only_the_proof_of_this_challenge_and_nonce():
    check_proof(hello_proof(client_proof("s3cret", CHALLENGE, NONCE))["hello"], "s3cret", CHALLENGE, NONCE)
    for proof in [client_proof("s3cret", new_nonce(), NONCE),       # another challenge: a replay
                  client_proof("s3cret", CHALLENGE, new_nonce()),
                  client_proof("wrong", CHALLENGE, NONCE),
                  server_proof("s3cret", NONCE, CHALLENGE),          # the server's proof reflected
                  "text", None]:
        with pytest.raises(BridgeError) as caught:
            check_proof({"proof": proof}, "s3cret", CHALLENGE, NONCE)
        assert caught.value.code == "unauthorized"


def test_check_proof_without_server_token_accepts_anything():
    check_proof({"proof": "anything"}, None, CHALLENGE, NONCE)
    check_proof({}, None, CHALLENGE, NONCE)


def test_check_challenge_returns_it_or_raises_the_refusal():
    assert check_challenge(hello_challenge(CHALLENGE)) == CHALLENGE
    with pytest.raises(BridgeError) as caught:
        check_challenge(hello_refused(BridgeError("protocol_version", "old")))
    assert caught.value.code == "protocol_version"
    with pytest.raises(BridgeError) as caught:
        check_challenge({"hello": {"protocol": 99, "challenge": CHALLENGE}})
    assert caught.value.code == "protocol_version"
    with pytest.raises(BridgeError) as caught:
        check_challenge({"hello": {"protocol": PROTOCOL_VERSION, "challenge": b"short"}})
    assert caught.value.code == "protocol"
    with pytest.raises(BridgeError) as caught:
        check_challenge(response_ok(1, None))
    assert caught.value.code == "protocol"


def test_check_accepted_wants_the_engines_proof():
    good = hello_accepted({"name": "e"}, server_proof("s3cret", NONCE, CHALLENGE))
    assert check_accepted(good, "s3cret", NONCE, CHALLENGE) == {"name": "e"}
    for proof in [server_proof("other", NONCE, CHALLENGE), client_proof("s3cret", CHALLENGE, NONCE), None]:
        with pytest.raises(BridgeError) as caught:
            check_accepted(hello_accepted({"name": "e"}, proof), "s3cret", NONCE, CHALLENGE)
        assert caught.value.code == "untrusted_engine"
    with pytest.raises(BridgeError) as caught:
        check_accepted(hello_refused(BridgeError("unauthorized", "no")), "s3cret", NONCE, CHALLENGE)
    assert caught.value.code == "unauthorized"
    with pytest.raises(BridgeError) as caught:
        check_accepted({"hello": {"protocol": 99, "ok": True, "engine": {}}}, "s3cret", NONCE, CHALLENGE)
    assert caught.value.code == "protocol_version"
