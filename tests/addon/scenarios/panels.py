"""Draw every Swapline panel into a recording layout (background Blender has no real one) in the
states a user sees: disconnected, failed, connected with running, failed and finished jobs."""

import sys

import bpy

import _blender
import _layout

clip = sys.argv[1]
sync = _blender.enable()
EL = _blender.submodule("engine_link")
panels = _blender.submodule("panels")
scene = _blender.new_scene()
editor = scene.sequence_editor
strip = editor.strips.new_movie(name="Clip", filepath=clip, channel=1, frame_start=1)
recording = _layout.Recording()


def draw_all(state):
    before = len(recording.calls)
    for cls in panels.classes:
        recording.draw(cls)
    calls = recording.calls[before:]
    return {"state": state, "calls": len(calls), "progress": calls.count("progress")}


draws = [draw_all("empty")]
editor.active_strip = strip
strip.swapline_role = "DESTINATION"
sync.link().inbox.put(EL.Connection("FAILED", "Engine unreachable: nope"))
sync.drain(budget=None)
draws.append(draw_all("failed"))
sync.link().inbox.put(EL.Connection("CONNECTED", "Connected", {"name": "e", "version": "1", "device": "cpu",
                                                               "workspace": "/w"}))
for job in (
    {"id": "t", "kind": "train", "state": "running", "progress": 0.25, "eta": 30.0, "created": 3.0,
     "params": {"model": "m"}, "stats": {"iteration": 10, "loss": 0.5}, "message": "iteration 10"},
    {"id": "e", "kind": "extract", "state": "failed", "progress": 0.5, "created": 2.0, "params": {"faceset": "s"},
     "error": {"code": "no_faces", "message": "no faces"}},
    {"id": "m", "kind": "merge", "state": "done", "progress": 1.0, "created": 1.0, "params": {"model": "m"}},
):
    sync.link().inbox.put(EL.JobUpdate(job))
sync.drain(budget=None)
draws.append(draw_all("jobs"))
_blender.disable()
_blender.emit(draws=draws, problems=recording.problems)
