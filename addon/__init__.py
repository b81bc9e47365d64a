"""Blender layer: the Swapline add-on. register()/unregister() are handed over by the extension root."""

from __future__ import annotations

import bpy

from . import (discovery_ui, evaluate_operators, evaluate_panel, faceset_operators, mask_operators, mask_panels,
               matte_operators, merge_operators, merge_panels, merge_settings, operators, panels, preferences,
               properties, render_operators, render_settings, sync, train_operators, train_panels)

# The mask panels sit between the Faceset and the Train panels (sidebar order is registration order).
_AT = panels.classes.index(panels.SEQUENCER_PT_swapline_faceset) + 1
_CLASSES = (*preferences.classes, *discovery_ui.classes, *operators.classes, *faceset_operators.classes,
            *mask_operators.classes, *matte_operators.classes, *train_operators.classes, *merge_operators.classes,
            *render_operators.classes, *evaluate_operators.classes,
            *panels.classes[:_AT], *mask_panels.classes, *panels.classes[_AT:],
            *train_panels.classes,  # the Train panel's option sub-panels, after their parent
            *merge_panels.classes,  # the merge and render panels, after Train
            *evaluate_panel.classes)  # Quality, the last sub-panel of Merge


def register() -> None:
    properties.register()
    merge_settings.register()
    render_settings.register()
    evaluate_operators.register()
    for cls in _CLASSES:
        bpy.utils.register_class(cls)
    sync.register()


def unregister() -> None:
    # Stops the connection and sends the local engine its terminate signal first.
    sync.unregister()
    discovery_ui.unregister()
    for cls in reversed(_CLASSES):
        bpy.utils.unregister_class(cls)
    evaluate_operators.unregister()
    render_settings.unregister()
    merge_settings.unregister()
    properties.unregister()
