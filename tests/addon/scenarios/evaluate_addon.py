"""Evaluate against a recording link: the button waits for the merge, sends the evaluate job with the
merge's own paths, follows the job, loads the sheet as an image and keeps the headline figures on the
shot (drawn in the Quality panel); a remote engine's report is downloaded first; a failed job or a
refused request ends as FAILED with why; the outcome is saved with the .blend, and an evaluation under
way is followed again after loading the file."""

import json
import os
import shutil
import sys

import bpy

import _blender
import _layout

clip, folder, headline_json = sys.argv[1:4]
HEADLINE = json.loads(headline_json)
sync = _blender.enable()
EL = _blender.submodule("engine_link")
ev = _blender.submodule("evaluate_drain")
panel = _blender.submodule("evaluate_panel")
strips_mod = _blender.submodule("strips")
ev.GRACE = -1.0  # a request or merge unaccounted for fails at once (no waiting in the test)

scene = _blender.new_scene()
editor = scene.sequence_editor
shot = editor.strips.new_movie(name="Shot", filepath=clip, channel=2, frame_start=1)
shot.swapline_role = "DESTINATION"
editor.active_strip = shot
scene.swapline.model, scene.swapline.source_faceset = "m", "scene_src"
wm = bpy.context.window_manager
out = {"problems": []}

link = sync.link()
sent = []
link.state = EL.CONNECTED
wm.swapline.connection = "CONNECTED"
link.request = lambda op, args=None, tag=None: sent.append((op, dict(args or {}), dict(tag or {})))
downloads = []
link.download = lambda *args: downloads.append(list(args)) or True


def draw() -> _layout.Recording:
    recording = _layout.Recording().draw(panel.SEQUENCER_PT_swapline_quality)
    out["problems"].extend(recording.problems)
    return recording


def evaluation():
    return editor.strips_all["Shot"].swapline_evaluation


def state() -> list:
    e = evaluation()
    return [e.state, e.message, e.job_id]


def job(job_id, kind, state_, params=None, result=None, **extra):
    return {"id": job_id, "kind": kind, "state": state_, "params": params or {}, "result": result,
            "progress": extra.pop("progress", 1.0 if state_ == "done" else 0.0), "created": extra.pop("created", 1.0),
            **extra}


def drain():
    sync.drain(budget=None)
    return ev.drain()


out["first_draw"] = draw().operators
# no merge result on the shot: refused with why
result, error = _blender.call(bpy.ops.swapline.evaluate)
out["no_merge_op"] = [result, error]

# the merge's face layer on the shot (job m1), but the engine does not know m1 (yet)
merge_dir = os.path.join(folder, "merge")
merge_result = {"directory": merge_dir, "first_frame": 0, "count": 10,
                "layer": {"directory": os.path.join(merge_dir, "layer"), "pattern": "frame_%06d.png"},
                "matte": None, "frames": None}
os.makedirs(merge_result["layer"]["directory"])  # its frames: blanks (strips.fill_missing)
strips_mod.place_result(scene, shot, merge_result, job_id="m1")
editor.active_strip = shot
out["unknown"] = [sorted(bpy.ops.swapline.evaluate()), state()]
drain()
out["unknown_after"] = state()

# the merge is running: Evaluate waits for it, sends nothing meanwhile
merge_params = {"video": "/engine/side/shot.mp4", "model": "m", "faceset": "dst", "output": merge_dir}
sync.apply(EL.JobUpdate(job("m1", "merge", "running", merge_params, progress=0.5)))
sync.apply(EL.JobUpdate(job("t1", "train", "done", {"model": "m", "source": "src", "destination": "dst"})))
out["waiting"] = [sorted(bpy.ops.swapline.evaluate()), state(), [s for s in sent if s[0] == "job.start"]]
out["again_while_waiting"] = _blender.call(bpy.ops.swapline.evaluate)
recording = draw()
out["waiting_draw"] = {"labels": recording.labels, "enabled_evaluate": "swapline.evaluate" in
                       [name for name, _ in recording.operators]}
sync.apply(EL.JobUpdate(job("m1", "merge", "done", merge_params, merge_result)))
drain()
out["sent"] = sent[-1] if sent else None  # the last request: nothing else after it
out["after_send"] = state()
op, args, tag = sent[-1]
token = args["params"]["output"]

# the engine takes it: queued, running with progress, done with the report and the sheet
workspace = os.path.join(folder, "ws")
engine_params = dict(args["params"], output=os.path.join(workspace, token))
sync.apply(EL.JobUpdate(job("e1", "evaluate", "queued", engine_params), tag))
drain()
out["queued"] = state()
sync.apply(EL.JobUpdate(job("e1", "evaluate", "running", engine_params, progress=0.4, message="frame 4/10")))
drain()
out["running"] = state()
recording = draw()
out["running_draw"] = {"labels": recording.labels, "calls": recording.calls,
                       "cancel": [v for name, v in recording.operators if name == "swapline.cancel_job"]}
sheet_dir = os.path.join(workspace, token)
os.makedirs(sheet_dir)
shutil.copy(os.path.join(folder, "summary.png"), sheet_dir)
shutil.copy(os.path.join(folder, "report.json"), sheet_dir)
done_result = {"report": os.path.join(sheet_dir, "report.json"), "sheet": os.path.join(sheet_dir, "summary.png"),
               "output": sheet_dir, "headline": HEADLINE}
sync.apply(EL.JobUpdate(job("e1", "evaluate", "done", engine_params, done_result)))
out["changed"] = drain()
e = evaluation()
image = bpy.data.images.get(e.image)
out["done"] = {"state": state(), "sheet": e.sheet, "report": e.report, "image": e.image,
               "size": list(image.size) if image else None, "headline": json.loads(e.headline),
               "merge_job": e.merge_job, "preview": image.preview is not None if image else None}
recording = draw()
out["done_draw"] = {"labels": recording.labels, "operators": [name for name, _ in recording.operators]}
out["figure_keys"] = [key for _, keys, _ in panel.FIGURES for key in keys]
out["figure_lines"] = panel.figure_lines(HEADLINE)
out["empty_lines"] = panel.figure_lines({})
out["open"] = sorted(bpy.ops.swapline.evaluate_open())
out["open_shows"] = [area.spaces.active.image.name for window in wm.windows for area in window.screen.areas
                     if area.type == "IMAGE_EDITOR" and area.spaces.active.image is not None]
out["timer_after_done"] = bpy.app.timers.is_registered(ev._timer)
out["timer_tick"] = ev._timer()

# merged again since: the panel says the figures are of the older merge
layer = strips_mod.results_of(scene, shot)[0]
layer.swapline_job = "m2"
out["stale_draw"] = [t for t in draw().labels if "Merged again" in t]
layer.swapline_job = "m1"

# a remote engine: the output folder is downloaded into <blend>_swapline/results/<job id> first
link._transfers = object()  # EngineLink.remote: transfers go through a worker
editor.active_strip = shot
bpy.ops.swapline.evaluate()
op, args, tag = sent[-1]
remote_output = f"/remote/ws/{args['params']['output']}"
remote_result = {"report": f"{remote_output}/report.json", "sheet": f"{remote_output}/summary.png",
                 "output": remote_output, "headline": dict(HEADLINE, flicker_ratio=2.5)}
sync.apply(EL.JobUpdate(job("e2", "evaluate", "done", dict(args["params"], output=remote_output), remote_result),
                        tag))
drain()
out["fetching"] = [state(), downloads[-1] if downloads else None]
drain()
out["one_download"] = len(downloads)
local = strips_mod.results_folder("e2")
os.makedirs(local, exist_ok=True)  # what the transfer worker writes
shutil.copy(os.path.join(folder, "summary.png"), local)
sync.apply(EL.Transfer("download-e2", "evaluate", tag["label"], "done", 10, 10, "Done", 10,
                       {"remote": remote_output, "local": local}))
drain()
e = evaluation()
out["remote_done"] = {"state": state(), "sheet": e.sheet, "local": local,
                      "flicker": json.loads(e.headline).get("flicker_ratio"), "image": e.image}
# a download that fails
bpy.ops.swapline.evaluate()
op, args, tag = sent[-1]
remote_output = f"/remote/ws/{args['params']['output']}"
sync.apply(EL.JobUpdate(job("e3", "evaluate", "done", dict(args["params"], output=remote_output),
                            dict(remote_result, output=remote_output)), tag))
drain()
sync.apply(EL.Transfer("download-e3", "evaluate", tag["label"], "failed", 0, 10, "disk full", 0))
drain()
out["download_failed"] = state()
link._transfers = None

# a job that fails, and a request the engine refuses
bpy.ops.swapline.evaluate()
op, args, tag = sent[-1]
sync.apply(EL.JobUpdate(job("e4", "evaluate", "failed", args["params"],
                            error={"code": "no_faces", "message": "no face in the shot"}), tag))
drain()
out["job_failed"] = state()
bpy.ops.swapline.evaluate()
op, args, tag = sent[-1]
sync.apply(EL.RequestFailed("job.start", "bad_request", "unknown param 'x'", tag))
drain()
out["refused"] = state()
out["failed_draw"] = [t for t in draw().labels if "unknown param" in t]

# the merge on show failed: said at once
layer = strips_mod.results_of(scene, shot)[0]
layer.swapline_job = "m9"
sync.apply(EL.JobUpdate(job("m9", "merge", "failed", merge_params, error={"code": "internal", "message": "x"})))
bpy.ops.swapline.evaluate()
out["merge_failed"] = state()
layer.swapline_job = "m1"

# saved with the .blend: the outcome stays; one under way is followed again after loading, and the
# sheet's image (which Blender does not save when nothing shows it) is loaded again
bpy.ops.swapline.evaluate()  # RUNNING, sent
for window in wm.windows:
    for area in window.screen.areas:
        if area.type == "IMAGE_EDITOR":
            area.spaces.active.image = None
path = os.path.join(folder, "evaluated.blend")
bpy.ops.wm.save_as_mainfile(filepath=path)
bpy.app.timers.unregister(ev._timer)
bpy.ops.wm.open_mainfile(filepath=path)
e = bpy.context.scene.sequence_editor.strips_all["Shot"].swapline_evaluation
image = bpy.data.images.get(e.image)
out["reloaded"] = {"state": e.state, "headline": bool(e.headline), "image": image is not None,
                   "preview": bool(image and image.preview), "timer": bpy.app.timers.is_registered(ev._timer)}
link.state = EL.DISCONNECTED  # the evaluation waits for the engine, followed less often
ev.drain()
e = bpy.context.scene.sequence_editor.strips_all["Shot"].swapline_evaluation
out["disconnected"] = [e.state, e.message, ev._timer()]
_blender.disable()
_blender.emit(**out)
