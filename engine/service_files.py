"""Service layer: media by content hash (chunked, resumable uploads) and reading workspace files back.

Skeleton: filled in by the media-transfer work of issue 7.
"""

from __future__ import annotations

FILE_OPS: dict = {}
