"""Blender layer: the preview collections that hold face thumbnails, one per group of faces on show.

Only the drain loads into them (a few small JPGs per timer tick); a group is cleared when what it
shows is replaced, and everything is released on unregister. Icon ids are 0 in background Blender
(previews get icons only with a UI), so headless code checks `preview(...).image_size` instead.
"""

from __future__ import annotations

import bpy
import bpy.utils.previews

PAGE, PEOPLE = "page", "people"  # the page of faces on show; one face per track

_collections: dict[str, "bpy.utils.previews.ImagePreviewCollection"] = {}


def load(group: str, path: str) -> int:
    """Load `path` into `group` (once); returns its icon id."""
    collection = _collections.get(group)
    if collection is None:
        collection = _collections[group] = bpy.utils.previews.new()
    preview = collection.get(path) or collection.load(path, path, "IMAGE")
    return preview.icon_id


def preview(group: str, path: str):
    """The loaded preview of `path` in `group`, or None."""
    collection = _collections.get(group)
    return collection.get(path) if collection is not None else None


def clear(group: str) -> None:
    collection = _collections.pop(group, None)
    if collection is not None:
        bpy.utils.previews.remove(collection)


def unregister() -> None:
    for group in list(_collections):
        clear(group)
