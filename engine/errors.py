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

    def __reduce__(self):
        # so an error raised in a worker process arrives whole (the default would call cls(message))
        return (_rebuild, (type(self), self.code, self.message))


def _rebuild(cls, code: str, message: str) -> EngineError:
    err = Exception.__new__(cls)
    EngineError.__init__(err, code, message)
    return err


class Cancelled(EngineError):
    """Raised inside a stage when its job was cancelled; the job runner records it as `cancelled`."""

    def __init__(self, message: str = "cancelled by the user") -> None:
        super().__init__("cancelled", message)
