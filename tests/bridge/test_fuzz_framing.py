"""Fuzz tests for bridge.framing and protocol.message_kind: whatever bytes arrive, the outcome is the
maps that were encoded, or BridgeError("protocol"), never another exception and never a big allocation.

SWAPLINE_FUZZ=long runs many more examples; the cases run are counted and printed at the end of the
session (tests/fuzzcount.py).
"""

from __future__ import annotations

import socket
import struct
import sys
import threading
import tracemalloc
from pathlib import Path

import msgpack
import pytest
from hypothesis import given, strategies as st

from bridge import MAX_FRAME, BridgeError
from bridge.framing import FrameDecoder, encode_frame, read_frame
from bridge.protocol import message_kind

sys.path.append(str(Path(__file__).resolve().parents[1]))  # tests/, for the shared fuzz counter
from fuzzcount import count_case, examples, fuzz_cases  # noqa: E402,F401 - fuzz_cases: autouse fixture

pytestmark = pytest.mark.timeout(300)

KINDS = {"hello", "request", "response", "event", "error"}

# msgpack round-trips these exactly: no NaN (NaN != NaN), no tuples (they come back as lists), map keys
# that stay distinct after the trip (True and 1 are the same dict key, so bools are left out of keys).
scalars = (st.none() | st.booleans() | st.integers(-2**63, 2**64 - 1)
           | st.floats(allow_nan=False) | st.text(max_size=40) | st.binary(max_size=60))
keys = st.text(max_size=12) | st.integers(-2**63, 2**64 - 1)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=6) | st.dictionaries(keys, inner, max_size=6),
                      max_leaves=12)
maps = st.dictionaries(keys, values, max_size=6)


def frame_of(payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + payload


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    """data split at the given offsets (taken modulo its length, sorted), empty chunks included."""
    points = sorted({c % (len(data) + 1) for c in cuts})
    edges = [0, *points, len(data)]
    return [data[a:b] for a, b in zip(edges, edges[1:])]


def feed_all(decoder: FrameDecoder, pieces: list[bytes]) -> tuple[list[dict], BridgeError | None]:
    """Every map decoded before the first error, and that error (a protocol one) or None."""
    out: list[dict] = []
    for piece in pieces:
        try:
            for message in decoder.decode(piece):
                out.append(message)
        except BridgeError as err:
            assert err.code == "protocol", err
            return out, err
    return out, None


@examples(200)
@given(data=st.binary(max_size=2000), cuts=st.lists(st.integers(0, 4000), max_size=8))
def test_random_bytes_give_maps_or_a_protocol_error(data, cuts):
    count_case("framing: random bytes")
    decoder = FrameDecoder()
    messages, error = feed_all(decoder, chunked(data, cuts))
    assert all(isinstance(m, dict) for m in messages)
    if error is not None:  # the decoder stays failed: the stream cannot be resynchronised
        with pytest.raises(BridgeError) as again:
            decoder.feed(b"\x00\x00\x00\x01\x80")
        assert again.value.code == "protocol" and decoder.buffered == 0


@examples(60)
@given(messages=st.lists(maps, min_size=1, max_size=4), cuts=st.lists(st.integers(0, 10**6), max_size=10),
       keep=st.integers(0, 10**6))
def test_valid_frames_in_any_chunks_come_back_equal_and_a_cut_stream_keeps_the_rest(messages, cuts, keep):
    count_case("framing: valid frames chunked")
    stream = b"".join(encode_frame(m) for m in messages)
    decoded, error = feed_all(FrameDecoder(), chunked(stream, cuts))
    assert error is None and decoded == messages
    # Cut short anywhere: the complete frames before the cut come back, the rest stays buffered.
    cut = keep % (len(stream) + 1)
    decoder = FrameDecoder()
    decoded, error = feed_all(decoder, chunked(stream[:cut], cuts))
    ends = [len(b"".join(encode_frame(m) for m in messages[:i + 1])) for i in range(len(messages))]
    whole = sum(end <= cut for end in ends)
    assert error is None and decoded == messages[:whole]
    assert decoder.buffered == cut - (ends[whole - 1] if whole else 0)


@examples(100)
@given(length=st.integers(MAX_FRAME + 1, 2**32 - 1), tail=st.binary(max_size=64))
def test_an_oversized_length_is_refused_from_the_header_without_allocating(length, tail):
    count_case("framing: oversized length")
    tracemalloc.start()
    try:
        with pytest.raises(BridgeError) as err:
            FrameDecoder().feed(struct.pack(">I", length) + tail)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert err.value.code == "protocol"
    assert peak < 256 * 1024, f"{peak} bytes allocated for a refused header"


@examples(60)
@given(length=st.integers(MAX_FRAME + 1, 2**32 - 1), tail=st.binary(max_size=64))
def test_read_frame_refuses_an_oversized_length_without_allocating(length, tail):
    count_case("framing: read_frame oversized")
    a, b = socket.socketpair()
    try:
        a.sendall(struct.pack(">I", length) + tail)
        a.close()
        tracemalloc.start()
        try:
            with pytest.raises(BridgeError) as err:
                read_frame(b)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    finally:
        b.close()
    assert err.value.code == "protocol" and peak < 256 * 1024


@examples(200)
@given(data=st.binary(max_size=3000))
def test_read_frame_on_random_bytes_then_eof(data):
    count_case("framing: read_frame random bytes")
    a, b = socket.socketpair()
    # Bytes beyond the socket buffer would block a writer on this thread; a helper thread writes.
    writer = threading.Thread(target=lambda: (a.sendall(data), a.close()), daemon=True)
    writer.start()
    b.settimeout(10)
    try:
        while True:
            try:
                message = read_frame(b)
            except BridgeError as err:
                assert err.code == "protocol"
                break
            if message is None:
                break
            assert isinstance(message, dict)
    finally:
        writer.join(10)
        b.close()


@examples(100)
@given(value=values.filter(lambda v: not isinstance(v, dict)))
def test_a_payload_that_is_not_a_map_is_a_protocol_error(value):
    count_case("framing: non-map payload")
    with pytest.raises(BridgeError) as err:
        FrameDecoder().feed(frame_of(msgpack.packb(value, use_bin_type=True)))
    assert err.value.code == "protocol"


def test_deeply_nested_and_huge_declared_values_inside_a_small_frame():
    """msgpack's own limits (nesting depth, lengths beyond the buffer) become protocol errors, cheaply."""
    count_case("framing: nested and declared-huge")
    hostile = [
        b"\x81\xa1a" + b"\x91" * 200_000 + b"\xc0",   # a map holding 200000 nested one-item arrays
        b"\x81\xa1a\xdd\xff\xff\xff\xff",              # an array declaring 2**32 - 1 items
        b"\xdf\xff\xff\xff\xff",                       # a map declaring 2**32 - 1 pairs
        b"\x81\xa1a\xc6\xff\xff\xff\xf0",              # a bin declaring ~4 GiB
        b"\x81\xa1a\xdb\x7f\xff\xff\xff",              # a str declaring 2 GiB
    ]
    for payload in hostile:
        tracemalloc.start()
        try:
            with pytest.raises(BridgeError) as err:
                FrameDecoder().feed(frame_of(payload))
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert err.value.code == "protocol"
        assert peak < 64 * 1024 * 1024, f"{peak} bytes for {payload[:8]!r}"


def test_a_big_value_just_inside_the_limit_comes_back_whole():
    count_case("framing: big value within the limit")
    blob = bytes(range(256)) * ((MAX_FRAME - 64) // 256)
    message = {"id": 1, "op": "media.upload", "args": {"data": blob, "list": list(range(50_000))}}
    frame = encode_frame({"id": 1, "op": "x", "args": {"data": blob}})
    assert len(frame) <= MAX_FRAME + 4
    with pytest.raises(BridgeError) as err:  # the one with a list on top is over the limit: refused to send
        encode_frame(message)
    assert err.value.code == "bad_request"
    decoder = FrameDecoder()
    got, error = feed_all(decoder, chunked(frame, [5, 4096, 1 << 20, len(frame) - 1]))
    assert error is None and got[0]["args"]["data"] == blob and decoder.buffered == 0


@examples(120)
@given(value=values | st.dictionaries(st.sampled_from(["event", "hello", "op", "ok", "error", "id", "args", "x"]),
                                      values, max_size=5))
def test_message_kind_names_a_kind_or_raises_protocol(value):
    count_case("protocol: message_kind")
    try:
        kind = message_kind(value)
    except BridgeError as err:
        assert err.code == "protocol"
    else:
        assert kind in KINDS and isinstance(value, dict)
