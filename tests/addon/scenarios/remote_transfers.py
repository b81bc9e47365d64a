"""A remote engine (loopback, its own workspace) gets the clips by content hash and sends the merge
back: mark roles, extract (uploads), extract again (no upload: known here; after a reconnect: the
engine says it has the clip), merge the shot; the result lands next to the saved .blend and its
strips point at the downloaded files."""

import os
import sys
import time

import bpy

import _blender
from _serve import free_port, serve

source_clip, shot_clip, engine_ws, project = sys.argv[1:5]
sync = _blender.enable()
live_preview = _blender.submodule("live_preview")
matte = _blender.submodule("matte")
results = _blender.submodule("remote_results")
scene = _blender.new_scene(fps=12)
editor = scene.sequence_editor
src = editor.strips.new_movie(name="Src", filepath=source_clip, channel=1, frame_start=1)
shot = editor.strips.new_movie(name="Shot", filepath=shot_clip, channel=3, frame_start=1)
scene.render.resolution_x, scene.render.resolution_y = shot.elements[0].orig_width, shot.elements[0].orig_height
settings = scene.swapline
settings.source_faceset, settings.destination_faceset, settings.model = "s2", "d2", "m"
settings.face_size = 128
st = bpy.context.window_manager.swapline
out = {"upload_lines": []}
_apply_transfer = results.apply_transfer


def _recording_apply(status, message):
    """Every line an upload posts, as the drain applies it (a fast upload's lines are replaced
    within one drain, so sampling the job list would miss them)."""
    if message.key.startswith("upload") and message.message not in out["upload_lines"]:
        out["upload_lines"].append(message.message)
    return _apply_transfer(status, message)


results.apply_transfer = _recording_apply  # sync calls it through the module
bpy.ops.wm.save_as_mainfile(filepath=os.path.join(project, "edit.blend"))
for strip, role in ((src, "SOURCE"), (shot, "DESTINATION")):
    editor.active_strip = strip
    _blender.check(bpy.ops.swapline.mark_role(role=role, confirm=True) == {"FINISHED"}, f"mark {role}")

port, token_file = free_port(), os.path.join(project, "..", "engine-token")
with open(token_file, "w") as f:
    f.write("s3cret")
engine = serve(engine_ws, port, token_file)
prefs = _blender.preferences()
prefs.engine_mode, prefs.host, prefs.port, prefs.token = "REMOTE", "127.0.0.1", port, "s3cret"
bpy.ops.swapline.connect()
sync.wait_for_connection(timeout=60)


def extract(which):
    """Extract and wait, noting the upload lines the job list shows meanwhile."""
    before = len(results.transfers())
    out.setdefault("extract_ops", []).append(sorted(bpy.ops.swapline.extract(which=which)))
    deadline = time.monotonic() + 300
    while sync._busy("extract") and time.monotonic() < deadline:
        sync.drain(budget=None)
        time.sleep(0.01)
    jobs = sync.wait_for_jobs("extract", timeout=60)
    return [[j["state"], j["params"]["video"], (j.get("result") or {}).get("faces")] for j in jobs], \
        results.transfers()[before:]


out["first"], out["first_transfers"] = extract("BOTH")
out["again"], out["again_transfers"] = extract("DESTINATION")
bpy.ops.swapline.disconnect()
_blender.drain_until(sync, lambda: st.connection == "DISCONNECTED", 30)
bpy.ops.swapline.connect()
sync.wait_for_connection(timeout=60)
out["reconnected"], out["reconnected_transfers"] = extract("DESTINATION")

editor.active_strip = shot
t = time.monotonic()
out["merge_op"] = sorted(bpy.ops.swapline.merge_shot())
[merged] = sync.wait_for_jobs("merge", timeout=400)
out["merge_s"] = time.monotonic() - t
out["merged"] = {k: merged.get(k) for k in ("id", "state", "error", "params", "result")}
out["merge_transfers"] = [t for t in results.transfers() if t["key"].startswith("download-")]
layer = live_preview.layer_strip(scene, shot)
found = matte.matte_of(scene, "Shot")
out["layer"] = None if layer is None else {
    "directory": bpy.path.abspath(layer.directory), "blend": layer.blend_type,
    "files": [os.path.join(bpy.path.abspath(layer.directory), e.filename) for e in layer.elements],
    "start": layer.frame_final_start, "end": layer.frame_final_end}
out["matte"] = None if found is None else {
    "directory": bpy.path.abspath(found.directory),
    "files": [os.path.join(bpy.path.abspath(found.directory), e.filename) for e in found.elements]}
out["results_folder"] = _blender.submodule("strips").results_folder(str(merged["id"]))
out["last_error"] = st.last_error
bpy.ops.swapline.disconnect()
_blender.drain_until(sync, lambda: st.connection == "DISCONNECTED", 30)
engine.terminate()
engine.wait(30)
_blender.emit(**out)
