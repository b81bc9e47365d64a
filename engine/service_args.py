"""Service layer: checking a request's arguments (types from the wire are the caller's to get right)."""

from __future__ import annotations

from .errors import EngineError


def arg(args: dict, name: str, kind: type, default=None, optional: bool = False):
    """A request argument of this type; with `optional`, a missing or nil one is `default`."""
    value = args.get(name)
    if value is None and optional:
        return default
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise EngineError("bad_request", f"argument {name!r} must be a {kind.__name__}")
    return value


def ints(args: dict, name: str, optional: bool = False) -> list[int] | None:
    value = arg(args, name, list, optional=optional)
    if value is not None and not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise EngineError("bad_request", f"argument {name!r} must be a list of integers")
    return value


def settings(cls, params: dict):
    """A stage's settings dataclass from a job's params; a bad key or value is the caller's mistake."""
    try:
        return cls.from_dict(params)
    except ValueError as exc:
        raise EngineError("bad_request", str(exc)) from None
