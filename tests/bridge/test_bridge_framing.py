"""Tests for bridge.framing: frame encoding, the streaming decoder, and blocking socket reads."""

from __future__ import annotations

import socket
import struct

import msgpack
import pytest

import bridge.framing as framing
from bridge import MAX_FRAME, BridgeError
from bridge.framing import FrameDecoder, encode_frame, read_frame, write_frame

pytestmark = pytest.mark.timeout(10)

SAMPLE = {"id": 7, "op": "job.start", "args": {"kind": "train", "params": {
    "iterations": 2000, "lr": 5e-5, "model": "ünïcode", "blob": b"\x00\xff", "none": None,
    "list": [1, -2, 3.5], "big": 2**40}}}


def raw_frame(payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + payload


def test_frame_is_big_endian_length_then_msgpack_map():
    frame = encode_frame(SAMPLE)
    (length,) = struct.unpack(">I", frame[:4])
    assert length == len(frame) - 4
    assert msgpack.unpackb(frame[4:], raw=False) == SAMPLE


def test_encode_then_decode_round_trips_types():
    assert FrameDecoder().feed(encode_frame(SAMPLE)) == [SAMPLE]


def test_int_map_keys_survive():
    message = {"id": 1, "ok": True, "result": {10: "frame ten", 11: "frame eleven"}}
    assert FrameDecoder().feed(encode_frame(message)) == [message]


def test_decoder_fed_byte_by_byte_emits_each_frame_on_its_last_byte():
    messages = [SAMPLE, {"event": "job", "job": {"id": 1}}, {"id": 2, "ok": True, "result": None}]
    stream = b"".join(encode_frame(message) for message in messages)
    ends = set()
    position = 0
    for message in messages:
        position += len(encode_frame(message))
        ends.add(position)
    decoder = FrameDecoder()
    received = []
    for index in range(len(stream)):
        out = decoder.feed(stream[index:index + 1])
        if index + 1 in ends:
            assert len(out) == 1
        else:
            assert out == []
        received.extend(out)
    assert received == messages
    assert decoder.buffered == 0


def test_decoder_returns_every_frame_of_one_chunk_and_keeps_the_rest():
    frames = [encode_frame({"event": "tick", "n": n}) for n in range(50)]
    decoder = FrameDecoder()
    out = decoder.feed(b"".join(frames) + frames[0][:3])
    assert [message["n"] for message in out] == list(range(50))
    assert decoder.buffered == 3


def test_oversized_length_is_refused_from_the_header_alone():
    decoder = FrameDecoder()
    assert decoder.feed(struct.pack(">I", MAX_FRAME + 1)[:3]) == []
    with pytest.raises(BridgeError) as caught:
        decoder.feed(struct.pack(">I", MAX_FRAME + 1)[3:])  # no payload follows, none is awaited
    assert caught.value.code == "protocol"
    assert decoder.buffered == 0


def test_length_of_exactly_max_frame_is_awaited_not_refused():
    assert FrameDecoder().feed(struct.pack(">I", MAX_FRAME) + b"\x80") == []


@pytest.mark.parametrize("payload", [
    b"\xc1",                         # a byte msgpack never uses
    b"",                             # empty frame
    msgpack.packb([1, 2, 3]),        # valid msgpack, but not a map
    msgpack.packb("text"),
    msgpack.packb({}) + b"\x01",     # a map with trailing bytes inside the frame
    b"\x81\xa1",                     # a map cut short inside its payload
    b"\x81\xa1a\xc4\x05ab",          # bin length runs past the frame
    b"\x81\xa2\xff\xfe\x01",         # invalid UTF-8 in a key
])
def test_undecodable_or_non_map_payload_is_a_protocol_error(payload):
    with pytest.raises(BridgeError) as caught:
        FrameDecoder().feed(raw_frame(payload))
    assert caught.value.code == "protocol"


def test_decoder_stays_failed_after_a_protocol_error():
    decoder = FrameDecoder()
    with pytest.raises(BridgeError):
        decoder.feed(raw_frame(b"\xc1"))
    with pytest.raises(BridgeError):
        decoder.feed(encode_frame({"event": "fine"}))


def test_encode_refuses_what_msgpack_cannot_carry():
    with pytest.raises(BridgeError) as caught:
        encode_frame({"value": object()})
    assert caught.value.code == "bad_request"
    with pytest.raises(BridgeError):
        encode_frame(["not", "a", "map"])  # type: ignore[arg-type]


def test_encode_refuses_frames_over_the_limit(monkeypatch):
    monkeypatch.setattr(framing, "MAX_FRAME", 64)
    encode_frame({"data": b"x" * 32})
    with pytest.raises(BridgeError) as caught:
        encode_frame({"data": b"x" * 100})
    assert caught.value.code == "bad_request"


@pytest.fixture
def socket_pair():
    left, right = socket.socketpair()
    left.settimeout(3.0)
    right.settimeout(3.0)
    yield left, right
    left.close()
    right.close()


def test_read_frame_reads_frames_then_none_on_clean_eof(socket_pair):
    left, right = socket_pair
    write_frame(left, SAMPLE)
    write_frame(left, {"event": "done"})
    left.shutdown(socket.SHUT_WR)
    assert read_frame(right) == SAMPLE
    assert read_frame(right) == {"event": "done"}
    assert read_frame(right) is None


@pytest.mark.parametrize("data", [
    struct.pack(">I", 100) + b"0123456789",   # payload cut short
    b"\x00\x00",                              # header cut short
])
def test_read_frame_on_truncated_frame_is_a_protocol_error(socket_pair, data):
    left, right = socket_pair
    left.sendall(data)
    left.shutdown(socket.SHUT_WR)
    with pytest.raises(BridgeError) as caught:
        read_frame(right)
    assert caught.value.code == "protocol"


def test_read_frame_refuses_oversized_length_without_waiting_for_payload(socket_pair):
    left, right = socket_pair
    left.sendall(struct.pack(">I", MAX_FRAME + 1))  # the writer stays open: nothing else comes
    with pytest.raises(BridgeError) as caught:
        read_frame(right)
    assert caught.value.code == "protocol"


def test_decode_yields_the_frames_before_a_bad_one_then_raises():
    decoder = FrameDecoder()
    frames = decoder.decode(encode_frame({"event": "a"}) + encode_frame({"event": "b"}) + raw_frame(b"\xc1"))
    assert next(frames) == {"event": "a"}
    assert next(frames) == {"event": "b"}
    with pytest.raises(BridgeError):
        next(frames)
    with pytest.raises(BridgeError):
        decoder.decode(b"")


def test_decode_takes_the_bytes_even_if_never_iterated():
    decoder = FrameDecoder()
    decoder.decode(encode_frame({"event": "a"})[:5])
    assert decoder.buffered == 5
