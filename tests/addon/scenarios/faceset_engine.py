"""The faceset browser against a real local engine: a two-person clip is extracted, the view fills
itself (people, a page of faces, thumbnails), and choosing, paging, sorting, deleting, Best N and
Keep Only Chosen Person reach the engine. What the engine holds is checked with requests of our own
through the same link, not through the view.
"""

import sys

import bpy

import _blender
import _layout

clip, workspace = sys.argv[1:3]
sync = _blender.enable()
EL = _blender.submodule("engine_link")
panels = _blender.submodule("panels")
thumbnails = _blender.submodule("thumbnails")
faceset_view = _blender.submodule("faceset_view")
scene = _blender.new_scene(fps=10)
scene.swapline.workspace = workspace
scene.swapline.face_size = 64
strip = scene.sequence_editor.strips.new_movie(name="Two", filepath=clip, channel=1, frame_start=1)
scene.sequence_editor.active_strip = strip
bpy.ops.swapline.mark_role(role="SOURCE", confirm=True)
wm = bpy.context.window_manager
view = wm.swapline.faceset
out = {}

# Answers to our own checking requests are taken out before the drain applies anything else
answers = {}
_apply = sync.apply


def apply(message):
    tag = getattr(message, "tag", None) or {}
    if tag.get("purpose") == "check":
        answers[tag["n"]] = message.result if isinstance(message, EL.Reply) else {"error": message.code}
    else:
        _apply(message)


sync.apply = apply


def engine(op, **args):
    n = len(answers) + 1
    sync.link().request(op, args, {"purpose": "check", "n": n, "kind": "check"})
    _blender.check(_blender.drain_until(sync, lambda: n in answers, 60), f"no answer to {op}")
    return answers[n]


def settle():
    """Drain until no faceset request (follow-ups included) is unanswered or unapplied."""
    while True:
        sync.wait_for_jobs("faceset", timeout=120)
        if not sync.drain(budget=None) and not any(t.get("kind") == "faceset" for t in sync.link().pending_tags()):
            return


def run(operator, **kwargs):
    result, error = _blender.call(operator, **kwargs)
    settle()
    return error or sorted(result)


def draw(name):
    recording = _layout.Recording().draw(panels.SEQUENCER_PT_swapline_faceset)
    out[name] = {"labels": recording.labels, "icons": recording.icons, "problems": recording.problems}


def people():
    return {t["track"]: t["chosen"] for t in engine("faceset.tracks", faceset="source")["tracks"]}


def total(**args):
    return engine("faceset.faces", faceset="source", limit=1000, **args)["total"]


draw("disconnected")
bpy.ops.swapline.connect()
sync.wait_for_connection(timeout=180)
settle()  # connecting refreshes the view by itself
out["before_extract_state"] = [view.faceset, view.state, wm.swapline.last_error]
draw("before_extract")

bpy.ops.swapline.extract(which="SOURCE")
[extracted] = sync.wait_for_jobs("extract", timeout=300)
settle()  # the finished extraction refreshes the view by itself
out["extracted"] = {"state": extracted["state"], "faces": (extracted.get("result") or {}).get("faces")}
out["view"] = {
    "state": view.state, "counts": [view.face_count, view.frame_count, view.track_count, view.total],
    "tracks": [[t.track, t.faces, t.chosen, t.thumbnail] for t in view.tracks],
    "faces": [[f.face_id, f.track, f.thumbnail] for f in view.faces],
    "preview_sizes": sorted({tuple(thumbnails.preview(thumbnails.PAGE, f.image).image_size) for f in view.faces}),
    "people_previews": [tuple(thumbnails.preview(thumbnails.PEOPLE, t.image).image_size) for t in view.tracks],
}
out["engine_after_extract"] = {"everyone": total(everyone=True), "person": total(), "people": people()}
draw("ready")

# Paging and sorting show exactly what the engine answers for the same question
faceset_view.PAGE_SIZE = 4
out["everyone"] = run(bpy.ops.swapline.faceset_show, show="EVERYONE")
first = [f.face_id for f in view.faces]
out["next"] = run(bpy.ops.swapline.faceset_page, step=1)
second = [f.face_id for f in view.faces]
expected = engine("faceset.faces", faceset="source", everyone=True, sort="frame", limit=4, offset=4)["faces"]
out["pages"] = {"first": first, "second": second, "expected": [f["id"] for f in expected],
                "offset": view.offset, "total": view.total}
out["sort"] = run(bpy.ops.swapline.faceset_sort, sort="sharpness")
expected = engine("faceset.faces", faceset="source", everyone=True, sort="sharpness", limit=4, offset=0)["faces"]
out["sorted"] = {"view": [f.face_id for f in view.faces], "engine": [f["id"] for f in expected],
                 "offset": view.offset}

# Choosing people round-trips: add the other track, drop the first, back to automatic
chosen = [t.track for t in view.tracks if t.chosen]
other = [t.track for t in view.tracks if not t.chosen][0]
out["choose"] = [run(bpy.ops.swapline.faceset_choose, track=other), people(),
                 {t.track: t.chosen for t in view.tracks}]
out["unchoose"] = [run(bpy.ops.swapline.faceset_choose, track=chosen[0]), people(),
                   {t.track: t.chosen for t in view.tracks}]
out["automatic"] = [run(bpy.ops.swapline.faceset_choose, automatic=True), people()]
out["chosen_at_first"] = chosen
# An explicit choice from here on: deleting faces can change which track is the longest
run(bpy.ops.swapline.faceset_choose, track=other)
out["explicit"] = [run(bpy.ops.swapline.faceset_choose, track=other), people()]

# Delete two selected faces of the chosen person
run(bpy.ops.swapline.faceset_show, show="CHOSEN")
run(bpy.ops.swapline.faceset_sort, sort="frame")
before = {"everyone": total(everyone=True), "person": total()}
doomed = [f.face_id for f in view.faces][:2]
for face_id in doomed:
    run(bpy.ops.swapline.faceset_select, face_id=face_id)
out["delete"] = run(bpy.ops.swapline.faceset_delete)
left = {f["id"] for f in engine("faceset.faces", faceset="source", everyone=True, limit=1000)["faces"]}
out["deleted"] = {"before": before, "after": {"everyone": total(everyone=True), "person": total()},
                  "gone": not (set(doomed) & left), "view": [view.face_count, view.total, len(view.selection)],
                  "message": view.message}

# Best 3 of the chosen person, then only the chosen person
out["best"] = run(bpy.ops.swapline.faceset_best, count=3)
out["after_best"] = {"person": total(), "everyone": total(everyone=True), "view_total": view.total,
                     "message": view.message}
out["keep"] = run(bpy.ops.swapline.faceset_keep_chosen)
out["after_keep"] = {"person": total(), "everyone": total(everyone=True), "people": people(),
                     "view": [view.face_count, view.track_count, len(view.tracks)], "message": view.message}
draw("final")
out["last_error"] = wm.swapline.last_error

_blender.disable()
out["previews_left"] = sorted(thumbnails._collections)
_blender.emit(**out)
