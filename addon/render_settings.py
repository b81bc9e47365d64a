"""Blender layer: the render settings of the edit (Scene.swapline_render) and the likeness consent
stored on strips (consent.py). The render itself is Blender's own sequencer render (render_operators.py),
whose file-load and unregister hooks are registered from here."""

from __future__ import annotations

import bpy
from bpy.props import BoolProperty, EnumProperty, PointerProperty, StringProperty

from . import consent

FORMAT_ITEMS = [
    ("H264", "H.264 MP4", "H.264 video with the edit's audio (AAC) in an MP4 file"),
    ("PRORES", "ProRes MOV", "Apple ProRes 422 HQ with the edit's audio (AAC) in a QuickTime file"),
    ("PNG", "PNG Sequence", "One 8-bit RGB PNG per frame, in a folder (no audio)"),
    ("EXR", "EXR Sequence", "One half-float OpenEXR per frame, in a folder (no audio)"),
]
DEFAULT_LABEL = "Synthetic face (Swapline)"


class SwaplineRenderSettings(bpy.types.PropertyGroup):
    """How Render Edit writes the edit (frame range: the scene's)."""

    format: EnumProperty(name="Format", items=FORMAT_ITEMS, default="H264")
    output: StringProperty(
        name="Output", subtype="FILE_PATH", default="",
        description="Where to write: the movie file, or the folder of a sequence. Empty: next to the .blend, "
                    "named after it")
    label: BoolProperty(name="Visible Label", default=False,
                        description="Burn a visible label into every frame, saying that it contains a synthetic face")
    label_text: StringProperty(name="Label", default=DEFAULT_LABEL, description="The text of the visible label")


classes = (SwaplineRenderSettings,)


def register() -> None:
    for cls in classes:
        bpy.utils.register_class(cls)
    bpy.types.Scene.swapline_render = PointerProperty(type=SwaplineRenderSettings)
    consent.register()
    from . import render_operators  # imports this module: only once both are loaded
    render_operators.register()


def unregister() -> None:
    from . import render_operators
    render_operators.unregister()  # renders still running are finished while their settings exist
    consent.unregister()
    del bpy.types.Scene.swapline_render
    for cls in reversed(classes):
        bpy.utils.unregister_class(cls)
