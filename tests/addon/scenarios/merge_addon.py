"""Merging against a recording link: a keyframed option becomes keys in Merge Shot's job, the finished
job lands as a face layer (Alpha Over) and a matte, a timeline frame is rendered, and the live
preview sends one request at a time (frame changes coalesced), writes the answers (face layer and
matte, by source frame) and records them in previewed.json; an answer merged with older options is
dropped; an F-curve edit re-asks; no preview while a merge job of the shot runs; a moved shot gets
its strips placed again; a Custom Mask is sent or refused; a fresh shot gets its face layer strip
from the preview itself; a remote engine's result is not placed and its preview writes here."""

import json
import os
import sys

import bpy

import _blender
import _layout

clip, result_json, previews, folder = sys.argv[1:5]
RESULT = json.loads(result_json)
sync = _blender.enable()
EL = _blender.submodule("engine_link")
matte = _blender.submodule("matte")
panels = _blender.submodule("panels")
merge_panels = _blender.submodule("merge_panels")
merge_settings = _blender.submodule("merge_settings")
live_preview = _blender.submodule("live_preview")
scene = _blender.new_scene()
editor = scene.sequence_editor
scene.render.resolution_x, scene.render.resolution_y, scene.render.resolution_percentage = 64, 48, 100
scene.view_settings.view_transform = "Standard"
scene.render.image_settings.file_format = "PNG"
shot = editor.strips.new_movie(name="Shot", filepath=clip, channel=2, frame_start=10)
shot.frame_offset_start, shot.frame_offset_end = 5, 7  # timeline 15..42 shows source frames 5..32
shot.swapline_role = "DESTINATION"
shot.transform.offset_x = 8  # the face layer must sit exactly on top of it
editor.active_strip = shot
settings = scene.swapline
settings.model, settings.destination_faceset = "m", "dst"
wm = bpy.context.window_manager
wm.swapline.engine_workspace = f"{folder}/ws"
wm_live = wm.swapline_live
strips_mod = _blender.submodule("strips")

link = sync.link()
sent = []
link.state = EL.CONNECTED
link.request = lambda op, args=None, tag=None: sent.append((op, dict(args or {}), dict(tag or {})))
out = {"problems": []}


def draw():
    recording = _layout.Recording()
    recording.draw(panels.SEQUENCER_PT_swapline_merge)
    for cls in merge_panels.classes:
        recording.draw(cls)
    out["problems"] += recording.problems
    return recording


draw()
# options: a few plain ones, and erode keyed 0.02 at timeline 20 and 0.2 at 30, linear between
options = shot.swapline_merge
options.colour, options.mode, options.blur_top = "mkl", "seamless", 0.1
for frame, value in ((20, 0.02), (30, 0.2)):
    scene.frame_set(frame)
    options.erode = value
    bpy.ops.swapline.merge_keyframe(option="erode")
for point in merge_settings.fcurves_of(scene, shot)["erode"].keyframe_points:
    point.interpolation = "LINEAR"
scene.frame_set(20)
curves = merge_settings.fcurves_of(scene, shot)
out["key_buttons"] = {name: merge_panels.key_icon(scene, curves, name) for name in ("erode", "blur")}
draw()

scene.swapline_merge_outputs.frames = True
out["merge"] = sorted(bpy.ops.swapline.merge_shot())
out["merge_sent"] = sent[-1]
tag = sent[-1][2]
sent.clear()


def job(job_id, state, **extra):
    return {"id": job_id, "kind": "merge", "state": state, "created": 1.0, "params": {"model": "m"}, "stats": {},
            "result": None, "error": None, **extra}


link.inbox.put(EL.JobUpdate(job("j1", "queued"), tag))
link.inbox.put(EL.JobUpdate(job("j1", "running", progress=0.5)))
sync.drain(budget=None)
draw()
link.inbox.put(EL.JobUpdate(job("j1", "done", progress=1.0, result=RESULT)))
sync.drain(budget=None)
out["pending_merges"] = len(scene.swapline.merges)
layer = live_preview.layer_strip(scene, shot)
out["layer"] = {"blend": layer.blend_type, "result_for": layer.swapline_result_for, "job": layer.swapline_job,
                "start": layer.frame_final_start, "end": layer.frame_final_end, "channel": layer.channel,
                "files": {f: layer.strip_elem_from_frame(f).filename for f in (15, 42)},
                "directory": bpy.path.abspath(layer.directory), "offset_x": layer.transform.offset_x}
m = matte.matte_of(scene, "Shot")
out["matte"] = {"found": m is not None, "mute": m.mute, "colorspace": m.colorspace_settings.name,
                "channel": m.channel, "directory": bpy.path.abspath(m.directory), "start": m.frame_final_start,
                "end": m.frame_final_end}
scene.frame_set(20)
scene.render.filepath = f"{folder}/render_20.png"
with bpy.context.temp_override(scene=scene):
    bpy.ops.render.render(write_still=True)
out["render"] = scene.render.filepath

# live preview against the recording link: answers are fed by hand
previews_bytes = [open(f"{previews}/{i}.png", "rb").read() for i in range(3)]
matte_bytes = open(f"{previews}/matte.png", "rb").read()


def answer(index, request_tag, with_matte=True):
    result = {"frame": request_tag["frame"], "layer": previews_bytes[index], "box": [16, 12, 48, 36], "ms": 12.0,
              "cached": False}
    if with_matte:
        result["matte"] = matte_bytes
    link.inbox.put(EL.Reply("merge.preview", result, request_tag))
    sync.drain(budget=None)


wm.swapline_live.enabled = True  # asks for the frame on show (timeline 20, source 10)
for frame in (21, 22, 23, 24):
    scene.frame_set(frame)  # the handler coalesces these while frame 10 is in flight
out["in_flight_while_scrubbing"] = len(sent)
written = []
first = sent[0][2]
answer(0, first)
written.append(live_preview.layer_strip(scene, shot).directory + "frame_000010.png")
second = sent[-1][2]
answer(1, second)
written.append(live_preview.layer_strip(scene, shot).directory + "frame_000014.png")
out["written"] = [bpy.path.abspath(p) for p in written]
out["preview_sent"] = [[op, args["frame"], args["settings"]["colour"]] for op, args, _ in sent]
out["preview_settings_keys"] = sent[0][1]["settings"]["keys"]
out["preview_range"] = sent[0][1]["range"]
out["digests"] = [sent[0][2]["digest"], sent[-1][2]["digest"]]  # the same: erode's curve, not its value
out["matte_written"] = bpy.path.abspath(matte.matte_of(scene, "Shot").directory) + "frame_000014.png"

out["latencies"] = len(live_preview.latencies())
out["median_ms"] = wm.swapline_live.median_ms
draw()

options.colour_strength = 0.3  # an option change previews the frame on show again
op, args, change_tag = sent[-1]
out["after_change"] = [op, args["frame"], round(args["settings"]["colour_strength"], 4)]
link.inbox.put(EL.RequestFailed("merge.preview", "not_found", "no model 'm'", change_tag))
sync.drain(budget=None)
out["failure_message"] = wm.swapline_live.message
out["last_error"] = wm.swapline.last_error

# a reply merged with options since changed is dropped; the newer request is sent and shown
scene.frame_set(21)  # source 11
older = sent[-1][2]
options.colour_strength = 0.6  # pending while frame 11 is in flight, with another digest
before = len(sent)
answer(0, older)
layer_dir = bpy.path.abspath(live_preview.layer_strip(scene, shot).directory)
out["stale"] = {"written": open(f"{layer_dir}frame_000011.png", "rb").read() == previews_bytes[0],
                "sent_after": len(sent) - before,
                "newer_strength": round(sent[-1][1]["settings"]["colour_strength"], 4)}
answer(1, sent[-1][2])
out["stale"]["newer_written"] = open(f"{layer_dir}frame_000011.png", "rb").read() == previews_bytes[1]

# an F-curve edited (no option set, no frame change): the depsgraph check asks again
before = len(sent)
curve = merge_settings.fcurves_of(scene, shot)["erode"]
curve.keyframe_points[0].co[1] = 0.05
bpy.context.view_layer.update()
out["curve_edit"] = [len(sent) - before, round(sent[-1][1]["settings"]["erode"], 4) if len(sent) > before else None]
answer(0, sent[-1][2])
before = len(sent)
bpy.context.view_layer.update()  # nothing changed: nothing asked
out["curve_edit"].append(len(sent) - before)

# a merge job of this shot running: no preview (the panel says why); asked again once it is done
folder = live_preview.merge_folder(scene, shot)
running = {"id": "j2", "kind": "merge", "state": "running", "created": 2.0, "stats": {}, "result": None,
           "error": None, "params": {"model": "m", "video": strips_mod.video_path(shot), "output": folder}}
link.inbox.put(EL.JobUpdate(running))
sync.drain(budget=None)
before = len(sent)
scene.frame_set(26)
out["busy"] = {"sent": len(sent) - before, "message": wm_live.message}
recording = draw()
out["busy"]["panel"] = any("being merged" in text for text in recording.labels)
link.inbox.put(EL.JobUpdate(dict(running, state="done", result=None)))
sync.drain(budget=None)
scene.frame_set(27)
out["busy"]["after"] = len(sent) - before
answer(2, sent[-1][2])

# the shot moved 3 frames later: the face layer and matte strips are placed again, by source frame
shot.frame_start += 3  # timeline 18..45 shows source 5..32 now
scene.frame_set(30)  # source 17
answer(2, sent[-1][2])
layer = live_preview.layer_strip(scene, shot)
m = matte.matte_of(scene, "Shot")
out["moved"] = {"layer": [layer.frame_final_start, layer.frame_final_end, layer.strip_elem_from_frame(30).filename,
                          bpy.path.abspath(layer.directory)],
                "matte": [m.frame_final_start, m.frame_final_end, m.strip_elem_from_frame(30).filename],
                "shot": [shot.frame_final_start, shot.frame_final_end]}

# a Custom Mask: any product of the engine's masks is sent; anything else is refused with why
options.mask_custom = "hull * pred*seg-dst"  # the Mask is not Custom yet: only the text changes
answer(2, sent[-1][2])
options.mask = "custom"
out["custom"] = {"refused_no_model": wm_live.message}
options.seg_model = "xseg"
out["custom"]["sent"] = sent[-1][1]["settings"]["mask"]
answer(2, sent[-1][2])
options.mask_custom = "pred*nose"
out["custom"]["bad_message"] = wm_live.message
out["custom"]["panel"] = [text for text in draw().labels if "Custom mask" in text]
out["custom"]["bad_merge"] = _blender.call(bpy.ops.swapline.merge_shot)[1]
options.mask = "dst"
answer(2, sent[-1][2])

# a shot with no result yet: the preview makes its face layer strip
fresh = editor.strips.new_movie(name="Fresh", filepath=clip, channel=6, frame_start=100)
fresh.swapline_role = "DESTINATION"
editor.active_strip = fresh
scene.frame_set(105)
answer(2, sent[-1][2])
strip = live_preview.layer_strip(scene, fresh)
out["fresh"] = {"blend": strip.blend_type, "result_for": strip.swapline_result_for,
                "file": bpy.path.abspath(strip.directory + strip.strip_elem_from_frame(105).filename)}
wm.swapline_live.enabled = False
scene.frame_set(106)  # no file there yet: the strip renders as nothing, not an error
scene.render.filepath = f"{folder}/render_missing.png"
with bpy.context.temp_override(scene=scene):
    bpy.ops.render.render(write_still=True)
out["fresh"]["missing_render_ok"] = True
draw()

editor.active_strip = shot
scene.frame_set(25)
before = len(sent)
out["live_op"] = [sorted(bpy.ops.swapline.merge_live()), wm.swapline_live.enabled, len(sent) - before]
out["preview_op"] = sorted(bpy.ops.swapline.merge_preview())  # one in flight: coalesced, nothing sent
out["preview_op_sent"] = [len(sent) - before, sent[-1][0], sent[-1][1]["frame"]]
out["live_off"] = [sorted(bpy.ops.swapline.merge_live()), wm.swapline_live.enabled]
out["reset_result"] = sorted(bpy.ops.swapline.merge_reset())
out["reset"] = [round(options.erode, 4), options.mode, len(merge_settings.fcurves_of(scene, shot))]

# a remote engine: a result in a folder not on this machine is not placed (a strip of missing files
# crashes Blender 5.0.1); the preview replaces such a strip with one of its own, in a local folder
prefs = _blender.preferences()
prefs.engine_mode = "REMOTE"
elsewhere = {"directory": "/nonexistent/engine/job", "first_frame": 0, "count": 40, "swapped": 40,
             "layer": {"directory": "/nonexistent/engine/job/layer", "pattern": "frame_%06d.png"},
             "matte": {"directory": "/nonexistent/engine/job/matte", "pattern": "frame_%06d.png"}}
strips_before = len(editor.strips_all)
try:
    strips_mod.place_result(scene, fresh, elsewhere, job_id="j9")
    out["remote_place"] = "placed"
except strips_mod.NotOnThisMachine as exc:
    out["remote_place"] = str(exc)
out["remote_strips_added"] = len(editor.strips_all) - strips_before
stray = live_preview.layer_strip(scene, fresh)
stray.directory = "/nonexistent/engine/job/layer/"  # an older file's strip of the engine's folder
link.state = EL.CONNECTED
editor.active_strip = fresh
scene.frame_set(107)
wm.swapline_live.enabled = True
answer(0, sent[-1][2])
strip = live_preview.layer_strip(scene, fresh)
out["remote_preview"] = {"directory": bpy.path.abspath(strip.directory),
                         "folder": live_preview.merge_folder(scene, fresh),
                         "file": os.path.isfile(bpy.path.abspath(strip.directory) + "frame_000007.png")}
wm.swapline_live.enabled = False
link.state = EL.DISCONNECTED
link.state = EL.DISCONNECTED
_blender.disable()
_blender.emit(**out)
