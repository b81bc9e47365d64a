"""Blender layer: (issue 6, being written)."""

from __future__ import annotations

classes = ()
