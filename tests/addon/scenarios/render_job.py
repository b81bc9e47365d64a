"""The UI path of Render Edit, as far as background bpy allows (no window: INVOKE runs execute): the
render job's render_complete/render_cancel handlers only post to a queue, and the main-thread drain
(a timer in the UI; called directly here, timers never fire in bpy-module runs) finishes the render:
settings restored, movie tagged, sidecar written; a cancelled render only restores."""

import os
import sys

import bpy

import _blender
import _layout

clip, folder = sys.argv[1:3]
_blender.enable()
ro = _blender.submodule("render_operators")
scene = _blender.new_scene()
scene.render.resolution_x, scene.render.resolution_y, scene.render.resolution_percentage = 64, 48, 100
scene.frame_start, scene.frame_end = 1, 5
scene.sequence_editor.strips.new_movie(name="Shot", filepath=clip, channel=1, frame_start=1)
settings = scene.swapline_render
scene.render.filepath = "/user/own/"
out = {}

# Completed: what invoke does, with Blender's render run blocking in place of the render job
settings.output = f"{folder}/job.mp4"
job = ro.prepare(scene, settings)
ro._pending[scene.name] = job
ro._hook(True)
out["hooked"] = [ro._on_complete in bpy.app.handlers.render_complete, ro._on_cancel in bpy.app.handlers.render_cancel]
with bpy.context.temp_override(scene=scene):
    bpy.ops.render.render(animation=True)
out["queued"] = ro._ended.qsize()
out["before_drain"] = [scene.render.filepath, os.path.exists(f"{folder}/job.mp4.swapline.json")]
out["drain"] = ro.drain()
out["after_drain"] = [scene.render.filepath, sorted(os.listdir(folder)), len(ro._pending),
                      ro._on_complete in bpy.app.handlers.render_complete]

# Cancelled (Esc during the render job): settings come back, no sidecar claims a file
settings.output = f"{folder}/cancelled.mp4"
job = ro.prepare(scene, settings)
ro._pending[scene.name] = job
out["during"] = [scene.render.filepath, scene.render.use_stamp_note]
ro._on_cancel(scene)
ro.drain()
out["cancelled"] = [scene.render.filepath, scene.render.use_stamp_note,
                    os.path.exists(f"{folder}/cancelled.mp4.swapline.json")]

# The grade and render controls the Merge panel draws
recording = _layout.Recording()
recording.draw(type("Panel", (), {"draw": lambda self, context: ro.draw_render(self.layout, context)}))
out["drawn"] = {"operators": [op for op, _ in recording.operators], "labels": recording.labels,
                "problems": recording.problems}
_blender.disable()
_blender.emit(**out)
