"""Shared piece: the engine's domain errors, with stable codes the bridge carries as they are."""

from __future__ import annotations


class EngineError(Exception):
    """An expected failure with a stable code (`no_faces`, `not_found`, ...) and a message for a person."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return f"{self.message} [{self.code}]"


class Cancelled(EngineError):
    """Raised inside a stage when its job was cancelled; the job runner records it as `cancelled`."""

    def __init__(self, message: str = "cancelled by the user") -> None:
        super().__init__("cancelled", message)
