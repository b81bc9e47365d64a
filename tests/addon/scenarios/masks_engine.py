"""Masks against a real local engine: extract a clip, count labels, open the first unlabelled face,
draw an include and an exclude polygon into the Mask datablock, save, read the label back through
the engine; then draw on the whole frame and check it maps onto the aligned face; previews; and,
when the engine runs matte jobs, the face matte strip."""

import sys

import bpy

import _blender
import _layout

clip, workspace = sys.argv[1:3]
sync = _blender.enable()
mask_panels = _blender.submodule("mask_panels")
me = _blender.submodule("mask_editor")
matte = _blender.submodule("matte")
thumbnails = _blender.submodule("thumbnails")
mask_view = _blender.submodule("mask_view")
scene = _blender.new_scene(fps=12)
scene.swapline.workspace = workspace
scene.swapline.face_size = 64
strip = scene.sequence_editor.strips.new_movie(name="Hopper", filepath=clip, channel=1, frame_start=1)
scene.sequence_editor.active_strip = strip
bpy.ops.swapline.mark_role(role="SOURCE", confirm=True)
wm = bpy.context.window_manager
view, state = wm.swapline.faceset, wm.swapline.masks
out = {"problems": []}
answers = {}
_apply = sync.apply


def apply(message):
    tag = getattr(message, "tag", None) or {}
    if tag.get("purpose") == "check":
        answers[tag["n"]] = message.result if hasattr(message, "result") else {"error": message.code}
    else:
        _apply(message)


sync.apply = apply


def engine(op, **args):
    n = len(answers) + 1
    sync.link().request(op, args, {"purpose": "check", "n": n, "kind": "check"})
    _blender.check(_blender.drain_until(sync, lambda: n in answers, 60), f"no answer to {op}")
    return answers[n]


def settle(kind):
    while True:
        sync.wait_for_jobs(kind, timeout=120)
        if not sync.drain(budget=None) and not any(t.get("kind") == kind for t in sync.link().pending_tags()):
            return


def run(operator, kind="mask", **kwargs):
    result, error = _blender.call(operator, **kwargs)
    settle(kind)
    return error or sorted(result)


def draw(name):
    recording = _layout.Recording()
    for cls in mask_panels.classes:
        recording.draw(cls)
    out["problems"] += recording.problems
    out[name] = recording.labels


bpy.ops.swapline.connect()
sync.wait_for_connection(timeout=180)
settle("faceset")
bpy.ops.swapline.extract(which="SOURCE")
[extracted] = sync.wait_for_jobs("extract", timeout=300)
settle("faceset")
out["faces"] = [view.state, view.face_count]

ops = []  # what the add-on asks the engine, in order
_request = sync.link().request
sync.link().request = lambda op, args=None, tag=None: (ops.append(op), _request(op, args, tag))[1]

out["refresh"] = run(bpy.ops.swapline.mask_refresh)
draw("counted")
opened_from = len(ops)
out["edit"] = run(bpy.ops.swapline.mask_edit)
out["open_ops"] = ops[opened_from:]
first = state.face_id
out["opened"] = [state.edit, first == view.faces[0].face_id, state.space, list(bpy.data.images[me.IMAGE_NAME].size)]

LABEL = [{"include": True, "points": [[0.15, 0.2], [0.85, 0.2], [0.85, 0.95], [0.15, 0.95]]},
         {"include": False, "points": [[0.4, 0.5], [0.6, 0.5], [0.5, 0.7]]}]
me.write_mask(bpy.data.masks[me.MASK_NAME], LABEL, "face", 1, 1)  # what the user draws
out["save"] = run(bpy.ops.swapline.mask_save)
out["stored"] = engine("mask.label.get", face=first, space="face")["polygons"]
out["count_after_save"] = [state.labelled_count, [i.face_id for i in state.labelled] == [first]]
draw("labelled")

# The same face on its frame: the label comes in frame pixels; saved from there it maps back
out["to_frame"] = run(bpy.ops.swapline.mask_space, space="FRAME")
out["on_frame"] = [state.edit, state.face_id == first, state.space, [state.width, state.height],
                   list(bpy.data.images[me.IMAGE_NAME].size)]
out["frame_polygons"] = me.read_mask(bpy.data.masks[me.MASK_NAME], "frame", state.width, state.height)[0]
out["save_frame"] = run(bpy.ops.swapline.mask_save)
out["stored_after_frame"] = engine("mask.label.get", face=first, space="face")["polygons"]

# Next face: the frame label is saved, the next face opens with no label
out["next"] = run(bpy.ops.swapline.mask_step, step=1)
out["next_face"] = [state.face_id == view.faces[1].face_id, state.edit,
                    sum(len(layer.splines) for layer in bpy.data.masks[me.MASK_NAME].layers)]

out["previews"] = run(bpy.ops.swapline.mask_previews)
sync.drain(budget=None)
out["preview_items"] = [[p.face_id == first, p.source, p.thumbnail] for p in state.previews][:2]
out["preview_sizes"] = sorted({tuple(thumbnails.preview(mask_view.PREVIEWS, p.image).image_size)
                               for p in state.previews if p.thumbnail == "LOADED"})

# The matte, when this engine renders mattes (a refused job.start leaves no job behind)
wm.swapline.last_error = ""
out["matte"] = _blender.call(bpy.ops.swapline.matte_add)[1] or "started"
jobs = sync.wait_for_jobs("mask_matte", timeout=300, check=False)
out["matte_job"] = [jobs[0]["state"], (jobs[0].get("error") or {}).get("message")] if jobs else \
    ["refused", wm.swapline.last_error]
found = matte.matte_of(scene, "Hopper")
out["matte_strip"] = None if found is None else [found.mute, found.frame_final_start, found.frame_final_end,
                                                 len(found.elements), found.colorspace_settings.name]
out["strip_range"] = [strip.frame_final_start, strip.frame_final_end]
if found is not None:
    out["matte_files"] = [found.directory, found.elements[0].filename, found.elements[len(found.elements) - 1].filename]

# Learning, a few iterations: train on the one label, apply, and the previews show learned masks
settings = scene.swapline.masks
settings.iterations, settings.minutes = 4, 0.0
wm.swapline.last_error = ""
out["train"] = _blender.call(bpy.ops.swapline.mask_train)[1] or "started"
jobs = sync.wait_for_jobs("mask_train", timeout=300, check=False)
out["train_job"] = [jobs[0]["state"], jobs[0].get("result"), (jobs[0].get("error") or {}).get("message")] if jobs \
    else ["refused", wm.swapline.last_error]
if jobs and jobs[0]["state"] == "done":
    out["train_message"] = state.message
    bpy.ops.swapline.mask_apply()
    [applied] = sync.wait_for_jobs("mask_apply", timeout=300, check=False)
    settle("mask")
    out["apply_job"] = [applied["state"], applied.get("result")]
    out["sources_after_apply"] = sorted({p.source for p in state.previews})
    # Train again (as after adding labels): the same setting trains that many more steps
    bpy.ops.swapline.mask_train()
    again = sync.wait_for_jobs("mask_train", timeout=300, check=False)
    out["train_again"] = [again[0]["state"], again[0].get("result")] if again else ["refused", wm.swapline.last_error]
bpy.ops.swapline.disconnect()
_blender.disable()
_blender.emit(**out)
