"""Service layer: the synchronous mask operations (labels, previews, removal) the add-on calls."""

from __future__ import annotations

MASK_OPS: dict = {}
