"""Framing layer of the bridge: bytes <-> msgpack maps, as 4-byte big-endian length + payload.

Knows nothing of requests or handshakes; protocol.py gives the maps their meaning.
"""

from __future__ import annotations

import socket
import struct
from typing import Any, Iterator

import msgpack

from .protocol import MAX_FRAME, BridgeError

_HEADER = struct.Struct(">I")
RECV_SIZE = 256 * 1024  # bytes asked of one recv() by the reading loops on both ends


def encode_frame(message: dict) -> bytes:
    """Pack one map into a frame; a value msgpack cannot carry is the caller's `bad_request`."""
    if not isinstance(message, dict):
        raise BridgeError("bad_request", f"a frame holds a map, not {type(message).__name__}")
    try:
        payload = msgpack.packb(message, use_bin_type=True)
    except (TypeError, ValueError, OverflowError) as exc:
        raise BridgeError("bad_request", f"message cannot be encoded: {exc}") from None
    if len(payload) > MAX_FRAME:
        raise BridgeError("bad_request",
                          f"message of {len(payload)} bytes exceeds the {MAX_FRAME} byte frame limit")
    return _HEADER.pack(len(payload)) + payload


def decode_payload(payload: bytes | bytearray) -> dict:
    """Unpack one frame's payload; anything but a single msgpack map is a `protocol` error."""
    try:
        # Non-string map keys are allowed so an int-keyed result survives the trip.
        message: Any = msgpack.unpackb(payload, raw=False, strict_map_key=False)
    except Exception as exc:  # noqa: BLE001 - untrusted bytes fail in many ways; all mean the same
        raise BridgeError("protocol", f"undecodable frame: {type(exc).__name__}: {exc}"[:200]) from None
    if not isinstance(message, dict):
        raise BridgeError("protocol", f"frame holds a {type(message).__name__}, not a map")
    return message


def _check_length(length: int) -> None:
    # Checked before anything is allocated: a hostile header must not reserve 4 GiB.
    if length > MAX_FRAME:
        raise BridgeError("protocol", f"frame length {length} exceeds the {MAX_FRAME} byte limit")


class FrameDecoder:
    """Streaming decoder: give it whatever recv() returned, get back the complete maps.

    feed() returns a list and, on a bad frame, raises without the good maps decoded before it in
    the same call. decode() yields each map as soon as it is complete and raises when it reaches
    the bad frame, so a connection can act on the frames that preceded it; both loops use it.
    After a protocol error the stream cannot be resynchronised: the decoder stays failed.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._error: BridgeError | None = None

    @property
    def buffered(self) -> int:
        """Bytes of an incomplete frame held back; nonzero at EOF means the frame was truncated."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[dict]:
        return list(self.decode(data))

    def decode(self, data: bytes) -> Iterator[dict]:
        # Not a generator itself: the bytes are taken now, even if the caller never iterates.
        if self._error is not None:
            raise self._error
        self._buffer += data
        return self._drain()

    def _drain(self) -> Iterator[dict]:
        try:
            while len(self._buffer) >= _HEADER.size:
                (length,) = _HEADER.unpack_from(self._buffer)
                _check_length(length)
                end = _HEADER.size + length
                if len(self._buffer) < end:
                    return
                payload = self._buffer[_HEADER.size:end]
                # bytearray drops its head in O(1), so many small frames per chunk stay cheap.
                del self._buffer[:end]
                yield decode_payload(payload)
        except BridgeError as err:
            self._error = err
            self._buffer.clear()
            raise


def _recv_exactly(sock: socket.socket, size: int) -> bytearray:
    buffer = bytearray(size)
    view = memoryview(buffer)
    received = 0
    while received < size:
        count = sock.recv_into(view[received:])
        if count == 0:
            raise EOFError(received)
        received += count
    return buffer


def read_frame(sock: socket.socket) -> dict | None:
    """Blocking read of one frame. None on a clean EOF between frames.

    A frame cut short raises BridgeError("protocol"); socket timeouts and other OSErrors pass
    through unchanged so the caller can tell a slow peer from a broken one.
    """
    try:
        header = _recv_exactly(sock, _HEADER.size)
    except EOFError as eof:
        if eof.args[0] == 0:
            return None
        raise BridgeError("protocol", "connection closed inside a frame header") from None
    (length,) = _HEADER.unpack(header)
    _check_length(length)
    try:
        payload = _recv_exactly(sock, length)
    except EOFError as eof:
        raise BridgeError("protocol",
                          f"connection closed after {eof.args[0]} of {length} frame bytes") from None
    return decode_payload(payload)


def write_frame(sock: socket.socket, message: dict) -> None:
    """Blocking write of one frame; callers sharing a socket hold their own write lock."""
    sock.sendall(encode_frame(message))


def shutdown_socket(sock: socket.socket) -> None:
    """Shut both directions, waking any thread blocked on the socket; the descriptor stays open."""
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already shut down or reset by the peer: the goal is reached either way
