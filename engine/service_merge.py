"""Service layer: merge operations (issue 6, being written)."""

from __future__ import annotations

MERGE_OPS: dict = {}
