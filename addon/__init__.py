"""Blender layer: the Swapline add-on. register()/unregister() are handed over by the extension root."""

from __future__ import annotations

import bpy

from . import faceset_operators, operators, panels, preferences, properties, sync

_CLASSES = (*preferences.classes, *operators.classes, *faceset_operators.classes, *panels.classes)


def register() -> None:
    properties.register()
    for cls in _CLASSES:
        bpy.utils.register_class(cls)
    sync.register()


def unregister() -> None:
    # Stops the connection and sends the local engine its terminate signal first.
    sync.unregister()
    for cls in reversed(_CLASSES):
        bpy.utils.unregister_class(cls)
    properties.unregister()
