"""Tests for bridge.protocol: the error type, message classification and the handshake checks."""

from __future__ import annotations

import pickle

import pytest

from bridge import PROTOCOL_VERSION, BridgeError
from bridge.protocol import (check_hello, check_hello_reply, hello_accepted, hello_refused,
                             hello_request, message_kind, protocol_error, request, response_error,
                             response_ok)

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
    (hello_request("t", "me"), "hello"),
    (hello_accepted({"name": "e"}), "hello"),
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


def test_check_hello_accepts_the_token_and_names_the_client():
    assert check_hello(hello_request("s3cret", "blender")["hello"], "s3cret") == "blender"


@pytest.mark.parametrize("offered", ["wrong", "", None, 12, "s3cret ", "sécret"])
def test_check_hello_refuses_any_other_token(offered):
    with pytest.raises(BridgeError) as caught:
        check_hello({"protocol": PROTOCOL_VERSION, "token": offered}, "s3cret")
    assert caught.value.code == "unauthorized"


@pytest.mark.parametrize("version", [0, 2, "1", True, None])
def test_check_hello_refuses_other_protocol_versions(version):
    with pytest.raises(BridgeError) as caught:
        check_hello({"protocol": version, "token": "s3cret"}, "s3cret")
    assert caught.value.code == "protocol_version"


def test_check_hello_without_server_token_accepts_any_token():
    assert check_hello({"protocol": PROTOCOL_VERSION, "token": "anything", "client": 5}, None) == "unknown"


def test_check_hello_reply_returns_engine_info_or_raises_refusal():
    assert check_hello_reply(hello_accepted({"name": "e"})) == {"name": "e"}
    with pytest.raises(BridgeError) as caught:
        check_hello_reply(hello_refused(BridgeError("unauthorized", "no")))
    assert caught.value.code == "unauthorized"
    with pytest.raises(BridgeError) as caught:
        check_hello_reply({"hello": {"protocol": 99, "ok": True, "engine": {}}})
    assert caught.value.code == "protocol_version"
    with pytest.raises(BridgeError) as caught:
        check_hello_reply(response_ok(1, None))
    assert caught.value.code == "protocol"
