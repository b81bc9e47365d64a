"""Blender layer: merge operators. Merge Shot (the job, with every option and its keyframes), a
preview of the current frame, keyframing an option, and resetting options.

The shot is the active strip's destination (the shot itself, its face layer or its matte), else the
strip marked Destination; its options live on it (`strip.swapline_merge`, merge_settings.py).
Each operator validates, sends one request, and reports; the job's progress and its result arrive
through the drain in sync.py, which places the face layer and the matte (strips.place_result).
"""

from __future__ import annotations

import os

import bpy
from bpy.props import BoolProperty, EnumProperty, StringProperty

from . import live_preview, merge_settings, strips, sync
from .merge_options import GROUPS, group
from .operators import ensure_link, request

_GROUP_ITEMS = [("ALL", "All", "Every merge option")] + [(name, name, f"The {name} options") for name in GROUPS]


def _destination(op, context):
    """The shot to merge, checked to be a usable movie strip; None after reporting."""
    scene = strips.sequencer_scene(context)
    shot = live_preview.target(scene)
    if shot is None:
        op.report({"ERROR"}, "No Destination strip marked: select the shot and press 'Destination' in the "
                             "Swapline panel")
        return None
    if shot.type != "MOVIE":
        op.report({"ERROR"}, f"'{shot.name}' is not a movie strip")
        return None
    if len(shot.retiming_keys):
        op.report({"ERROR"}, f"'{shot.name}' has speed changes (retiming keys), which Swapline cannot follow: "
                             "reset its retiming")
        return None
    if not os.path.isfile(strips.video_path(shot)):
        op.report({"ERROR"}, f"The shot's file is missing: {strips.video_path(shot)}")
        return None
    return shot


def job_params(context, scene, destination) -> dict:
    """The merge job's params: the shot's frames, every option with its keys, the outputs, and (local
    engine) the output folder the live preview shares."""
    settings = scene.swapline
    start, end = strips.source_range(destination)
    outputs = ["layer", "matte"]
    extra = scene.swapline_merge_outputs
    outputs += [name for name in ("frames", "video") if getattr(extra, name)]
    params = {"model": settings.model.strip(), "video": strips.video_path(destination),
              "faceset": settings.destination_faceset.strip(), "frame_start": start, "frame_end": end,
              "settings": merge_settings.settings_for(scene, destination, (start, end)), "outputs": outputs}
    if live_preview.is_local(context):
        params["output"] = live_preview.merge_folder(scene, destination, context)
    return params


class SWAPLINE_OT_merge_shot(bpy.types.Operator):
    """Merge every frame the shot shows with the trained model and these options (keyframed ones
    change over the shot); the face layer lands over the shot, with its matte"""

    bl_idname = "swapline.merge_shot"
    bl_label = "Merge Shot"

    def execute(self, context):
        scene = strips.sequencer_scene(context)
        settings = scene.swapline
        destination = _destination(self, context)
        if destination is None:
            return {"CANCELLED"}
        for what, value in (("model", settings.model), ("destination faceset", settings.destination_faceset)):
            if not value.strip():
                self.report({"ERROR"}, f"Set the {what} name first")
                return {"CANCELLED"}
        problem = merge_settings.mask_problem(destination)
        if problem:
            self.report({"ERROR"}, problem)
            return {"CANCELLED"}
        if not ensure_link(self, context):  # the output folder depends on where the engine runs
            return {"CANCELLED"}
        params = job_params(context, scene, destination)
        tag = {"purpose": "merge", "kind": "merge", "label": f"Merge {params['model']}",
               "scene": scene.name, "destination": destination.name}
        live_preview.merge_starting(scene, destination)  # no preview writes into the job's files meanwhile
        if not request(self, context, "job.start", {"kind": "merge", "params": params}, tag):
            live_preview.merge_starting(scene, destination, done=True)
            return {"CANCELLED"}
        animated = sorted(params["settings"]["keys"])
        keys = f", animated: {', '.join(animated)}" if animated else ""
        self.report({"INFO"}, f"Merging '{destination.name}' (frames {params['frame_start']}-"
                              f"{params['frame_end'] - 1}{keys})")
        return {"FINISHED"}


class SWAPLINE_OT_merge_preview(bpy.types.Operator):
    """Merge the current frame now and show it in the face layer strip (what Live Preview does on
    every frame change)"""

    bl_idname = "swapline.merge_preview"
    bl_label = "Preview Frame"

    def execute(self, context):
        scene = strips.sequencer_scene(context)
        if live_preview.destination_of(scene, strips.active_strip(scene)) is None:
            self.report({"ERROR"}, "Select the face layer strip or its destination first")
            return {"CANCELLED"}
        if not ensure_link(self, context):
            return {"CANCELLED"}
        live = live_preview.state(context)
        if not live.enabled:
            live.enabled = True  # the toggle's update asks for the current frame
        elif not live_preview.request(context, scene):
            self.report({"ERROR"}, live.message or "Nothing to preview")
            return {"CANCELLED"}
        return {"FINISHED"}


class SWAPLINE_OT_merge_keyframe(bpy.types.Operator):
    """Keyframe this merge option at the current frame (Shift: delete its key here); keyed options
    change over the shot, in the preview and in Merge Shot"""

    bl_idname = "swapline.merge_keyframe"
    bl_label = "Keyframe Merge Option"
    bl_options = {"REGISTER", "UNDO"}

    option: StringProperty()
    delete: BoolProperty(name="Delete", description="Delete the key at the current frame instead")

    def invoke(self, context, event):
        self.delete = self.delete or event.shift
        return self.execute(context)

    def execute(self, context):
        from .merge_options import BY_NAME

        scene = strips.sequencer_scene(context)
        shot = live_preview.target(scene)
        option = BY_NAME.get(self.option)
        if shot is None or option is None or not option.animatable:
            self.report({"ERROR"}, f"'{self.option}' cannot be keyframed" if shot else "No Destination strip")
            return {"CANCELLED"}
        if not merge_settings.keyframe(scene, shot, self.option, delete=self.delete):
            self.report({"INFO"}, f"No key of {option.label} at frame {scene.frame_current}")
            return {"CANCELLED"}
        return {"FINISHED"}


class SWAPLINE_OT_merge_reset(bpy.types.Operator):
    """Set the shot's merge options back to their defaults (and remove their keyframes)"""

    bl_idname = "swapline.merge_reset"
    bl_label = "Reset Merge Options"
    bl_options = {"REGISTER", "UNDO"}

    group: EnumProperty(name="Options", items=_GROUP_ITEMS, default="ALL")
    keys: BoolProperty(name="Remove Keyframes", default=True,
                       description="Also delete the options' keyframes (else they keep animating them)")

    def execute(self, context):
        scene = strips.sequencer_scene(context)
        shot = live_preview.target(scene)
        if shot is None:
            self.report({"ERROR"}, "No Destination strip")
            return {"CANCELLED"}
        names = None if self.group == "ALL" else {o.name for o in group(self.group)}
        if self.keys:
            merge_settings.clear_keys(scene, shot, names)
        merge_settings.reset(shot, names)
        return {"FINISHED"}


class SWAPLINE_OT_merge_live(bpy.types.Operator):
    """Turn Live Preview on or off: while on, each frame change re-merges the frame on show"""

    bl_idname = "swapline.merge_live"
    bl_label = "Live Preview"

    def execute(self, context):
        live = live_preview.state(context)
        if not live.enabled and not ensure_link(self, context):
            return {"CANCELLED"}
        live.enabled = not live.enabled
        return {"FINISHED"}


classes = (SWAPLINE_OT_merge_shot, SWAPLINE_OT_merge_preview, SWAPLINE_OT_merge_keyframe, SWAPLINE_OT_merge_reset,
           SWAPLINE_OT_merge_live)
