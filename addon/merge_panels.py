"""Blender layer: the Merge panel's contents and its option sub-panels. Panels only draw.

The Merge panel (panels.SEQUENCER_PT_swapline_merge) draws `draw_merge`: the shot, the model and
faceset, Live Preview with its median latency, Merge Shot and its outputs, then the Render and
Grade controls when addon/render_operators.py offers `draw_render(layout, context)`. The options of
the shot (on its destination strip) sit in sub-panels below, one per group of merge_options, each
animatable option with its key button (the property's own decorator cannot key it: see
merge_settings.py).
"""

from __future__ import annotations

import bpy

from . import live_preview, merge_settings, strips
from .merge_options import GROUPS, group

_KEY_ICONS = {"KEY": "DECORATE_KEYFRAME", "ANIMATED": "DECORATE_ANIMATE", "NONE": "DECORATE"}


def draw_merge(layout, context) -> None:
    scene = strips.sequencer_scene(context)
    settings = scene.swapline
    shot = live_preview.target(scene)
    col = layout.column(align=True)
    col.prop(settings, "model")
    col.prop(settings, "destination_faceset", text="Faceset")
    if shot is None:
        layout.label(text="Mark a Destination strip to merge it", icon="INFO")
    else:
        layout.label(text=f"Shot: {shot.name}", icon="SEQUENCE")
        _draw_live(layout, context)
        row = layout.row(align=True)
        row.operator("swapline.merge_shot", icon="RENDER_RESULT")
        row.operator("swapline.merge_reset", text="", icon="LOOP_BACK").group = "ALL"
        row = layout.row(align=True)
        outputs = scene.swapline_merge_outputs
        row.label(text="Also write:")
        row.prop(outputs, "frames", toggle=True)
        row.prop(outputs, "video", toggle=True)
    from . import render_operators

    draw_render = getattr(render_operators, "draw_render", None)  # Render and Grade (issue 6, H5)
    if draw_render is not None:
        draw_render(layout, context)


def _draw_live(layout, context) -> None:
    live = live_preview.state(context)
    box = layout.box()
    row = box.row(align=True)
    row.operator("swapline.merge_live", text="Live Preview", icon="PAUSE" if live.enabled else "PLAY",
                 depress=live.enabled)
    row.operator("swapline.merge_preview", text="", icon="FILE_REFRESH")
    if live.median_ms >= 0:
        box.label(text=f"Median {live.median_ms:.0f} ms over {min(live.count, live_preview.KEEP)} frames "
                       f"(last {live.last_ms:.0f} ms)", icon="TIME")
    scene = strips.sequencer_scene(context)
    shot = live_preview.target(scene)
    if shot is not None and live_preview.merge_running(scene, shot, context):
        box.label(text=live_preview.busy_message(shot), icon="INFO")
    elif live.message:
        box.label(text=live.message)


class _OptionsPanel:
    bl_space_type = "SEQUENCE_EDITOR"
    bl_region_type = "UI"
    bl_category = "Swapline"
    bl_parent_id = "SEQUENCER_PT_swapline_merge"
    bl_options = {"DEFAULT_CLOSED"}


def key_icon(scene, curves: dict, name: str) -> str:
    """An option's key button: keyed at this frame, animated elsewhere, or not animated."""
    fcurve = curves.get(name)
    if fcurve is None:
        return _KEY_ICONS["NONE"]
    return _KEY_ICONS["KEY" if merge_settings.has_key_at(fcurve, scene.frame_current) else "ANIMATED"]


def draw_options(layout, context, name: str) -> None:
    scene = strips.sequencer_scene(context)
    shot = live_preview.target(scene)
    if shot is None:
        layout.label(text="No Destination strip")
        return
    curves = merge_settings.fcurves_of(scene, shot)
    layout.use_property_split = True
    layout.use_property_decorate = False
    col = layout.column(align=True)
    for option in group(name):
        row = col.row(align=True)
        row.prop(shot.swapline_merge, option.name)
        if option.name == "mask" and shot.swapline_merge.mask == "custom":
            col.prop(shot.swapline_merge, "mask_custom")
            problem = merge_settings.mask_problem(shot)
            if problem:
                col.label(text=problem, icon="ERROR")
        if option.animatable:
            op = row.operator("swapline.merge_keyframe", text="", icon=key_icon(scene, curves, option.name),
                              emboss=False)
            op.option, op.delete = option.name, False
    op = layout.operator("swapline.merge_reset", text=f"Reset {name}", icon="LOOP_BACK")
    op.group = name


def _options_panel(name: str) -> type:
    ident = "SEQUENCER_PT_swapline_merge_" + "".join(c for c in name.lower() if c.isalnum())

    def draw(self, context):
        draw_options(self.layout, context, name)

    return type(ident, (_OptionsPanel, bpy.types.Panel), {"bl_label": name, "bl_idname": ident, "draw": draw})


classes = tuple(_options_panel(name) for name in GROUPS)
