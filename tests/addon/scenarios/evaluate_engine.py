"""Evaluate end to end against a real engine, local or remote (`python -m engine serve` on loopback,
with the .blend saved in `project`): Merge Shot with the tiny model, then Evaluate; the engine's
evaluate job runs while the drain is driven here (timers never fire in bpy-module runs), each
main-thread step timed; its sheet lands as an image (a remote engine's: downloaded next to the
.blend first) and its headline on the shot."""

import json
import os
import sys
import time

import bpy

import _blender
import _layout
from _serve import free_port, serve

clip, workspace, mode, project = sys.argv[1:5]
sync = _blender.enable()
ev = _blender.submodule("evaluate_drain")
PENDING = _blender.submodule("evaluate_state").PENDING
panel = _blender.submodule("evaluate_panel")
scene, editor, shot = _blender.new_shot(clip, workspace, fps=12)
settings = scene.swapline
settings.model, settings.source_faceset, settings.destination_faceset = "m", "src", "dst"
wm = bpy.context.window_manager
out = {}

engine = None
if mode == "remote":
    bpy.ops.wm.save_as_mainfile(filepath=os.path.join(project, "edit.blend"))
    scene = bpy.context.scene
    editor = scene.sequence_editor
    port, token_file = free_port(), os.path.join(project, "engine-token")
    with open(token_file, "w") as f:
        f.write("s3cret")
    engine = serve(workspace, port, token_file)
    prefs = _blender.preferences()
    prefs.engine_mode, prefs.host, prefs.port, prefs.token = "REMOTE", "127.0.0.1", port, "s3cret"
bpy.ops.swapline.connect()
sync.wait_for_connection(timeout=180)
out["merge"] = sorted(bpy.ops.swapline.merge_shot())
[merged] = sync.wait_for_jobs("merge", timeout=400)
out["merged"] = {k: merged[k] for k in ("state", "result", "error")}

steps = []  # seconds of each main-thread step: the operator, then every drain
t = time.monotonic()
out["evaluate"] = sorted(bpy.ops.swapline.evaluate())
steps.append(time.monotonic() - t)
evaluation = editor.strips_all["Shot"].swapline_evaluation
states, t0 = [], time.monotonic()
while evaluation.state in PENDING and time.monotonic() - t0 < 400:
    t = time.monotonic()
    sync.drain()  # the timer's own budget
    ev.drain()
    steps.append(time.monotonic() - t)
    if not states or states[-1] != evaluation.state:
        states.append(evaluation.state)
    time.sleep(0.02)
out["evaluate_s"] = time.monotonic() - t0
out["states"] = states
out["steps"] = {"count": len(steps), "max_s": max(steps), "operator_s": steps[0]}
job = next(j for j in sync.jobs("evaluate") if j["id"] == evaluation.job_id) if evaluation.job_id else None
image = bpy.data.images.get(evaluation.image)
out["evaluation"] = {"state": evaluation.state, "job_id": evaluation.job_id, "message": evaluation.message, "sheet": evaluation.sheet,
                     "report": evaluation.report, "headline": json.loads(evaluation.headline or "{}"),
                     "image": evaluation.image, "size": list(image.size) if image else None,
                     "merge_job": evaluation.merge_job}
out["job"] = {k: job[k] for k in ("state", "params", "result", "error")} if job else None
out["merge_id"] = merged["id"]
recording = _layout.Recording().draw(panel.SEQUENCER_PT_swapline_quality)
out["draw"] = {"problems": recording.problems, "labels": recording.labels}
out["last_error"] = wm.swapline.last_error
out["results_folder"] = _blender.submodule("strips").results_folder(evaluation.job_id)
bpy.ops.swapline.disconnect()
sync.drain(budget=None)
if engine is not None:
    engine.terminate()
    engine.wait(30)
_blender.emit(**out)
