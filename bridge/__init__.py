"""Swapline bridge: the wire between the Blender add-on (client) and the engine (server).

Layers, each importing only the ones before it: auth (handshake proofs, failed-login limiter) ->
protocol (constants, errors, message shapes) -> framing (bytes <-> msgpack maps) -> tls (optional
encryption) -> handshake -> session/server and client (RPC) ; discovery (mDNS, opt-in).
TLS settings live in `bridge.tls` (TLSConfig, server_context, certificate_fingerprint).
Depends on msgpack, zeroconf and the standard library only, and imports no other project package:
the add-on ships it inside its extension zip, so modules here import each other relatively.
docs/protocol.md describes the wire.
"""

from .client import BridgeClient, Message
from .discovery import DiscoveredEngine, EngineAdvertiser, browse_engines
from .protocol import MAX_FRAME, PROTOCOL_VERSION, SERVICE_TYPE, BridgeError
from .server import BridgeServer, Session

__all__ = [
    "PROTOCOL_VERSION", "MAX_FRAME", "SERVICE_TYPE", "BridgeError", "BridgeServer", "Session",
    "BridgeClient", "Message", "EngineAdvertiser", "browse_engines", "DiscoveredEngine",
]
