"""Feed the drain finished-merge messages (as the engine would send them) and look at the strips."""

import sys

import bpy

import _blender

clip, frames_dir = sys.argv[1:3]
sync = _blender.enable()
EL = _blender.submodule("engine_link")
link = sync.link()
scene = _blender.new_scene()
editor = scene.sequence_editor
dst = editor.strips.new_movie(name="Dst", filepath=clip, channel=2, frame_start=10)
dst.frame_offset_start, dst.frame_offset_end = 5, 7  # timeline 15..42 shows source frames 5..32
dst.swapline_role = "DESTINATION"
dst.transform.scale_x, dst.transform.scale_y = 0.5, 0.75  # the result must sit exactly on top of it
# channel 3 is taken inside the destination's range, channel 4 only outside it
editor.strips.new_effect(name="Blocker", type="COLOR", channel=3, frame_start=30, length=5)
editor.strips.new_effect(name="Later", type="COLOR", channel=4, frame_start=60, length=5)

TAG = {"purpose": "merge", "kind": "merge", "label": "Merge model", "scene": scene.name, "destination": "Dst"}
RESULT = {"directory": frames_dir, "pattern": "frame_%06d.png", "first_frame": 0, "count": 40}


def job(job_id, state, created, **extra):
    return {"id": job_id, "kind": "merge", "state": state, "progress": 1.0 if state == "done" else 0.0,
            "params": {"model": "model"}, "created": created, "stats": {}, "result": None, "error": None, **extra}


def results():
    return [s for s in editor.strips if s.swapline_result_for == "Dst"]


def describe(strip):
    return {"name": strip.name, "type": strip.type, "channel": strip.channel, "job": strip.swapline_job,
            "start": strip.frame_final_start, "end": strip.frame_final_end, "elements": len(strip.elements),
            "files": {f: strip.strip_elem_from_frame(f).filename for f in (15, 16, 30, 42)},
            "scale": [strip.transform.scale_x, strip.transform.scale_y]}


out = {}
# 1. the usual order: queued event, the start response (tagged), progress, done
link.inbox.put(EL.JobUpdate(job("m1", "queued", 1.0)))
link.inbox.put(EL.JobUpdate(job("m1", "queued", 1.0), TAG))
link.inbox.put(EL.JobUpdate(job("m1", "running", 1.0, progress=0.5)))
sync.drain(budget=None)
out["pending_before_done"] = [m.job_id for m in scene.swapline.merges]
out["mirror_running"] = [(j.job_id, j.state, round(j.progress, 2), j.ours) for j in bpy.context.window_manager.swapline.jobs]
link.inbox.put(EL.JobUpdate(job("m1", "done", 1.0, result=RESULT)))
sync.drain(budget=None)
out["first"] = [describe(s) for s in results()]
out["pending_after_done"] = len(scene.swapline.merges)

# 2. a re-merge whose done event overtakes its start response: the stale response must not undo it
link.inbox.put(EL.JobUpdate(job("m2", "done", 2.0, result=RESULT)))
link.inbox.put(EL.JobUpdate(job("m2", "queued", 2.0), TAG))
sync.drain(budget=None)
out["second"] = [describe(s) for s in results()]
out["mirror_m2"] = [j.state for j in bpy.context.window_manager.swapline.jobs if j.job_id == "m2"]

# 3. an old finished merge seen on re-attach (job.list) was not asked for by this scene: left alone
link.inbox.put(EL.JobList([job("old", "done", 0.5, result=RESULT)]))
sync.drain(budget=None)
out["after_joblist"] = [s.swapline_job for s in results()]
out["mirrored_old"] = any(j.job_id == "old" and not j.ours for j in bpy.context.window_manager.swapline.jobs)

# 4. a merge that fails: reported, nothing placed, its request forgotten
link.inbox.put(EL.JobUpdate(job("m4", "queued", 4.0), TAG))
link.inbox.put(EL.JobUpdate(job("m4", "failed", 4.0, error={"code": "no_faces", "message": "no faces here"})))
sync.drain(budget=None)
out["after_failure"] = [s.swapline_job for s in results()]
out["last_error"] = bpy.context.window_manager.swapline.last_error
out["pending_after_failure"] = len(scene.swapline.merges)

# 5. a result that misses the frames the destination shows: a clear error, the old result stays
link.inbox.put(EL.JobUpdate(job("m5", "queued", 5.0), TAG))
link.inbox.put(EL.JobUpdate(job("m5", "done", 5.0, result=dict(RESULT, first_frame=100, count=3))))
sync.drain(budget=None)
out["after_bad_result"] = [s.swapline_job for s in results()]
out["bad_result_error"] = bpy.context.window_manager.swapline.last_error
_blender.disable()
_blender.emit(**out)
