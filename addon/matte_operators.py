"""Blender layer: the face matte operators. Add Face Matte starts a mask_matte job for the frames the
active shot shows; Grade Face adds the face grading stack (Color Balance, Curves, Hue Correct) masked by
the matte (matte.py places the matte and the grade when the job is done, through the drain in sync.py).
"""

from __future__ import annotations

import os

import bpy
from bpy.props import BoolProperty, StringProperty

from . import matte, strips
from .mask_operators import start_job

SHAPE = ("erode", "blur", "top", "bottom", "left", "right")


def _shot(op, context):
    """The active strip's shot (a merge result or matte counts as its shot) and its faceset."""
    scene = strips.sequencer_scene(context)
    active = strips.active_strip(scene)
    if active is None:
        op.report({"ERROR"}, "No active strip: click the shot first")
        return None, None
    editor = scene.sequence_editor
    shot = editor.strips_all.get(matte.owner_name(active)) or active
    settings = scene.swapline
    facesets = {"SOURCE": settings.source_faceset, "DESTINATION": settings.destination_faceset}
    faceset = facesets.get(shot.swapline_role, "")
    if shot.type != "MOVIE" or not faceset.strip():
        op.report({"ERROR"}, f"'{shot.name}' is not a Source or Destination movie strip with extracted faces")
        return None, None
    if not os.path.isfile(strips.video_path(shot)):
        op.report({"ERROR"}, f"The file of '{shot.name}' is missing: {strips.video_path(shot)}")
        return None, None
    return shot, faceset.strip()


def start_matte(op, context, grade: bool = False, grade_on: str = "") -> set:
    """Start the mask_matte job for the frames the active shot shows (the operator's work, shared with
    Grade Face); reports through `op`."""
    scene = strips.sequencer_scene(context)
    shot, faceset = _shot(op, context)
    if shot is None:
        return {"CANCELLED"}
    m = scene.swapline.masks
    start, end = strips.source_range(shot)
    shape = {name: getattr(m, name) / 100.0 for name in SHAPE}  # the panel shows percentages
    params = {"faceset": faceset, "video": strips.video_path(shot), "frame_start": start, "frame_end": end,
              "source": m.source, "shape": shape, "temporal": m.temporal}
    if not start_job(op, context, "mask_matte", params, f"Face matte of {shot.name}", purpose="matte",
                     scene=scene.name, strip=shot.name, grade=grade, grade_on=grade_on):
        return {"CANCELLED"}
    op.report({"INFO"}, f"Rendering the face matte of '{shot.name}'")
    return {"FINISHED"}


class SWAPLINE_OT_matte_add(bpy.types.Operator):
    """Render the face matte of the active shot and add it above the shot (muted: a mask for strip modifiers)"""

    bl_idname = "swapline.matte_add"
    bl_label = "Add Face Matte"

    grade: BoolProperty(description="Also add the face grading stack masked by the matte once it is ready")
    grade_on: StringProperty(options={"SKIP_SAVE"},
                             description="The strip to grade (default: the shot), e.g. the shot's merge result")

    def execute(self, context):
        return start_matte(self, context, self.grade, self.grade_on)


class SWAPLINE_OT_face_grade(bpy.types.Operator):
    """Grade the face on its own: Color Balance, Curves and Hue Correct modifiers on the active strip (a shot
    or its merge result), masked by the face matte; without a matte yet, one is made and graded on arrival"""

    bl_idname = "swapline.face_grade"
    bl_label = "Grade Face"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context):
        scene = strips.sequencer_scene(context)
        active = strips.active_strip(scene)
        if active is None:
            self.report({"ERROR"}, "No active strip: click the shot first")
            return {"CANCELLED"}
        # a selected matte grades its shot; a merge result is graded itself; a shot with a merge result has
        # its face in the result (the face layer over it), so the result is graded
        target = scene.sequence_editor.strips_all.get(active.swapline_matte_for) or active
        if not target.swapline_result_for:
            target = next(iter(strips.results_of(scene, target)), target)
        found = matte.matte_of(scene, matte.owner_name(target))
        if found is None:  # no matte yet: make one, the grade follows when it lands
            return start_matte(self, context, grade=True, grade_on=target.name)
        matte.add_grade(target, found)
        self.report({"INFO"}, f"Face grade added to '{target.name}': adjust it in the strip's Modifiers")
        return {"FINISHED"}


classes = (SWAPLINE_OT_matte_add, SWAPLINE_OT_face_grade)
