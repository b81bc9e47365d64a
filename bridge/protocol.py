"""Protocol layer of the bridge: constants, the error type and the shapes of every message.

Pure functions only (no sockets, no threads), so both ends and the tests share one definition of
what a valid frame is. docs/protocol.md is the prose version of this module.
"""

from __future__ import annotations

import hmac
from typing import Any

PROTOCOL_VERSION = 1
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

def hello_request(token: str | None, client: str) -> dict:
    return {"hello": {"protocol": PROTOCOL_VERSION, "token": token, "client": client}}


def hello_accepted(engine: dict) -> dict:
    return {"hello": {"protocol": PROTOCOL_VERSION, "ok": True, "engine": engine}}


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


def check_hello(hello: dict, token: str | None) -> str:
    """Server side: validate a client's hello payload and return the client's name.

    The version is checked before the token so a client from another release learns why it
    is refused; the version number is no secret. token None accepts any token (see docs).
    """
    version = hello.get("protocol")
    if not _is_id(version) or version != PROTOCOL_VERSION:
        raise BridgeError("protocol_version",
                          f"the engine speaks bridge protocol {PROTOCOL_VERSION}, "
                          f"the client speaks {version!r}")
    if token is not None:
        offered = hello.get("token")
        # compare_digest needs equal types; bytes also avoids its TypeError on non-ASCII str.
        if not isinstance(offered, str) or not hmac.compare_digest(offered.encode(), token.encode()):
            raise BridgeError("unauthorized", "the engine refused the token")
    client = hello.get("client")
    return client if isinstance(client, str) else "unknown"


def check_hello_reply(message: Any) -> dict:
    """Client side: return the engine info from the server's hello, or raise its refusal."""
    if message_kind(message) != "hello":
        raise BridgeError("protocol", "the engine did not answer the handshake with a hello")
    hello = message["hello"]
    if hello.get("ok") is not True:
        raise BridgeError.from_wire(hello.get("error"))
    if hello.get("protocol") != PROTOCOL_VERSION:
        raise BridgeError("protocol_version",
                          f"the engine speaks bridge protocol {hello.get('protocol')!r}, "
                          f"this client speaks {PROTOCOL_VERSION}")
    engine = hello.get("engine")
    return engine if isinstance(engine, dict) else {}
