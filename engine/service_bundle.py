"""Service layer: a model and its destination faceset packed for another engine, and unpacked there.

Skeleton: filled in by the several-engines work of issue 7.
"""

from __future__ import annotations

BUNDLE_OPS: dict = {}
