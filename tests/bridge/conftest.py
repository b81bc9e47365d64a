"""Fixtures for the bridge tests: a recording handler, a live server on loopback, clients, raw peers."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any, Callable, Iterator

import pytest

from bridge import BridgeClient, BridgeError, BridgeServer, Session
from bridge.auth import client_proof, new_nonce
from bridge.framing import encode_frame, read_frame
from bridge.protocol import hello_proof, hello_request

TOKEN = "test-token"
ENGINE_INFO = {"name": "test-engine", "version": "0.0.1", "device": "cpu", "workspace": "/tmp/ws",
               "host": "127.0.0.1"}


class RecordingHandler:
    """A handler with one op per behaviour under test; remembers every call it received."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict, int]] = []
        self.lock = threading.Lock()
        self.release = threading.Event()  # lets a "wait" request finish on the test's command

    def __call__(self, op: str, args: dict, session: Session) -> Any:
        with self.lock:
            self.calls.append((op, args, session.id))
        if op == "echo":
            return args
        if op == "fail":
            raise BridgeError(args["code"], args["message"])
        if op == "crash":
            raise RuntimeError("handler exploded")
        if op == "sleep":
            time.sleep(args["seconds"])
            return "slept"
        if op == "wait":
            return self.release.wait(args.get("seconds", 5.0))
        if op == "unencodable":
            return object()
        if op == "whoami":
            return {"session": session.id, "client": session.client}
        if op == "notify_me":
            session.send_event({"event": "note", "session": session.id})
            return True
        raise BridgeError("unknown_op", f"no op named {op}")

    def ops(self) -> list[str]:
        with self.lock:
            return [op for op, _, _ in self.calls]


class RawPeer:
    """A hand-driven TCP peer, for sending exactly the bytes a misbehaving client would.

    hello() runs the whole handshake by hand and keeps its nonce, challenge and proof.
    """

    def __init__(self, port: int, timeout: float = 3.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.nonce = new_nonce()
        self.challenge: bytes | None = None
        self.proof: bytes | None = None

    def send(self, message: dict) -> None:
        self.sock.sendall(encode_frame(message))

    def send_bytes(self, data: bytes) -> None:
        self.sock.sendall(data)

    def recv(self) -> dict | None:
        return read_frame(self.sock)

    def challenge_me(self, client: str = "raw") -> dict:
        """Step 1 of the handshake; returns the server's answer (its challenge, or a refusal)."""
        self.send(hello_request(client, self.nonce))
        reply = self.recv()
        assert reply is not None, "server closed instead of answering the hello"
        self.challenge = reply["hello"].get("challenge")
        return reply

    def hello(self, token: str | None = TOKEN, client: str = "raw") -> dict:
        """The whole handshake; returns the server's last hello (accepted, or a refusal)."""
        reply = self.challenge_me(client)
        if self.challenge is None:
            return reply
        self.proof = client_proof(token, self.challenge, self.nonce)
        self.send(hello_proof(self.proof))
        reply = self.recv()
        assert reply is not None, "server closed instead of answering the proof"
        return reply

    def read_until_closed(self) -> list[dict]:
        """Every frame the server still sends, up to its close (a reset counts as a close)."""
        frames: list[dict] = []
        try:
            while (frame := self.recv()) is not None:
                frames.append(frame)
        except ConnectionResetError:
            pass
        return frames

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def handler() -> RecordingHandler:
    return RecordingHandler()


@pytest.fixture
def server(handler: RecordingHandler) -> Iterator[BridgeServer]:
    srv = BridgeServer(handler, token=TOKEN, engine_info=ENGINE_INFO)
    srv.start()
    yield srv
    handler.release.set()
    srv.stop()


@pytest.fixture
def connect(server: BridgeServer) -> Iterator[Callable[..., BridgeClient]]:
    """Factory: a started client of `server`; every client made is closed after the test."""
    clients: list[BridgeClient] = []

    def make(token: str = TOKEN, **options: Any) -> BridgeClient:
        client = BridgeClient("127.0.0.1", server.port, token, timeout=3.0, **options)
        clients.append(client)
        client.connect()
        client.start()
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def peer_of() -> Iterator[Callable[[int], RawPeer]]:
    """Factory: a RawPeer connected to any port; every one made is closed after the test."""
    peers: list[RawPeer] = []

    def make(port: int) -> RawPeer:
        peer = RawPeer(port)
        peers.append(peer)
        return peer

    yield make
    for peer in peers:
        peer.close()


@pytest.fixture
def raw_peer(server: BridgeServer, peer_of: Callable[[int], RawPeer]) -> Callable[[], RawPeer]:
    return lambda: peer_of(server.port)


@pytest.fixture
def token() -> str:
    return TOKEN


@pytest.fixture
def engine_info() -> dict:
    return dict(ENGINE_INFO)
