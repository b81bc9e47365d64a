"""Render Edit: the edit (a movie strip and its sound) rendered by Blender's sequencer render as H.264
MP4 with AAC audio, PNG sequences with and without the visible label, an EXR sequence; the user's
render settings come back afterwards. The test reads the files."""

import sys

import bpy

import _blender

clip, folder = sys.argv[1:3]
sync = _blender.enable()
render_job = _blender.submodule("render_job")
scene = _blender.new_scene(fps=30)
editor = scene.sequence_editor
scene.render.resolution_x, scene.render.resolution_y, scene.render.resolution_percentage = 64, 48, 100
scene.frame_start, scene.frame_end = 1, 12
shot = editor.strips.new_movie(name="Shot", filepath=clip, channel=1, frame_start=1)
sound = editor.strips.new_sound(name="Sound", filepath=clip, channel=2, frame_start=1)
swap = editor.strips.new_effect(name="Shot swap", type="COLOR", channel=3, frame_start=1, length=12)
swap.swapline_result_for = "Shot"
swap.blend_alpha = 0.0  # invisible: only counts as a merge result in the sidecar
scene.swapline.model = "tiny"
muted = editor.strips.new_effect(name="Muted", type="COLOR", channel=4, frame_start=1, length=12)
muted.mute = True

# The user's own settings, which the render must give back
r = scene.render
r.filepath = "/user/own/path_"
r.image_settings.file_format = "JPEG"
r.use_stamp, r.use_stamp_note, r.stamp_note_text, r.use_stamp_date = False, False, "user note", True
before = {"filepath": r.filepath, "format": r.image_settings.file_format, "stamp": [r.use_stamp, r.use_stamp_note,
          r.stamp_note_text, r.use_stamp_date, r.stamp_font_size]}
out = {"before": before}
settings = scene.swapline_render

# No output set and the .blend never saved: nowhere to write by default
out["unsaved"] = _blender.call(bpy.ops.swapline.render)[1]

for name, fmt, label, output in (("h264", "H264", False, f"{folder}/edit.mp4"),
                                 ("prores", "PRORES", False, f"{folder}/edit_prores"),
                                 ("png", "PNG", False, f"{folder}/plain"),
                                 ("png_label", "PNG", True, f"{folder}/labelled"),
                                 ("exr", "EXR", False, f"{folder}/exr")):
    settings.format, settings.label, settings.output = fmt, label, output
    result, error = _blender.call(bpy.ops.swapline.render)
    out[name] = {"result": sorted(result or []), "error": error,
                 "output": render_job.output_path(scene, settings),
                 "seconds": _blender.call.last_seconds}
    out[name]["after"] = {"filepath": r.filepath, "format": r.image_settings.file_format,
                          "stamp": [r.use_stamp, r.use_stamp_note, r.stamp_note_text, r.use_stamp_date,
                                    r.stamp_font_size]}

# A user set up for RGBA QuickTime (PNG codec): every setting comes back, those that depend on the
# format and codec (RGBA) included, and the switches the render forces (overwrite, placeholders, metadata)
r.image_settings.media_type = "VIDEO"
r.image_settings.file_format = "FFMPEG"
r.ffmpeg.format, r.ffmpeg.codec = "QUICKTIME", "PNG"
r.image_settings.color_mode = "RGBA"
r.use_overwrite, r.use_placeholder, r.metadata_input = False, True, "STRIPS"
snapshot = render_job._snapshot(scene)
out["rgba"] = {"user": [r.image_settings.color_mode, r.ffmpeg.codec], "renders": {}}
for fmt, output in (("H264", f"{folder}/rgba.mp4"), ("EXR", f"{folder}/rgba_exr")):
    settings.format, settings.label, settings.output = fmt, True, output
    result, error = _blender.call(bpy.ops.swapline.render)
    changed = [[name, attr, str(value), str(render_job._value(getattr(
        {"render": r, "image_settings": r.image_settings, "ffmpeg": r.ffmpeg}[name], attr)))]
        for name, attr, value in snapshot
        if render_job._value(getattr({"render": r, "image_settings": r.image_settings,
                                            "ffmpeg": r.ffmpeg}[name], attr)) != value]
    out["rgba"]["renders"][fmt] = {"result": sorted(result or []), "error": error, "changed": changed}
out["rgba"]["snapshot_size"] = len(snapshot)
out["stamp_fields"] = list(render_job._stamp_fields())

# Saved: the default output sits next to the .blend, named after it
bpy.ops.wm.save_as_mainfile(filepath=f"{folder}/project.blend")
settings.output = ""
out["default"] = {}
for fmt in ("H264", "PRORES", "PNG"):
    settings.format = fmt
    out["default"][fmt] = render_job.output_path(scene, settings)
settings.format, settings.output = "H264", "//sub/cut.mov"
out["relative"] = render_job.output_path(scene, settings)

editor.strips.remove(shot)
editor.strips.remove(sound)
editor.strips.remove(swap)
editor.strips.remove(muted)
out["empty"] = _blender.call(bpy.ops.swapline.render)[1]
_blender.disable()
_blender.emit(**out)
