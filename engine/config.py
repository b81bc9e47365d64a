"""Shared piece: strict settings dataclasses. An unknown key or a value of the wrong type is an error.

Settings come from the wire, the command line and checkpoints; a typo there must fail loudly
instead of silently training or merging with a default.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

T = TypeVar("T")

# Annotations are strings (from __future__ import annotations): the types a field may hold.
_ACCEPTS: dict[str, tuple[type, ...]] = {
    "int": (int,), "float": (int, float), "bool": (bool,), "str": (str,),
    "float | None": (int, float, type(None)), "int | None": (int, type(None)), "str | None": (str, type(None)),
}


def check_types(obj: Any, what: str) -> None:
    """Raise ValueError for a field whose value is not of its annotated type (a bool is no int)."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        name = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
        ok = _ACCEPTS.get(name)
        if ok is None:
            continue  # a richer type: the dataclass checks it itself
        if not isinstance(value, ok) or (isinstance(value, bool) and bool not in ok):
            raise ValueError(f"{what} {f.name!r} must be {name}, got {value!r}")


def from_dict(cls: type[T], d: dict[str, Any], what: str) -> T:
    """Build `cls` from a plain map, refusing keys it does not know."""
    if not isinstance(d, dict):
        raise ValueError(f"{what}s must be a map, got {type(d).__name__}")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise ValueError(f"unknown {what}(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    try:
        return cls(**d)
    except TypeError as exc:  # a required field is missing
        raise ValueError(f"{what}s: {exc}") from None
