"""Mark roles on strips through the operator; trims decide the source frames."""

import sys

import bpy

import _blender

clip_a, clip_b = sys.argv[1:3]
sync = _blender.enable()
strips = _blender.submodule("strips")
scene = _blender.new_scene()
editor = scene.sequence_editor
a = editor.strips.new_movie(name="A", filepath=clip_a, channel=1, frame_start=10)
b = editor.strips.new_movie(name="B", filepath=clip_b, channel=2, frame_start=1)
color = editor.strips.new_effect(name="Color", type="COLOR", channel=3, frame_start=1, length=20)
a.frame_offset_start, a.frame_offset_end = 5, 7  # shows source frames 5..32 from frame 15

out = {}
editor.active_strip = None
out["no_active"] = _blender.call(bpy.ops.swapline.mark_role, role="SOURCE")[1]
editor.active_strip = color
out["not_movie"] = _blender.call(bpy.ops.swapline.mark_role, role="SOURCE")[1]
editor.active_strip = a
out["mark_a_source"] = sorted(_blender.call(bpy.ops.swapline.mark_role, role="SOURCE", confirm=True)[0])
editor.active_strip = b
bpy.ops.swapline.mark_role(role="SOURCE", confirm=True)  # Source moves to B: roles are exclusive
out["after_b_source"] = {s.name: s.swapline_role for s in (a, b)}
editor.active_strip = a
bpy.ops.swapline.mark_role(role="DESTINATION")
out["after_a_destination"] = {s.name: s.swapline_role for s in (a, b)}
out["found"] = {role: getattr(strips.find_role(scene, role), "name", None) for role in ("SOURCE", "DESTINATION")}
out["range_a"] = list(strips.source_range(a))
out["timeline_a"] = [a.frame_final_start, a.frame_final_end]
out["video_a"] = strips.video_path(a)
editor.active_strip = b
bpy.ops.swapline.mark_role(role="NONE")
out["after_clear"] = {s.name: s.swapline_role for s in (a, b)}
_blender.disable()
_blender.emit(**out)
