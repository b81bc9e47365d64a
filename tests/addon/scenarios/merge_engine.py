"""Live preview and Merge Shot against a real local engine: scrub a 1080p shot frame by frame and
by jumps with Live Preview on, measuring each frame change to the frame shown (the add-on's own
latency record), then merge the shot as a job and let its face layer and matte land.

Headless: the drain is driven here (timers never fire in bpy-module runs), polling every 2 ms so
the polling itself adds little to what is measured.
"""

import json
import os
import random
import sys
import time

import bpy

import _blender

clip, workspace, changes = sys.argv[1], sys.argv[2], int(sys.argv[3])
sync = _blender.enable()
live_preview = _blender.submodule("live_preview")
matte = _blender.submodule("matte")
scene, editor, shot = _blender.new_shot(clip, workspace, fps=24)
settings = scene.swapline
settings.model, settings.destination_faceset = "m", "dst"
wm = bpy.context.window_manager
live = wm.swapline_live
out = {"size": [scene.render.resolution_x, scene.render.resolution_y]}

bpy.ops.swapline.connect()
sync.wait_for_connection(timeout=180)


def shown(count, timeout=120.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sync.drain(budget=None)
        if live.count >= count:
            return True
        time.sleep(0.002)
    return False


def show(frame):
    count = live.count
    scene.frame_set(frame)
    _blender.check(shown(count + 1, timeout=60.0), f"frame {frame} never shown: {live.message!r} "
                   f"{wm.swapline.last_error!r}")


start, end = shot.frame_final_start, shot.frame_final_end
scene.frame_set(start)
t = time.monotonic()
live.enabled = True  # the first request opens the engine's preview session (model, frame cache)
_blender.check(shown(1, timeout=180.0), f"no first preview: {live.message!r} {wm.swapline.last_error!r}")
out["first_preview_s"] = time.monotonic() - t
for frame in range(start + 1, start + 4):  # warm-up
    show(frame)
time.sleep(2.0)  # the engine's background decode fills its frame cache
sync.drain(budget=None)
live.enabled = False
live.enabled = True  # clears the record: only the measured changes count
shown(1, timeout=60.0)
base = live.count
# scrubbing forward, then jumps to frames not shown yet: every change is a fresh merge (the engine
# caches results by frame and settings, so going back to a frame would only measure its cache)
frames = list(range(start + 4, min(end, start + 4 + changes // 2)))
rest = [f for f in range(start, end) if f not in frames and f >= start + 4]
frames += random.Random(0).sample(rest, min(len(rest), changes - len(frames)))
messages = []
for frame in frames:
    show(frame)
    messages.append(live.message)
out["latencies_ms"] = [v * 1000.0 for v in live_preview.latencies()][-changes:]
out["median_ms"] = live.median_ms
out["engine_ms"] = live_preview.engine_times()[-changes:]
out["changes"] = live.count - base
out["messages"] = messages[:3] + messages[-3:]
preview_strip = live_preview.layer_strip(scene, shot)
out["layer_file"] = bpy.path.abspath(preview_strip.directory + preview_strip.strip_elem_from_frame(frames[-1]).filename)
out["layer_frame"] = frames[-1] - round(shot.frame_start)
live.enabled = False
folder = live_preview.merge_folder(scene, shot)
out["previewed"] = json.load(open(f"{folder}/previewed.json"))["frames"]
out["preview_matte_file"] = f"{folder}/matte/" + live_preview.LAYER_PATTERN % out["layer_frame"]

# the whole shot as a job, with a keyframed erode: the face layer and matte land over the shot
shot.swapline_merge.erode = 0.02
scene.keyframe_insert(f'{shot.path_from_id()}.swapline_merge.erode', frame=start)
t = time.monotonic()
out["merge"] = sorted(bpy.ops.swapline.merge_shot())
[merged] = sync.wait_for_jobs("merge", timeout=400)
out["merge_s"] = time.monotonic() - t
out["merged"] = {k: merged[k] for k in ("state", "result", "error", "params")}
layer = live_preview.layer_strip(scene, shot)
m = matte.matte_of(scene, "Shot")
out["layer"] = {"blend": layer.blend_type, "start": layer.frame_final_start, "end": layer.frame_final_end,
                "file": bpy.path.abspath(layer.directory + layer.strip_elem_from_frame(start + 5).filename)}
out["matte"] = {"mute": m.mute, "colorspace": m.colorspace_settings.name,
                "file": bpy.path.abspath(m.directory + m.strip_elem_from_frame(start + 5).filename)}
out["last_error"] = wm.swapline.last_error
out["previewed_after"] = os.path.exists(f"{folder}/previewed.json")  # the job took the frames back
bpy.ops.swapline.disconnect()
sync.drain(budget=None)
_blender.emit(**out)
print(json.dumps({"median_ms": out["median_ms"]}))
