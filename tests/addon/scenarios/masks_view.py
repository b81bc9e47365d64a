"""The Masks panel and its operators against a recording link: counting labels, opening a face on
the crop and on the frame (the Mask datablock filled from the label), saving what was drawn,
Previous/Next, Clear, previews in the faceset grid, training/apply/remove jobs and their progress,
and refused requests. Answers are put on the link's inbox as the worker thread would."""

import os
import sys

import bpy

import _blender
import _layout

folder, clip = sys.argv[1:3]
sync = _blender.enable()
EL = _blender.submodule("engine_link")
mask_panels = _blender.submodule("mask_panels")
panels = _blender.submodule("panels")
me = _blender.submodule("mask_editor")
mask_view = _blender.submodule("mask_view")
scene = _blender.new_scene()
wm = bpy.context.window_manager
view, state = wm.swapline.faceset, wm.swapline.masks
out = {"problems": []}


def draw(name):
    recording = _layout.Recording()
    for cls in (*mask_panels.classes, panels.SEQUENCER_PT_swapline_faceset):
        recording.draw(cls)
    out["problems"] += [f"{name}: {p}" for p in recording.problems]
    out[name] = {"labels": recording.labels, "icons": recording.icons,
                 "operators": sorted({idname for idname, _ in recording.operators})}


def png(name, width, height):
    image = bpy.data.images.new(name, width, height)
    image.pixels.foreach_set([0.5, 0.4, 0.3, 1.0] * width * height)
    image.filepath_raw = os.path.join(folder, f"{name}.png")
    image.file_format = "PNG"
    image.save()
    return image.filepath_raw


def answer(item, result=None, code=None):
    op, _args, tag = item
    sync.link().inbox.put(EL.RequestFailed(op, code, f"{code}!", tag) if code else EL.Reply(op, result, tag))
    sync.drain(budget=None)


def run(operator, **kwargs):
    result, error = _blender.call(operator, **kwargs)
    return error or sorted(result)


def take():
    items = list(sent)
    sent.clear()
    return items


def polygons_of_mask(space, width, height):
    return me.read_mask(bpy.data.masks[me.MASK_NAME], space, width, height)[0]


draw("disconnected")
link = sync.link()
sent = []
link.state = EL.CONNECTED
ops = []  # every op sent, in order, never cleared
link.request = lambda op, args=None, tag=None: (sent.append((op, dict(args or {}), dict(tag or {}))), ops.append(op))
link.inbox.put(EL.Connection(EL.CONNECTED, "Connected", {"name": "e", "version": "1", "device": "cpu",
                                                         "workspace": folder}))
sync.drain(budget=None)
take()
draw("no_faceset")
out["edit_no_faceset"] = run(bpy.ops.swapline.mask_edit)

# A faceset on show: 4 faces on the page
crop, frame = png("crop", 64, 64), png("frame", 96, 64)
faces = [{"id": 10 + i, "media_id": 1, "frame": i, "track": 1, "image": crop} for i in range(4)]
requests = _blender.submodule("faceset_view").show(view, "source")
answer(requests[0], {"facesets": [{"name": "source", "face_type": "full", "size": 64, "faces": 4, "frames": 4,
                                   "tracks": 1}]})
out["auto_count_before_use"] = [op for op, _, _ in take()]
answer(requests[1], {"tracks": []})
answer(requests[2], {"faces": faces, "total": 4})
take()
draw("not_counted")

out["refresh"] = run(bpy.ops.swapline.mask_refresh)
[count] = take()
out["refresh_sent"] = count[:2]
answer(count, {"labelled": [11], "count": 1, "faces": 4})
draw("counted")

out["clear_nothing"] = run(bpy.ops.swapline.mask_clear)  # nothing open, nothing selected

# Edit: the selected face opens on its crop, loaded with its label; the label's answer names the crop,
# so the frame (decoded from the video by the engine) is never asked for
bpy.ops.swapline.faceset_select(face_id=12)
face_ops_from = len(ops)
out["edit"] = run(bpy.ops.swapline.mask_edit)
[label_req] = take()
out["edit_sent"] = label_req[:2]
draw("loading")
LABEL = [{"include": True, "points": [[0.2, 0.2], [0.8, 0.2], [0.8, 0.9], [0.2, 0.9]]}]
answer(label_req, {"face": 12, "polygons": LABEL, "space": "face", "size": 64, "crop": crop, "width": 96,
                   "height": 64})
mask = bpy.data.masks[me.MASK_NAME]
out["opened"] = {"edit": state.edit, "face": state.face_id, "space": state.space,
                 "image": bpy.data.images[me.IMAGE_NAME].filepath, "size": list(bpy.data.images[me.IMAGE_NAME].size),
                 "layers": [[layer.name, len(layer.splines)] for layer in mask.layers],
                 "polygons": polygons_of_mask("face", 64, 64)}
draw("open")
editors = [area.spaces.active for window in wm.windows for area in window.screen.areas if area.type == "IMAGE_EDITOR"]
out["editor"] = [len(editors), editors[0].mode, editors[0].mask.name, editors[0].image.name] if editors else []

# The user cuts a hole into it (the Exclude layer) and saves
hole = [{"include": False, "points": [[0.4, 0.4], [0.6, 0.4], [0.5, 0.6]]}]
me.write_mask(mask, LABEL + hole, "face", 64, 64)
out["save"] = run(bpy.ops.swapline.mask_save)
[save_req] = take()
out["save_sent"] = save_req[:2]
answer(save_req, {"face": 12, "count": 2})
out["after_save"] = [state.labelled_count, sorted(i.face_id for i in state.labelled), state.message]

# Next: saves face 12, then opens face 13
out["next"] = run(bpy.ops.swapline.mask_step, step=1)
[save_req] = take()
out["next_saves"] = [save_req[0], save_req[1]["face"], save_req[2].get("then")]
answer(save_req, {"face": 12, "count": 2})
[label_req] = take()
out["next_opens"] = label_req[:2]
answer(label_req, {"face": 13, "polygons": [], "space": "face", "size": 64, "crop": crop, "width": 96, "height": 64})
out["on_13"] = [state.face_id, state.edit, [[l.name, len(l.splines)] for l in mask.layers],
                bpy.data.images[me.IMAGE_NAME].filepath == crop]
out["face_space_ops"] = ops[face_ops_from:]

# Draw on the frame instead: nothing drawn on unlabelled face 13, so it is reopened on its frame at once
FRAME_LABEL = [{"include": True, "points": [[30.0, 10.0], [70.0, 12.0], [60.0, 50.0], [28.0, 44.0]]}]
out["to_frame"] = run(bpy.ops.swapline.mask_space, space="FRAME")
[frame_req] = take()
out["to_frame_sends"] = frame_req[:2]
answer(frame_req, {"image": frame, "width": 96, "height": 64, "crop": crop, "size": 64})
[label_req] = take()
out["frame_label_sent"] = label_req[1]
answer(label_req, {"face": 13, "polygons": FRAME_LABEL, "space": "frame", "width": 96, "height": 64})
out["on_frame"] = {"space": state.space, "image": bpy.data.images[me.IMAGE_NAME].filepath,
                   "size": [state.width, state.height], "polygons": polygons_of_mask("frame", 96, 64)}
out["save_frame"] = run(bpy.ops.swapline.mask_save)
[save_req] = take()
out["save_frame_sent"] = save_req[1]
answer(save_req, {"face": 13, "count": 3})
out["previous"] = [run(bpy.ops.swapline.mask_step, step=-1), len(sent)]
take()

# Clear the label of the open face (the confirmation is the invoke; execute does the work)
out["clear"] = run(bpy.ops.swapline.mask_clear)
[clear_req] = take()
out["clear_sent"] = clear_req[1]
answer(clear_req, {"face": 13, "count": 1})
out["after_clear"] = [state.labelled_count, sorted(i.face_id for i in state.labelled),
                      sum(len(l.splines) for l in mask.layers)]

# Next on the last face of a page: saved, the page turns, its first face opens; Previous turns back
faceset_view = _blender.submodule("faceset_view")
faceset_view.PAGE_SIZE, view.total = 4, 6
me.write_mask(mask, FRAME_LABEL, "frame", 96, 64)  # drawn again after the clear
out["next_page"] = run(bpy.ops.swapline.mask_step, step=1)
[save_req] = take()
out["next_page_saves"] = [save_req[1]["face"], save_req[2].get("page_step")]
answer(save_req, {"face": 13, "count": 2})
[page_req] = take()
out["next_page_asks"] = [page_req[0], page_req[1]["offset"], page_req[1]["limit"]]
answer(page_req, {"faces": [dict(faces[0], id=14, frame=4), dict(faces[0], id=15, frame=5)], "total": 6})
[frame_req] = take()
out["next_page_opens"] = frame_req[:2]
answer(frame_req, {"image": frame, "width": 96, "height": 64, "crop": crop, "size": 64})
[label_req] = take()
answer(label_req, {"face": 14, "polygons": [], "space": "frame"})
out["on_14"] = [state.face_id, state.edit, state.space, view.offset]
out["back"] = run(bpy.ops.swapline.mask_step, step=-1)
[page_req] = take()  # nothing drawn on face 14: no save, the page turns at once
answer(page_req, {"faces": faces, "total": 6})
[frame_req] = take()
out["back_opens"] = [page_req[1]["offset"], frame_req[1]]
answer(frame_req, {"image": frame, "width": 96, "height": 64, "crop": crop, "size": 64})
answer(take()[0], {"face": 13, "polygons": FRAME_LABEL, "space": "frame"})
out["on_13_again"] = [state.face_id, state.edit, len(polygons_of_mask("frame", 96, 64))]
view.total = 4
out["last_face"] = run(bpy.ops.swapline.mask_step, step=1)
take()

# Previews: the page is asked for with masks overlaid, and drawn instead of the plain crops
overlays = {str(10 + i): png(f"overlay{i}", 32, 32) for i in range(3)}
out["previews"] = run(bpy.ops.swapline.mask_previews)
[preview_req] = take()
out["preview_sent"] = preview_req[:2]
answer(preview_req, {"previews": overlays, "sources": {"10": "label", "11": "hull", "12": "learned"}})
out["preview_items"] = [[p.face_id, p.thumbnail, p.source] for p in state.previews]
draw("with_previews")

# Saving with the previews on: only the saved face's overlay is asked for again, and only its icon is
# replaced when its file name changed; the other faces keep the icons already loaded
thumbnails = _blender.submodule("thumbnails")
loads = []
_load = thumbnails.load
thumbnails.load = lambda group, path: (loads.append(path), _load(group, path))[1]
kept = {key: thumbnails.preview(mask_view.PREVIEWS, path) for key, path in overlays.items()}
saves_with_previews = []
for name, source in (("overlay13", "label"), ("overlay13b", "label"), ("overlay13b", "hull")):
    run(bpy.ops.swapline.mask_save)
    [save_req] = take()
    answer(save_req, {"face": 13, "count": 2})
    [preview_req] = take()
    loads.clear()
    answer(preview_req, {"previews": {"13": png(name, 32, 32)}, "sources": {"13": source}})
    item = mask_view.preview_of(state, 13)
    saves_with_previews.append([preview_req[0], preview_req[1], item.thumbnail, item.source,
                                os.path.basename(item.image), [os.path.basename(path) for path in loads]])
out["saves_with_previews"] = saves_with_previews
out["others_kept"] = [thumbnails.preview(mask_view.PREVIEWS, overlays[key]) is kept[key] is not None
                      for key in sorted(overlays)]
out["replaced_released"] = [thumbnails.preview(mask_view.PREVIEWS, os.path.join(folder, name)) is not None
                            for name in ("overlay13.png", "overlay13b.png")]
out["preview_faces"] = [p.face_id for p in state.previews]

# Learning: with no strips marked, the faceset on show
out["train"] = run(bpy.ops.swapline.mask_train)
[train_req] = take()
out["train_sent"] = train_req[1]
for name, role in (("Src", "SOURCE"), ("Dst", "DESTINATION")):
    scene.sequence_editor.strips.new_movie(name=name, filepath=clip, channel=1 if role == "SOURCE" else 2,
                                           frame_start=1).swapline_role = role
scene.swapline.masks.resolution = "256"
scene.swapline.masks.minutes = 0.0
out["train_both"] = run(bpy.ops.swapline.mask_train)
[train_req] = take()
out["train_both_sent"] = train_req[1]["params"]
link.inbox.put(EL.JobUpdate({"id": "t1", "kind": "mask_train", "state": "running", "progress": 0.4, "created": 5.0,
                             "params": train_req[1]["params"], "stats": {"iteration": 120, "loss": 0.0812}},
                            train_req[2]))
sync.drain(budget=None)
draw("training")
out["train_again"] = run(bpy.ops.swapline.mask_train)
out["apply"] = run(bpy.ops.swapline.mask_apply)
out["apply_sent"] = [args["params"] for _, args, _ in take()]
link.inbox.put(EL.JobUpdate({"id": "t1", "kind": "mask_train", "state": "done", "progress": 1.0, "created": 5.0,
                             "params": {}, "result": {"model": "xseg", "loss": 0.05, "labelled": 3}}))
sync.drain(budget=None)
out["trained_message"] = state.message
link.inbox.put(EL.JobUpdate({"id": "a1", "kind": "mask_apply", "state": "running", "created": 6.0, "params": {}},
                            {"purpose": "mask_apply", "kind": "mask_apply"}))
link.inbox.put(EL.JobUpdate({"id": "a1", "kind": "mask_apply", "state": "done", "created": 6.0, "params": {},
                             "result": {"faces": 4}}))
sync.drain(budget=None)
out["applied"] = [state.message, [op for op, _, _ in take()]]
out["remove"] = run(bpy.ops.swapline.mask_remove)
removes = take()
out["remove_sent"] = [args for _, args, _ in removes]
answer(removes[0], {"removed": 4})
out["removed"] = [state.message, [op for op, _, _ in take()]]

# Refused: opening a face the engine does not know; the error reaches the panel
wm.swapline.last_error = ""
run(bpy.ops.swapline.mask_previews)  # previews off
run(bpy.ops.swapline.mask_edit, face_id=99)
[save_req] = take()  # face 13 is open with its label: saved first
out["saved_first"] = [save_req[1]["face"], len(save_req[1]["polygons"]), save_req[2]["then"]]
answer(save_req, {"face": 13, "count": 2})
[frame_req] = take()
answer(frame_req, code="not_found")
out["refused"] = [state.edit, state.face_id, wm.swapline.last_error]
draw("final")
link.state = EL.DISCONNECTED
_blender.disable()
_blender.emit(**out)
