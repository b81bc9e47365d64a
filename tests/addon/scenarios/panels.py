"""Draw every Swapline panel into a recording layout (background Blender has no real one) in the
states a user sees: disconnected, failed, connected with running, failed and finished jobs."""

import sys
import types

import bpy

import _blender

clip = sys.argv[1]
sync = _blender.enable()
EL = _blender.submodule("engine_link")
panels = _blender.submodule("panels")
scene = _blender.new_scene()
editor = scene.sequence_editor
strip = editor.strips.new_movie(name="Clip", filepath=clip, channel=1, frame_start=1)
problems = []


class OperatorProps:
    def __init__(self, idname):
        object.__setattr__(self, "_rna", getattr(bpy.ops.swapline, idname.split(".")[1]).get_rna_type())

    def __setattr__(self, name, value):
        if name not in self._rna.properties:
            problems.append(f"operator {self._rna.identifier} has no property {name}")


class Layout:
    def __init__(self, log):
        object.__setattr__(self, "log", log)

    def __setattr__(self, name, value):  # alert, enabled, use_property_split, ...
        if name not in ("alert", "enabled", "use_property_split", "use_property_decorate", "active"):
            problems.append(f"layout attribute {name}")

    def __getattr__(self, name):
        def method(*args, **kwargs):
            self.log.append(name)
            if name == "prop" and args[1] not in args[0].bl_rna.properties:
                problems.append(f"{args[0]} has no property {args[1]}")
            if name == "operator":
                if args[0].split(".")[1] not in dir(bpy.ops.swapline):
                    problems.append(f"no operator {args[0]}")
                    return Layout(self.log)
                return OperatorProps(args[0])
            if name == "progress" and not 0.0 <= kwargs["factor"] <= 1.0:
                problems.append(f"progress factor {kwargs['factor']}")
            if name == "label" and not isinstance(kwargs.get("text", ""), str):
                problems.append("label text")
            return Layout(self.log)
        return method


def draw_all(state):
    log = []
    for cls in panels.classes:
        cls.draw(types.SimpleNamespace(layout=Layout(log)), bpy.context)
    return {"state": state, "calls": len(log), "progress": log.count("progress")}


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
_blender.emit(draws=draws, problems=problems)
