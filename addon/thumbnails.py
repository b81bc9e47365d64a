"""Blender layer: the preview collections that hold face thumbnails, one per group of faces on show.

Only the drain loads into them (a few small JPGs per timer tick); a group is cleared when what it
shows is replaced, one image is discarded when only it changed, and everything is released on
unregister. Icon ids are 0 in background Blender
(previews get icons only with a UI), so headless code checks `preview(...).image_size` instead.
"""

from __future__ import annotations

import os
import time

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


def discard(group: str, path: str) -> None:
    """Release the preview of `path` in `group` (an image replaced by a new file); the others stay."""
    collection = _collections.get(group)
    if collection is not None and path in collection:
        del collection[path]  # the collection releases the preview's image


def clear(group: str) -> None:
    collection = _collections.pop(group, None)
    if collection is not None:
        bpy.utils.previews.remove(collection)


def load_pending(groups, deadline: float | None) -> tuple[int, bool]:
    """Load the PENDING thumbnails of (items, group) pairs until `deadline`: (loaded, all done).

    Small JPGs, read on the main thread a few at a time. A path that is not on this machine (a
    remote engine's) is marked MISSING and the panel draws a placeholder.
    """
    loaded = 0
    for items, group in groups:
        for item in items:
            if item.thumbnail != "PENDING":
                continue
            if loaded and deadline is not None and time.monotonic() >= deadline:
                return loaded, False
            if item.image and os.path.isfile(item.image):
                item.icon_id = load(group, item.image)
                item.thumbnail = "LOADED"
            else:
                item.thumbnail = "MISSING"
            loaded += 1
    return loaded, True


def unregister() -> None:
    for group in list(_collections):
        clear(group)
