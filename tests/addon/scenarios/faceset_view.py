"""The faceset browser without an engine: the panel's hints (disconnected, not loaded, no such
faceset), answers written into the view, thumbnails (local files and a remote engine's paths),
stale pages, selection, and the requests each faceset operator sends, follow-ups included.

The link is stood in for: its state says connected and `request` records instead of sending;
answers are put on its inbox as the worker thread would.
"""

import os
import sys
import time

import bpy

import _blender
import _layout

folder = sys.argv[1]
sync = _blender.enable()
EL = _blender.submodule("engine_link")
panels = _blender.submodule("panels")
thumbnails = _blender.submodule("thumbnails")
faceset_view = _blender.submodule("faceset_view")
scene = _blender.new_scene()
wm = bpy.context.window_manager
view = wm.swapline.faceset
out = {}


def draw(name):
    recording = _layout.Recording().draw(panels.SEQUENCER_PT_swapline_faceset)
    out[name] = {"labels": recording.labels, "icons": len(recording.icons), "problems": recording.problems,
                 "operators": sorted({idname for idname, _ in recording.operators})}
    return recording


def answer(sent_item, result=None, code=None):
    op, _args, tag = sent_item
    message = EL.RequestFailed(op, code, f"{code}!", tag) if code else EL.Reply(op, result, tag)
    sync.link().inbox.put(message)


def run(operator, **kwargs):
    result, error = _blender.call(operator, **kwargs)
    return error or sorted(result)


def jpg(name, size, value):
    image = bpy.data.images.new(name, size, size)
    image.pixels.foreach_set([value, value * 0.5, 0.2, 1.0] * size * size)
    image.filepath_raw = os.path.join(folder, f"{name}.jpg")
    image.file_format = "JPEG"
    image.save()
    return image.filepath_raw


draw("disconnected")

# A connected link that records what would be sent
link = sync.link()
sent = []
link.state = EL.CONNECTED
link.request = lambda op, args=None, tag=None: sent.append((op, dict(args or {}), dict(tag or {})))
link.inbox.put(EL.Connection(EL.CONNECTED, "Connected", {"name": "e", "version": "1", "device": "cpu",
                                                         "workspace": folder}))
sync.drain(budget=None)
out["on_connect"] = [[op, tag.get("auto")] for op, _, tag in sent]
sent.clear()
view.state = "NONE"  # as if the automatic refresh had not been answered: the panel asks for Refresh
draw("not_loaded")

out["refresh"] = run(bpy.ops.swapline.faceset_refresh)
out["refresh_sent"] = [[op, args] for op, args, _ in sent]
draw("loading")
list_req, tracks_req, faces_req = sent
sent.clear()
answer(list_req, {"facesets": [{"name": "destination", "faces": 3, "frames": 3, "tracks": 1}]})
answer(tracks_req, code="not_found")
answer(faces_req, code="not_found")
sync.drain(budget=None)
out["missing_state"] = [view.state, wm.swapline.last_error, len(view.faces)]
draw("missing")

# The faceset exists: 6 faces on this machine, one only on a remote engine's
images = [jpg(f"face{i}", 40, i / 6) for i in range(6)]
remote = "/remote/engine/workspace/faces/source/000099_0.jpg"
run(bpy.ops.swapline.faceset_refresh)
list_req, tracks_req, faces_req = sent
sent.clear()
faces = [{"id": 10 + i, "media_id": 1, "frame": i, "track": 1 + i % 2, "image": path, "yaw": 1.0, "pitch": -2.0,
          "roll": 0.0, "sharpness": 50.0 + i, "brightness": 100.0, "score": 0.9} for i, path in enumerate(images)]
faces.append(dict(faces[0], id=99, frame=99, image=remote))
answer(list_req, {"facesets": [{"name": "source", "face_type": "full", "size": 40, "faces": 7, "frames": 7,
                                "tracks": 2}]})
answer(tracks_req, {"tracks": [
    {"track": 1, "media_id": 1, "faces": 4, "first": 0, "last": 99, "sharpness": 52.0, "chosen": True,
     "face_id": 10, "image": images[0], "person": None},
    {"track": 2, "media_id": 1, "faces": 3, "first": 1, "last": 5, "sharpness": 53.0, "chosen": False,
     "face_id": 11, "image": images[1], "person": 2}]})
answer(faces_req, {"faces": faces, "total": 7})
while not link.inbox.empty():  # apply the answers, then load thumbnails with no time to spare
    sync.apply(link.inbox.get())
out["one_per_tick"] = faceset_view.load_thumbnails(view, deadline=time.monotonic())
out["after_one_tick"] = sum(f.thumbnail != "PENDING" for f in (*view.tracks, *view.faces))
sync.drain(budget=None)
out["ready_state"] = {
    "state": view.state, "counts": [view.face_count, view.frame_count, view.track_count, view.total],
    "faces": [[f.face_id, f.frame, f.track, f.thumbnail] for f in view.faces],
    "tracks": [[t.track, t.faces, t.chosen, t.thumbnail] for t in view.tracks],
    "preview_sizes": [list(thumbnails.preview(thumbnails.PAGE, f.image).image_size)
                      for f in view.faces if f.thumbnail == "LOADED"],
    "icon_ids": [f.icon_id for f in view.faces],
}
draw("ready")

# Sorting asks for a new page; an answer to the older request is dropped
out["sort"] = run(bpy.ops.swapline.faceset_sort, sort="sharpness")
[new_page] = sent
sent.clear()
answer(faces_req, {"faces": faces[:1], "total": 1})  # the older generation
sync.drain(budget=None)
out["stale_kept"] = len(view.faces)
answer(new_page, {"faces": list(reversed(faces)), "total": 7})
sync.drain(budget=None)
out["sorted"] = [new_page[1]["sort"], [f.face_id for f in view.faces][:2]]

# Selection lives on the WindowManager and outlasts pages
run(bpy.ops.swapline.faceset_select, face_id=12)
run(bpy.ops.swapline.faceset_select, face_id=13)
run(bpy.ops.swapline.faceset_select, face_id=12)
out["selected"] = sorted(faceset_view.selected_ids(view))
run(bpy.ops.swapline.faceset_select, action="PAGE")
out["selected_page"] = len(view.selection)
run(bpy.ops.swapline.faceset_select, action="NONE")
out["delete_nothing"] = run(bpy.ops.swapline.faceset_delete)
for face_id in (13, 14):
    run(bpy.ops.swapline.faceset_select, face_id=face_id)
out["delete"] = run(bpy.ops.swapline.faceset_delete)
[delete_req] = sent
sent.clear()
answer(delete_req, {"deleted": 2})
sync.drain(budget=None)
out["delete_sent"] = [delete_req[0], delete_req[1]]
out["after_delete"] = [view.message, len(view.selection), [op for op, _, _ in sent]]
sent.clear()

# Best N: the engine's `drop` is deleted next
out["best"] = run(bpy.ops.swapline.faceset_best, count=3)
[best_req] = sent
sent.clear()
answer(best_req, {"keep": [10, 11, 12], "drop": [15, 99]})
sync.drain(budget=None)
out["best_sent"] = [best_req[0], best_req[1], [[op, args] for op, args, _ in sent]]
sent.clear()

# Keep only the chosen person: the other tracks' faces are asked for, then deleted
out["keep"] = run(bpy.ops.swapline.faceset_keep_chosen)
[keep_req] = sent
sent.clear()
answer(keep_req, {"faces": faces, "total": 7})
sync.drain(budget=None)
out["keep_sent"] = [keep_req[0], keep_req[1], [[op, args] for op, args, _ in sent]]
sent.clear()

# Choosing people
out["choose_add"] = run(bpy.ops.swapline.faceset_choose, track=2)
out["choose_none"] = run(bpy.ops.swapline.faceset_choose, track=1)  # the only chosen one: refused
out["choose_auto"] = run(bpy.ops.swapline.faceset_choose, automatic=True)
out["choose_person"] = run(bpy.ops.swapline.faceset_choose, track=2, whole_person=True)
out["persons"] = [t.person for t in view.tracks]
out["choose_sent"] = [[op, args] for op, args, _ in sent]
answer(sent[0], {"tracks": []})
sent.clear()
sync.drain(budget=None)
out["after_choose"] = [view.message, [op for op, _, _ in sent]]
sent.clear()

# Pages: 48 a page; a page emptied by deletions steps back
view.total = 100
out["pages"] = [run(bpy.ops.swapline.faceset_page, step=1), view.offset,
                run(bpy.ops.swapline.faceset_page, step=1), view.offset,
                run(bpy.ops.swapline.faceset_page, step=1), view.offset]
last_page = sent[-1]
sent.clear()
answer(last_page, {"faces": [], "total": 50})
sync.drain(budget=None)
out["stepped_back"] = [view.offset, [args["offset"] for _, args, _ in sent]]
sent.clear()

# Failures: the add-on's own (automatic) requests only note it in the panel; a user's is an error
wm.swapline.last_error = ""
auto = faceset_view.show(view, "source", auto=True)
answer(auto[1], code="unknown_op")
sync.drain(budget=None)
out["auto_failure"] = [view.message, wm.swapline.last_error]
answer(faceset_view.show(view, "source")[1], code="internal")
sync.drain(budget=None)
out["user_failure"] = wm.swapline.last_error

# An extraction into the faceset on show refreshes it when it is done
sent.clear()
job = {"id": "x1", "kind": "extract", "state": "running", "params": {"faceset": "source"}, "created": 1.0}
link.inbox.put(EL.JobUpdate(job))
sync.drain(budget=None)
link.inbox.put(EL.JobUpdate(dict(job, state="done")))
sync.drain(budget=None)
out["after_extract"] = [[op, tag.get("auto")] for op, _, tag in sent]

# Remote images keep a placeholder; switching facesets clears the page and its previews
out["remote"] = [f.thumbnail for f in view.faces if f.image == remote]
sent.clear()
out["browse"] = run(bpy.ops.swapline.faceset_browse, which="DESTINATION")
out["browse_sent"] = [[op, args.get("faceset")] for op, args, _ in sent]
out["browse_view"] = [view.faceset, len(view.faces), len(view.selection), view.state]
wm.swapline.last_error = ""
answer(auto[2], code="internal")  # a late answer about the faceset no longer on show
sync.drain(budget=None)
out["late_answer"] = [view.faceset, view.state, wm.swapline.last_error]

link.state = EL.DISCONNECTED
_blender.disable()
out["previews_left"] = sorted(thumbnails._collections)
_blender.emit(**out)
