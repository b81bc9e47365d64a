"""The face matte on the timeline: Add Face Matte sends the job for the frames the shot shows; the
finished job lands as a muted Non-Color image strip above the shot, frame for frame; Grade Face adds
a Color Balance modifier masked by it (before the matte exists it asks for one and grades on arrival).
Timeline frames are rendered for the test to check the pixels."""

import json
import sys

import bpy

import _blender

clip, mattes, folder = sys.argv[1:4]
sync = _blender.enable()
EL = _blender.submodule("engine_link")
matte = _blender.submodule("matte")
scene = _blender.new_scene()
editor = scene.sequence_editor
scene.render.resolution_x, scene.render.resolution_y, scene.render.resolution_percentage = 64, 48, 100
shot = editor.strips.new_movie(name="Shot", filepath=clip, channel=2, frame_start=10)
shot.frame_offset_start, shot.frame_offset_end = 5, 7  # timeline 15..42 shows source frames 5..32
shot.swapline_role = "DESTINATION"
shot.transform.offset_x = 8  # moved right: the matte must move with it (the mask is read in the canvas)
editor.strips.new_effect(name="Blocker", type="COLOR", channel=3, frame_start=30, length=5)
settings = scene.swapline.masks
settings.erode, settings.blur, settings.top, settings.left, settings.temporal = 2.0, 4.0, -10.0, 5.0, 1.5

link = sync.link()
sent = []
link.state = EL.CONNECTED
link.request = lambda op, args=None, tag=None: sent.append((op, dict(args or {}), dict(tag or {})))
out = {}


def run(operator, **kwargs):
    result, error = _blender.call(operator, **kwargs)
    return error or sorted(result)


def job(job_id, state, **extra):
    return {"id": job_id, "kind": "mask_matte", "state": state, "created": 1.0, "params": {}, "stats": {},
            "result": None, "error": None, **extra}


RESULT = {"directory": mattes, "pattern": "matte_%06d.png", "first_frame": 0, "count": 40}

editor.active_strip = None
out["no_active"] = run(bpy.ops.swapline.matte_add)
editor.active_strip = shot
out["add"] = run(bpy.ops.swapline.matte_add)
[(op, args, tag)] = sent
sent.clear()
out["sent"] = [op, args, tag]
link.inbox.put(EL.JobUpdate(job("j1", "queued"), tag))
link.inbox.put(EL.JobUpdate(job("j1", "running", progress=0.5)))
sync.drain(budget=None)
out["pending"] = [[r.job_id, r.strip, r.grade] for r in scene.swapline.mattes]
link.inbox.put(EL.JobUpdate(job("j1", "done", result=RESULT)))
sync.drain(budget=None)
out["pending_after"] = len(scene.swapline.mattes)
strip = matte.matte_of(scene, "Shot")
out["matte"] = {"name": strip.name, "type": strip.type, "channel": strip.channel, "mute": strip.mute,
                "colorspace": strip.colorspace_settings.name, "start": strip.frame_final_start,
                "end": strip.frame_final_end, "job": strip.swapline_job, "offset_x": strip.transform.offset_x,
                "files": {f: strip.strip_elem_from_frame(f).filename for f in (15, 16, 30, 42)}}

# Grade Face with the matte there: a modifier on the shot, masked by the matte strip
out["grade"] = run(bpy.ops.swapline.face_grade)
modifier = shot.modifiers.get(matte.GRADE_NAME)
out["modifier"] = [modifier.type, modifier.input_mask_type, modifier.input_mask_strip.name]
modifier.color_balance.gain = (3.0, 3.0, 3.0)

# Selecting the matte and grading again reuses the same modifier
editor.active_strip = strip
out["grade_again"] = run(bpy.ops.swapline.face_grade)
out["modifiers"] = [m.name for m in shot.modifiers]
editor.active_strip = shot

scene.render.image_settings.file_format = "PNG"
renders = {}
for frame in (20, 21, 22, 23, 40):
    scene.frame_set(frame)
    for name, muted in (("plain", True), ("graded", False)):  # the same frame without and with the grade
        modifier.mute = muted
        scene.render.filepath = f"{folder}/{name}_{frame}.png"
        with bpy.context.temp_override(scene=scene):
            bpy.ops.render.render(write_still=True)
        renders.setdefault(frame, {})[name] = scene.render.filepath
out["renders"] = renders

# A new matte replaces the old one, and the grade follows it
link.inbox.put(EL.JobUpdate(job("j2", "queued", created=2.0), dict(tag)))
link.inbox.put(EL.JobUpdate(job("j2", "done", created=2.0, result=RESULT)))
sync.drain(budget=None)
new = matte.matte_of(scene, "Shot")
out["remade"] = [len([s for s in editor.strips if s.swapline_matte_for == "Shot"]), new.swapline_job,
                 modifier.input_mask_strip.name == new.name]

# Grade Face on a shot without a matte: asks for one with grade=True; it is graded when it lands
other = editor.strips.new_movie(name="Other", filepath=clip, channel=6, frame_start=100)
other.swapline_role = "SOURCE"
editor.active_strip = other
out["grade_first"] = run(bpy.ops.swapline.face_grade)
[(op, args, tag)] = sent
sent.clear()
out["grade_first_sent"] = [args["params"]["faceset"], tag.get("grade"), tag.get("strip")]
link.inbox.put(EL.JobUpdate(job("j3", "queued", created=3.0), tag))
link.inbox.put(EL.JobUpdate(job("j3", "done", created=3.0, result=RESULT)))
sync.drain(budget=None)
graded = other.modifiers.get(matte.GRADE_NAME)
out["graded_on_arrival"] = graded is not None and graded.input_mask_strip == matte.matte_of(scene, "Other")

# A matte that misses the shot's frames is an error, not a strip
link.inbox.put(EL.JobUpdate(job("j4", "queued", created=4.0), dict(tag, strip="Shot", grade=False)))
link.inbox.put(EL.JobUpdate(job("j4", "done", created=4.0, result=dict(RESULT, first_frame=100, count=3))))
sync.drain(budget=None)
out["bad_result"] = bpy.context.window_manager.swapline.last_error
link.state = EL.DISCONNECTED
_blender.disable()
_blender.emit(**out)
