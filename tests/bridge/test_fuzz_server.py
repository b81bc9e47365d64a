"""Fuzz tests for a live BridgeServer on loopback: hostile clients before and after the handshake.

After every case: the hostile client got what the protocol promises (answers, a refusal or a protocol
error frame) and then a close, within a timeout, never a hang; and a well-behaved BridgeClient still
connects and calls. Over the whole run the server's memory stays bounded and no connection is left open.
Authenticated cases log in with bridge.handshake.connect_engine, the client's own handshake, and then
write raw bytes on the stream it returns.
"""

from __future__ import annotations

import gc
import socket
import struct
import sys
import threading
import time
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import given, strategies as st

from bridge import MAX_FRAME, BridgeClient, BridgeError, BridgeServer
from bridge.framing import FrameDecoder, encode_frame
from bridge.handshake import connect_engine
from bridge.protocol import PROTOCOL_VERSION, message_kind

sys.path.append(str(Path(__file__).resolve().parents[1]))  # tests/, for the shared fuzz counter
from fuzzcount import count_case, examples, fuzz_cases  # noqa: E402,F401 - fuzz_cases: autouse fixture

pytestmark = pytest.mark.timeout(600)

TOKEN = "fuzz-token"
CASE_TIMEOUT = 10.0  # seconds a hostile connection may take to be answered and closed
MEMORY_GROWTH = 32 * 2**20  # bytes the server may still hold after the run (caches, logs), at most


def handler(op: str, args: dict, session) -> object:
    if op == "echo":
        return args
    if op == "fail":
        raise BridgeError("refused", "refused on purpose")
    raise BridgeError("unknown_op", f"no op named {op!r}")


class Fuzzed:
    """The server under fuzz and what the run measured."""

    def __init__(self) -> None:
        self.server = BridgeServer(handler, token=TOKEN, engine_info={"name": "fuzz"})
        self.server.handshake_timeout = 1.5  # a silent client costs this long; keep the run short
        self.port = self.server.start()


@pytest.fixture(scope="module")
def fuzzed():
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    state = Fuzzed()
    yield state
    state.server.stop()
    gc.collect()
    after, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(f"server fuzz memory: {(after - before) / 2**20:.1f} MiB kept, peak {peak / 2**20:.1f} MiB")
    assert after - before < MEMORY_GROWTH, f"{(after - before) / 2**20:.1f} MiB kept after the fuzz run"


def well_behaved(port: int) -> None:
    """A proper client connects and calls: the fuzzed connections broke nothing for anyone else."""
    client = BridgeClient("127.0.0.1", port, TOKEN, client_name="fuzz-check", timeout=5.0)
    try:
        client.connect()
        assert client.call("echo", {"still": "here"}, timeout=10) == {"still": "here"}
    finally:
        client.close()


def exchange(stream, data: bytes, close: bool = True) -> tuple[list[dict], BridgeError | None]:
    """Send `data`, end our side (with `close`), read until the server closes: its frames, and the
    protocol error met decoding them (None when all decoded). Fails when the server does not close."""
    try:
        stream.sendall(data)
        if close:
            stream.shutdown(socket.SHUT_WR)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the server may hang up before reading all of it: that is one of the allowed endings
    decoder, frames, deadline = FrameDecoder(), [], time.monotonic() + CASE_TIMEOUT
    while True:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"the server neither answered nor closed within {CASE_TIMEOUT} s"
        stream.settimeout(remaining)
        try:
            chunk = stream.recv(65536)
        except ConnectionResetError:
            chunk = b""
        except (TimeoutError, socket.timeout):
            continue
        if not chunk:
            return frames, None
        try:
            frames.extend(decoder.feed(chunk))
        except BridgeError as err:
            return frames, err


def raw(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=CASE_TIMEOUT)


def before_handshake(port: int, data: bytes) -> list[dict]:
    """Send `data` on a fresh connection; only a hello may be answered before the handshake, and
    only with a hello (challenge or refusal). Returns the frames that came back."""
    sock = raw(port)
    try:
        frames, error = exchange(sock, data)
    finally:
        sock.close()
    assert error is None and all(message_kind(f) == "hello" for f in frames), frames
    return frames


def logged_in(port: int):
    """A stream past the handshake, by the client's own handshake code."""
    sock = raw(port)
    stream, engine = connect_engine(sock, token=TOKEN, client_name="fuzz", host="127.0.0.1", tls=None,
                                    deadline=time.monotonic() + CASE_TIMEOUT)
    assert engine == {"name": "fuzz"}
    return stream


# -- before the handshake ---------------------------------------------------------------------

@examples(40)
@given(data=st.binary(max_size=3000) | st.binary(max_size=20).map(lambda b: struct.pack(">I", len(b) + 7) + b))
def test_garbage_before_the_handshake_is_closed_without_an_answer(fuzzed, data):
    count_case("server: bytes before the handshake")
    before_handshake(fuzzed.port, data)
    well_behaved(fuzzed.port)


hello_fields = st.fixed_dictionaries({}, optional={
    "protocol": st.sampled_from([PROTOCOL_VERSION, 1, 0, -1, 2**63, "2", None, 2.0, True]),
    "client": st.text(max_size=20) | st.binary(max_size=8) | st.none() | st.integers(-2**63, 2**64 - 1),
    "nonce": st.binary(min_size=32, max_size=32) | st.binary(max_size=64) | st.text(max_size=32) | st.none(),
    "proof": st.binary(max_size=40), "token": st.text(max_size=20),
})


@examples(40)
@given(hello=hello_fields, second=st.none() | hello_fields | st.binary(max_size=100))
def test_malformed_hellos_get_a_hello_or_nothing_then_a_close(fuzzed, hello, second):
    count_case("server: malformed hellos")
    data = encode_frame({"hello": hello})
    if isinstance(second, dict):
        data += encode_frame({"hello": second})
    elif isinstance(second, bytes):
        data += second
    frames = before_handshake(fuzzed.port, data)
    assert not any(f["hello"].get("ok") is True for f in frames), "a login without the token was accepted"
    well_behaved(fuzzed.port)


def test_an_oversized_length_or_a_silent_client_before_the_handshake(fuzzed):
    count_case("server: oversized and silent before the handshake")
    for data, close in ((struct.pack(">I", MAX_FRAME + 1), False), (struct.pack(">I", 2**32 - 1) + b"x" * 100, False),
                        (struct.pack(">I", 40) + b"\x81", False), (b"", False)):
        sock = raw(fuzzed.port)
        started = time.monotonic()
        try:
            frames, error = exchange(sock, data, close=close)  # our side stays open: the server must end it
        finally:
            sock.close()
        assert frames == [] and error is None
        assert time.monotonic() - started < fuzzed.server.handshake_timeout + 5
    well_behaved(fuzzed.port)


# -- after the handshake ----------------------------------------------------------------------

message_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**63, 2**64 - 1) | st.text(max_size=20) | st.binary(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=10)
messages = st.dictionaries(
    st.sampled_from(["id", "op", "args", "ok", "event", "hello", "error", "result", "x"]),
    message_values | st.sampled_from(["echo", "fail", "nope"]) | st.integers(0, 5), max_size=5)
requests = st.fixed_dictionaries({"id": st.integers(0, 2**63), "op": st.sampled_from(["echo", "fail", "nope", ""])},
                                 optional={"args": st.dictionaries(st.text(max_size=6), message_values, max_size=4)})


@examples(50)
@given(sent=st.lists(requests | messages, min_size=1, max_size=6))
def test_after_the_handshake_requests_are_answered_in_order_and_anything_else_ends_it(fuzzed, sent):
    count_case("server: messages after the handshake")
    stream = logged_in(fuzzed.port)
    try:
        frames, error = exchange(stream, b"".join(encode_frame(m) for m in sent))
    finally:
        stream.close()
    assert error is None
    expected = []
    for message in sent:
        try:
            kind = message_kind(message)
        except BridgeError:
            kind = "invalid"
        if kind != "request":
            expected.append(("error", None))  # one protocol error frame, then the server closes
            break
        expected.append(("response", message["id"]))
    got = [(message_kind(f), f.get("id")) for f in frames]
    assert got == expected, (sent, frames)
    for frame, message in zip(frames, sent):
        if message_kind(frame) == "response" and message["op"] == "echo":
            assert frame["ok"] and frame["result"] == message.get("args", {})
        elif message_kind(frame) == "response":
            assert frame["error"]["code"] == ("refused" if message["op"] == "fail" else "unknown_op")
        else:
            assert frame["error"]["code"] == "protocol"
    well_behaved(fuzzed.port)


@examples(40)
@given(data=st.binary(max_size=3000), cut=st.booleans())
def test_raw_bytes_after_the_handshake_end_in_answers_a_protocol_error_or_a_close(fuzzed, data, cut):
    count_case("server: bytes after the handshake")
    stream = logged_in(fuzzed.port)
    if cut:  # a valid request cut short in front: the server waits for the rest, then reads garbage
        data = encode_frame({"id": 1, "op": "echo", "args": {"a": 1}})[:-3] + data
    try:
        frames, error = exchange(stream, data)
    finally:
        stream.close()
    assert error is None
    kinds = [message_kind(f) for f in frames]
    assert all(k == "response" for k in kinds[:-1]) and (not kinds or kinds[-1] in ("response", "error")), frames
    well_behaved(fuzzed.port)


@examples(8)
@given(size=st.sampled_from([1, 2**20, 4 * 2**20]), shape=st.sampled_from(["str", "bin", "list", "map"]))
def test_big_values_within_the_limit_come_back_whole(fuzzed, size, shape):
    count_case("server: big values")
    value = {"str": lambda: "é" * (size // 2), "bin": lambda: b"\xff" * size,
             "list": lambda: list(range(size // 8)), "map": lambda: {str(i): i for i in range(size // 16)}}[shape]()
    client = BridgeClient("127.0.0.1", fuzzed.port, TOKEN, client_name="fuzz-big", timeout=30.0)
    try:
        client.connect()
        assert client.call("echo", {"v": value}, timeout=60) == {"v": value}
        with pytest.raises(BridgeError) as err:  # an op no engine has: refused, the connection stays
            client.call("x" * (size // 4 + 1), {"v": value}, timeout=60)
        assert err.value.code == "unknown_op" and client.call("echo", {}, timeout=10) == {}
    finally:
        client.close()


def test_oversized_and_truncated_frames_after_the_handshake(fuzzed):
    count_case("server: oversized and truncated after the handshake")
    cases = [(struct.pack(">I", MAX_FRAME + 1), False, "error"),          # refused from the header
             (struct.pack(">I", 2**32 - 1) + b"\x00" * 64, True, "error"),
             (encode_frame({"id": 1, "op": "echo"})[:-2], True, None),     # cut short, then EOF: a close
             (struct.pack(">I", 5) + b"\x93\x01\x02\x03\x00", True, "error")]  # a frame that is not a map
    for data, close, last in cases:
        stream = logged_in(fuzzed.port)
        try:
            frames, error = exchange(stream, data, close=close)
        finally:
            stream.close()
        assert error is None and [message_kind(f) for f in frames] == ([last] if last else []), frames
        if last:
            assert frames[0]["error"]["code"] == "protocol"
    well_behaved(fuzzed.port)


def test_many_hostile_connections_at_once_leave_none_open(fuzzed):
    """32 hostile connections in parallel (garbage, silence, bad logins), then every one is gone."""
    count_case("server: parallel hostile connections")
    def hostile(i: int) -> None:
        try:
            if i % 3 == 0:
                stream = logged_in(fuzzed.port)
                exchange(stream, b"\x00\x00\x00\x03\x01\x02\x03")
                stream.close()
            else:
                sock = raw(fuzzed.port)
                exchange(sock, bytes([i]) * (i * 100), close=i % 3 == 1)
                sock.close()
        except (OSError, BridgeError):
            pass  # refused at the door (too many connections) is an allowed outcome here
    threads = [threading.Thread(target=hostile, args=(i,)) for i in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(CASE_TIMEOUT + 5)
    assert not any(t.is_alive() for t in threads), "a hostile connection hung"
    well_behaved(fuzzed.port)
    deadline = time.monotonic() + 10
    while [t for t in threading.enumerate() if t.name.startswith("swapline-bridge-conn")]:
        assert time.monotonic() < deadline, "connection threads still running 10 s after their clients left"
        time.sleep(0.05)
