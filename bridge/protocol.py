"""Protocol layer of the bridge: constants, the error type and the shapes of every message.

Pure functions only (no sockets, no threads), so both ends and the tests share one definition of
what a valid frame is. docs/protocol.md is the prose version of this module.
"""

from __future__ import annotations

from typing import Any

from .auth import NONCE_SIZE, client_proof, proof_matches, server_proof

PROTOCOL_VERSION = 2
MAX_FRAME = 64 * 1024 * 1024
SERVICE_TYPE = "_swapline._tcp.local."
HANDSHAKE_TIMEOUT = 10.0


class BridgeError(Exception):
    """An expected failure with a stable `code` and a `message` meant for a person."""

    def __init__(self, code: str, message: str) -> None:
        # Both go to Exception.args so the error pickles and reprs with its code.
        super().__init__(code, message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return f"{self.message} [{self.code}]"

    def to_wire(self) -> dict[str, str]:
        return {"code": str(self.code), "message": str(self.message)}

    @classmethod
    def from_wire(cls, data: Any) -> BridgeError:
        """Rebuild an error from its wire map; a malformed map becomes a `protocol` error."""
        if isinstance(data, dict) and isinstance(data.get("code"), str):
            message = data.get("message")
            return cls(data["code"], message if isinstance(message, str) else data["code"])
        return cls("protocol", f"malformed error payload: {data!r:.200}")


def _is_id(value: Any) -> bool:
    # bool is an int subclass; True must not pass for request id 1.
    return isinstance(value, int) and not isinstance(value, bool)


def message_kind(message: Any) -> str:
    """Classify a decoded frame as hello, request, response, event or error.

    Unknown keys beside the defining ones are ignored, so a later minor revision can add fields.
    Raises BridgeError("protocol") for anything that is none of the kinds.
    """
    if not isinstance(message, dict):
        raise BridgeError("protocol", "frame is not a map")
    # "event" is tested first: events are the only kind whose top-level keys are free, so an
    # event carrying an "ok" or "op" field must still read as an event.
    if "event" in message:
        if isinstance(message["event"], str):
            return "event"
    elif "hello" in message:
        if isinstance(message["hello"], dict):
            return "hello"
    elif "op" in message:
        if (_is_id(message.get("id")) and isinstance(message["op"], str)
                and isinstance(message.get("args", {}), dict)):
            return "request"
    elif "ok" in message:
        if _is_id(message.get("id")) and isinstance(message["ok"], bool):
            if message["ok"] or isinstance(message.get("error"), dict):
                return "response"
    elif "error" in message:
        if isinstance(message["error"], dict):
            return "error"
    raise BridgeError("protocol", f"not a valid bridge message: {_preview(message)}")


def _preview(message: dict) -> str:
    return "{" + ", ".join(repr(key)[:40] for key in list(message)[:6]) + "}"


# Builders: one per message kind, so the wire shapes are spelled out in exactly one place.

def hello_request(client: str, nonce: bytes) -> dict:
    return {"hello": {"protocol": PROTOCOL_VERSION, "client": client, "nonce": nonce}}


def hello_challenge(challenge: bytes) -> dict:
    return {"hello": {"protocol": PROTOCOL_VERSION, "challenge": challenge}}


def hello_proof(proof: bytes) -> dict:
    return {"hello": {"proof": proof}}


def hello_accepted(engine: dict, proof: bytes) -> dict:
    return {"hello": {"protocol": PROTOCOL_VERSION, "ok": True, "engine": engine, "proof": proof}}


def hello_refused(error: BridgeError) -> dict:
    return {"hello": {"protocol": PROTOCOL_VERSION, "ok": False, "error": error.to_wire()}}


def request(request_id: int, op: str, args: dict) -> dict:
    return {"id": request_id, "op": op, "args": args}


def response_ok(request_id: int, result: Any) -> dict:
    return {"id": request_id, "ok": True, "result": result}


def response_error(request_id: int, error: BridgeError) -> dict:
    return {"id": request_id, "ok": False, "error": error.to_wire()}


def protocol_error(message: str) -> dict:
    return {"error": {"code": "protocol", "message": message}}


def _check_version(version: Any, ours_first: bool) -> None:
    if not _is_id(version) or version != PROTOCOL_VERSION:
        engine, client = (PROTOCOL_VERSION, version) if ours_first else (version, PROTOCOL_VERSION)
        raise BridgeError("protocol_version",
                          f"the engine speaks bridge protocol {engine!r}, the client speaks {client!r}")


def _is_nonce(value: Any) -> bool:
    return isinstance(value, bytes) and len(value) == NONCE_SIZE


def check_hello(hello: dict) -> tuple[str, bytes]:
    """Server side, step 1: validate a client's hello; returns the client's name and its nonce.

    The version is checked first so a client from another release learns why it is refused.
    """
    _check_version(hello.get("protocol"), ours_first=True)
    if not _is_nonce(hello.get("nonce")):
        raise BridgeError("protocol", f"the hello carries no {NONCE_SIZE}-byte nonce")
    client = hello.get("client")
    return (client if isinstance(client, str) else "unknown"), hello["nonce"]


def check_challenge(message: Any) -> bytes:
    """Client side, step 2: the server's challenge, or its refusal (another version) raised."""
    hello = _server_hello(message)
    if hello.get("ok") is False:
        raise BridgeError.from_wire(hello.get("error"))
    _check_version(hello.get("protocol"), ours_first=False)
    if not _is_nonce(hello.get("challenge")):
        raise BridgeError("protocol", f"the engine's challenge is not {NONCE_SIZE} bytes")
    return hello["challenge"]


def check_proof(hello: dict, token: str | None, challenge: bytes, nonce: bytes) -> None:
    """Server side, step 3: the client's proof of the token; token None accepts any proof."""
    if token is not None and not proof_matches(client_proof(token, challenge, nonce), hello.get("proof")):
        raise BridgeError("unauthorized", "the engine refused the token")


def check_accepted(message: Any, token: str | None, nonce: bytes, challenge: bytes) -> dict:
    """Client side, step 4: the engine info, once the engine has proven it holds the token too."""
    hello = _server_hello(message)
    if hello.get("ok") is not True:
        raise BridgeError.from_wire(hello.get("error"))
    _check_version(hello.get("protocol"), ours_first=False)
    if not proof_matches(server_proof(token, nonce, challenge), hello.get("proof")):
        raise BridgeError("untrusted_engine",
                          "the engine could not prove it holds the token: it may be an impostor")
    engine = hello.get("engine")
    return engine if isinstance(engine, dict) else {}


def _server_hello(message: Any) -> dict:
    if message_kind(message) != "hello":
        raise BridgeError("protocol", "the engine did not answer the handshake with a hello")
    return message["hello"]
