"""The whole path through the add-on with a real local engine: extract, train, merge, result strip.

Runs headless, so it drives the drain with sync.wait_for_* (timers never fire in bpy-module runs).
"""

import json
import os
import sys
import time

import bpy

import _blender

src_clip, dst_clip, workspace, settings_json = sys.argv[1:5]
sync = _blender.enable()
strips = _blender.submodule("strips")
scene = _blender.new_scene(fps=30)
editor = scene.sequence_editor
settings = scene.swapline
settings.workspace = workspace
for name, value in json.loads(settings_json).items():
    setattr(settings, name, value)

src = editor.strips.new_movie(name="Source", filepath=src_clip, channel=1, frame_start=1)
dst = editor.strips.new_movie(name="Destination", filepath=dst_clip, channel=3, frame_start=50)
# About 20 frames of each, chosen with in/out points as an editor would
src.frame_offset_start, src.frame_offset_end = 10, src.frame_duration - 30
dst.frame_offset_start, dst.frame_offset_end = 5, dst.frame_duration - 25
editor.strips.new_effect(name="Title", type="COLOR", channel=4, frame_start=60, length=5)
for strip, role in ((src, "SOURCE"), (dst, "DESTINATION")):
    editor.active_strip = strip
    bpy.ops.swapline.mark_role(role=role, confirm=role == "SOURCE")  # the likeness question, answered

times = {}
t = time.monotonic()
bpy.ops.swapline.connect()
engine = sync.wait_for_connection(timeout=180)
engine_process = sync.link()._local.process  # kept to check that unregister stops it
times["connect"] = time.monotonic() - t

t = time.monotonic()
bpy.ops.swapline.extract()
extracted = sync.wait_for_jobs("extract", timeout=300)
times["extract"] = time.monotonic() - t

t = time.monotonic()
bpy.ops.swapline.train()
trained = sync.wait_for_jobs("train", timeout=300)
times["train"] = time.monotonic() - t
iteration_seen = max(j.iteration for j in bpy.context.window_manager.swapline.jobs if j.kind == "train")

# Train again without a limit, watch it resume from the checkpoint, then Stop it from the panel
t = time.monotonic()
settings.iterations = 1_000_000
bpy.ops.swapline.train()
wm = bpy.context.window_manager
_blender.check(_blender.drain_until(
    sync, lambda: any(j.kind == "train" and j.state == "running" and j.iteration > iteration_seen for j in wm.swapline.jobs),
    timeout=120), "the second training run never got past the first one's iterations")
resumed_at = max(j.iteration for j in wm.swapline.jobs if j.kind == "train" and j.state == "running")
bpy.ops.swapline.train_stop()
stopped = sync.wait_for_jobs("train", timeout=120, check=False)
times["train_stop"] = time.monotonic() - t

t = time.monotonic()
scene.swapline_merge_outputs.frames = True  # the full merged frames too: the test compares their pixels
bpy.ops.swapline.merge_shot()
merged = sync.wait_for_jobs("merge", timeout=300)
times["merge"] = time.monotonic() - t

results = [s for s in editor.strips if s.swapline_result_for == dst.name]
result = results[0] if results else None
out = {
    "engine": engine, "times": times, "iteration_seen": iteration_seen,
    "extracted": extracted, "trained": trained, "merged": merged, "stopped": stopped, "resumed_at": resumed_at,
    "destination": {"name": dst.name, "channel": dst.channel, "frame_start": round(dst.frame_start),
                    "start": dst.frame_final_start, "end": dst.frame_final_end,
                    "source_range": list(strips.source_range(dst)), "video": strips.video_path(dst)},
    "results": len(results),
}
if result is not None:
    out["result"] = {
        "name": result.name, "type": result.type, "channel": result.channel, "job": result.swapline_job,
        "start": result.frame_final_start, "end": result.frame_final_end,
        "blend": result.blend_type,
        "layer": bpy.path.abspath(result.directory + result.strip_elem_from_frame(result.frame_final_start).filename),
        # the full merged frames of the frames the strip shows (source frame = timeline - frame_start)
        "frames": {f: os.path.join(merged[0]["result"]["frames"]["directory"],
                                   merged[0]["result"]["frames"]["pattern"] % (f - round(dst.frame_start)))
                   for f in range(result.frame_final_start, result.frame_final_end)},
    }
    matte = [s for s in editor.strips if s.swapline_matte_for == dst.name]
    out["matte"] = [[s.mute, s.colorspace_settings.name, s.channel] for s in matte]
out["mirror"] = [[j.kind, j.state, j.ours] for j in bpy.context.window_manager.swapline.jobs]

_blender.disable()  # unregister: the local engine must go away with the add-on
try:
    out["engine_exit"] = engine_process.wait(timeout=20)
except Exception as exc:
    engine_process.kill()
    out["engine_exit"] = f"still running: {exc}"
_blender.emit(**out)
