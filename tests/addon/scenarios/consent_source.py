"""Marking a strip as Source asks once per strip for the likeness confirmation: without it the
operator refuses; with it the answer is stored on the strip and never asked again; Destination and
None never ask. The dialog path: invoke on an unconfirmed strip opens a dialog (in background bpy
there is no window, so it must not mark anything), on a confirmed strip it marks at once."""

import sys

import bpy

import _blender

clip = sys.argv[1]
sync = _blender.enable()
scene = _blender.new_scene()
editor = scene.sequence_editor
a = editor.strips.new_movie(name="A", filepath=clip, channel=1, frame_start=1)
b = editor.strips.new_movie(name="B", filepath=clip, channel=2, frame_start=1)
out = {}


def invoke(role):
    try:
        return sorted(bpy.ops.swapline.mark_role("INVOKE_DEFAULT", role=role)), ""
    except RuntimeError as exc:
        return [], str(exc)


def mark(role, **kwargs):
    result, error = _blender.call(bpy.ops.swapline.mark_role, role=role, **kwargs)
    return error or sorted(result)


editor.active_strip = a
out["fresh"] = [a.swapline_likeness_confirmed, b.swapline_likeness_confirmed]
out["unconfirmed"] = mark("SOURCE")
out["unconfirmed_role"] = a.swapline_role
# invoke: a props dialog for an unconfirmed strip (nothing marked before the user answers)
out["invoke_unconfirmed"] = [*invoke("SOURCE"), a.swapline_role, a.swapline_likeness_confirmed]
out["confirmed"] = mark("SOURCE", confirm=True)
out["after_confirm"] = [a.swapline_role, a.swapline_likeness_confirmed]
out["destination_no_ask"] = [mark("DESTINATION"), a.swapline_role]
out["asked_once"] = [mark("SOURCE"), a.swapline_role]  # stored on the strip: no confirmation needed again
invoke("DESTINATION")
out["invoke_confirmed"] = [*invoke("SOURCE"), a.swapline_role]
editor.active_strip = b  # another strip: asked again, its own answer
out["other_strip"] = [mark("SOURCE"), b.swapline_role, a.swapline_role]
out["question"] = bpy.ops.swapline.mark_role.get_rna_type().properties["confirm"].name
out["animatable"] = bpy.types.Strip.bl_rna.properties["swapline_likeness_confirmed"].is_animatable
_blender.disable()
_blender.emit(**out)
