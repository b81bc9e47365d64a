"""Blender layer: the Masks and Face Matte panels of the Swapline tab. Panels only draw."""

from __future__ import annotations

import bpy

from . import mask_operators, matte, mirror, strips, sync
from .panels import _draw_jobs, _SwaplinePanel


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


class SEQUENCER_PT_swapline_masks(_SwaplinePanel, bpy.types.Panel):
    bl_label = "Masks"
    bl_parent_id = "SEQUENCER_PT_swapline"

    def draw(self, context):
        layout = self.layout
        st = sync.status(context)
        view, state = st.faceset, st.masks
        settings = strips.sequencer_scene(context).swapline.masks
        if st.connection != "CONNECTED":
            layout.label(text="Connect the engine to draw and learn masks", icon="INFO")
            return
        if view.state != "READY" or not view.faceset:
            layout.label(text="Load a faceset in the Faceset panel first", icon="INFO")
            return
        row = layout.row(align=True)
        row.label(text=f"Faceset '{view.faceset}'", icon="USER")
        row.operator("swapline.mask_refresh", text="", icon="FILE_REFRESH")
        if state.counted and state.faceset == view.faceset:
            layout.label(text=f"{state.labelled_count} of {_plural(state.face_count, 'face')} labelled",
                         icon="CHECKMARK" if state.labelled_count else "DOT")
            if not state.labelled_count:
                layout.label(text="No labels: the landmark hull mask is used everywhere")
        else:
            layout.label(text="Press Refresh to count the labelled faces")
        _draw_editing(layout.box(), state, settings)
        if state.message:
            layout.label(text=state.message)
        _draw_learning(layout.box(), context, settings)


def _draw_editing(box, state, settings) -> None:
    row = box.row(align=True)
    row.label(text="Draw On")
    for key, text in (("FACE", "Face"), ("FRAME", "Frame")):
        row.operator("swapline.mask_space", text=text, depress=settings.space == key).space = key
    box.operator("swapline.mask_edit", icon="MOD_MASK")
    if state.edit == "NONE":
        box.label(text="Selected face, or the first unlabelled one")
        return
    if state.edit == "LOADING":
        box.label(text=f"Opening face {state.face_id}…", icon="SORTTIME")
        return
    where = "whole frame" if state.space == "FRAME" else "aligned face"
    box.label(text=f"Face {state.face_id} open ({where}) in the Image Editor", icon="IMAGE_DATA")
    row = box.row(align=True)
    row.operator("swapline.mask_step", text="Previous", icon="TRIA_LEFT").step = -1
    row.operator("swapline.mask_save", text="Save", icon="FILE_TICK")
    row.operator("swapline.mask_step", text="Next", icon="TRIA_RIGHT").step = 1
    box.operator("swapline.mask_clear", icon="TRASH")
    box.label(text="Draw in the 'Include' layer; cut out in 'Exclude'")


def _draw_learning(box, context, settings) -> None:
    box.label(text="Learned Masks", icon="MODIFIER")
    names = mask_operators.target_facesets(context)
    box.label(text="Facesets: " + (", ".join(names) if names else "—"))
    col = box.column(align=True)
    col.prop(settings, "model")
    col.row(align=True).prop(settings, "resolution", expand=True)
    col.prop(settings, "iterations")
    col.prop(settings, "minutes")
    training = mirror.active_jobs(sync.status(context), "mask_train")
    row = box.row(align=True)
    sub = row.row(align=True)
    sub.enabled = not training
    sub.operator("swapline.mask_train", text="Train", icon="PLAY")
    row.operator("swapline.mask_apply", text="Apply", icon="CHECKMARK")
    row.operator("swapline.mask_remove", text="", icon="TRASH")
    _draw_jobs(box, context, "mask_train", limit=1)
    _draw_jobs(box, context, "mask_apply", limit=2)


class SEQUENCER_PT_swapline_matte(_SwaplinePanel, bpy.types.Panel):
    bl_label = "Face Matte"
    bl_parent_id = "SEQUENCER_PT_swapline"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context):
        layout = self.layout
        scene = strips.sequencer_scene(context)
        settings = scene.swapline.masks
        active = strips.active_strip(scene)
        if active is None:
            layout.label(text="Select the Source or Destination strip", icon="INFO")
        else:
            name = matte.owner_name(active)
            found = matte.matte_of(scene, name)
            layout.label(text=name, icon="SEQUENCE")
            layout.label(text=f"Matte: {found.name}" if found else "No face matte yet",
                         icon="CHECKMARK" if found else "DOT")
        layout.prop(settings, "source")
        col = layout.column(align=True)
        col.prop(settings, "erode")
        col.prop(settings, "blur")
        col = layout.column(align=True)
        col.label(text="Per Side (positive erodes, negative grows)")
        row = col.row(align=True)
        row.prop(settings, "top")
        row.prop(settings, "bottom")
        row = col.row(align=True)
        row.prop(settings, "left")
        row.prop(settings, "right")
        layout.prop(settings, "temporal")
        row = layout.row(align=True)
        row.operator("swapline.matte_add", icon="IMAGE_ALPHA").grade = False
        row.operator("swapline.face_grade", icon="COLOR")
        _draw_jobs(layout, context, "mask_matte", limit=1)


classes = (SEQUENCER_PT_swapline_masks, SEQUENCER_PT_swapline_matte)
