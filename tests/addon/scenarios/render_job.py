"""The UI path of Render Edit, as far as background bpy allows (no window: Blender's INVOKE render runs
in place): the render job's render_complete/render_cancel handlers only post to a queue, and the
main-thread drain (a timer in the UI; called directly here, timers never fire in bpy-module runs)
finishes the render: settings restored, movie tagged, sidecar written. Also: a cancelled render (its
partial movie tagged), an error while finishing, a render that ends with no handler next to an older
file, a file loaded during the render, Blender refusing to start it, the add-on disabled during it."""

import os
import sys
import types

import bpy

import _blender
import _layout

clip, folder = sys.argv[1:3]
sync = _blender.enable()
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

def render_blocking():
    with bpy.context.temp_override(scene=scene):
        bpy.ops.render.render(animation=True)


# Cancelled after it wrote part of the movie: the partial file is tagged where Blender left it
settings.output = f"{folder}/partial.mp4"
job = ro.prepare(scene, settings)
ro._pending[scene.name] = job
render_blocking()  # no handler hooked: nothing queued
ro._on_cancel(scene)
ro.drain()
out["partial"] = [os.path.basename(job.rendered), os.path.exists(f"{job.rendered}.swapline.json"),
                  os.path.exists(f"{folder}/partial.mp4"), scene.render.filepath]
out["partial_sidecar"] = _blender.submodule("provenance").sidecar_path(job.rendered)

# An error while finishing is reported and the timer goes on (the job is gone, the queue empty)
real_finish = ro.finish
ro.finish = lambda job, cancelled=False: 1 / 0
settings.output = f"{folder}/broken.mp4"
job = ro.prepare(scene, settings)
ro._pending[scene.name] = job
ro._on_complete(scene)
out["finish_error"] = [ro.drain(), len(ro._pending), ro._ended.qsize(), sync.status().last_error]
ro.finish = real_finish
ro.restore(scene, job.saved)

# A render that ends with no handler at all: a file an earlier render left under the same name is not
# taken for this render's
settings.output = f"{folder}/stale.mp4"
job = ro.prepare(scene, settings)
with open(job.rendered, "wb") as handle:
    handle.write(b"old")
os.utime(job.rendered, (job.started - 600, job.started - 600))
ro._pending[scene.name] = job
ro._idle_polls = 0
out["stale"] = [ro.drain(), ro.drain(), ro.drain(), os.path.exists(f"{folder}/stale.mp4"),
                open(job.rendered, "rb").read().decode(), scene.render.filepath]

# A file loaded during the render: the settings come back at once, the scene (the new file's, by the
# same name) is never touched again, and the movie the render left (cut short by the load) is tagged
# where Blender wrote it once no render runs
out["load_hook"] = ro._on_load_pre in bpy.app.handlers.load_pre
settings.output = f"{folder}/loaded.mp4"
job = ro.prepare(scene, settings)
ro._pending[scene.name] = job
render_blocking()
ro._on_load_pre(None)
out["loaded_now"] = [scene.render.filepath, len(ro._pending), len(ro._detached)]
scene.render.filepath = "/new/file/"
ro._idle_polls = 0
polls = [ro.drain() for _ in range(3)]
out["loaded_after"] = [polls, scene.render.filepath, os.path.exists(f"{job.rendered}.swapline.json"),
                       len(ro._detached), os.path.basename(job.rendered)]
scene.render.filepath = "/user/own/"

# The UI start: background bpy runs INVOKE's render in place, then the drain finishes it
reports = []
settings.output = f"{folder}/started.mp4"
out["started"] = [ro.start(bpy.context, scene, settings, lambda level, text: reports.append([level, text])),
                  len(ro._pending), ro._on_complete in bpy.app.handlers.render_complete]
out["started_drain"] = [ro.drain(), len(ro._pending), scene.render.filepath,
                        os.path.exists(f"{folder}/started.mp4.swapline.json")]

# Blender refusing to start the render job (raising, or cancelled): nothing stays hooked or pending
for name, answer in (("refused_raise", None), ("refused_cancel", {"CANCELLED"})):
    def refuse(*_args, answer=answer, **_kwargs):
        if answer is None:
            raise RuntimeError("Error: no window")
        return answer

    reports = []
    bpy.ops.render = types.SimpleNamespace(render=refuse)
    try:
        started = ro.start(bpy.context, scene, settings, lambda level, text: reports.append([level, text]))
    finally:
        del bpy.ops.render  # Blender's own operator back
    out[name] = [started, len(ro._pending), ro._on_complete in bpy.app.handlers.render_complete,
                 scene.render.filepath, reports]

# The grade and render controls the Merge panel draws
recording = _layout.Recording()
recording.draw(type("Panel", (), {"draw": lambda self, context: ro.draw_render(self.layout, context)}))
out["drawn"] = {"operators": [op for op, _ in recording.operators], "labels": recording.labels,
                "problems": recording.problems}
# The add-on disabled during a render: the settings come back and nothing is left hooked
settings.output = f"{folder}/disabled.mp4"
ro._pending[scene.name] = ro.prepare(scene, settings)
ro._hook(True)
_blender.disable()
out["disabled"] = [scene.render.filepath, len(ro._pending), ro._on_load_pre in bpy.app.handlers.load_pre,
                   ro._on_complete in bpy.app.handlers.render_complete]
_blender.emit(**out)
