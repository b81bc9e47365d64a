"""Blender layer: operators. Each one validates, sends one request through the link, and reports.

Nothing here waits for the engine: answers and job progress arrive through the drain in sync.py.
"""

from __future__ import annotations

import os

import bpy
from bpy.props import BoolProperty, EnumProperty, StringProperty

from . import consent, preferences, strips, sync
from .engine_link import CONNECTED, CONNECTING, LinkError
from .properties import ROLE_ITEMS


def _scene(context):
    return strips.sequencer_scene(context)


def ensure_link(op, context) -> bool:
    """Start connecting (or launching) when there is no link yet; False after reporting why not."""
    link = sync.link()
    if link.state in (CONNECTING, CONNECTED):
        return True
    config = preferences.link_config(context, _scene(context))
    if config.mode == "LOCAL" and not os.path.isfile(config.python):
        op.report({"ERROR"}, f"Engine Python not found: {config.python}. "
                             "Set 'Engine Python' in the Swapline add-on preferences.")
        return False
    if config.mode == "REMOTE" and not config.host:
        op.report({"ERROR"}, "Set the engine host in the Swapline add-on preferences")
        return False
    link.connect(config)
    return True


def request(op, context, engine_op: str, args: dict, tag: dict) -> bool:
    if not ensure_link(op, context):
        return False
    try:
        sync.link().request(engine_op, args, tag)
    except LinkError as exc:
        op.report({"ERROR"}, str(exc))
        return False
    return True


def send_requests(op, context, requests) -> set:
    """Send (engine_op, args, tag) requests in order; an operator's result set."""
    for engine_op, args, tag in requests:
        if not request(op, context, engine_op, args, tag):
            return {"CANCELLED"}
    return {"FINISHED"}


def _movie_strip(op, scene, role: str):
    """The strip marked `role`, checked to be a movie whose file exists; None after reporting."""
    strip = strips.find_role(scene, role)
    label = role.capitalize()
    if strip is None:
        op.report({"ERROR"}, f"No {label} strip marked: select a movie strip and press '{label}' "
                             "in the Swapline panel")
        return None
    if strip.type != "MOVIE":
        op.report({"ERROR"}, f"The {label} strip '{strip.name}' is not a movie strip")
        return None
    if len(strip.retiming_keys):
        op.report({"ERROR"}, f"The {label} strip '{strip.name}' has speed changes (retiming keys), which "
                             "Swapline cannot follow: reset its retiming")
        return None
    if not os.path.isfile(strips.video_path(strip)):
        op.report({"ERROR"}, f"The {label} strip's file is missing: {strips.video_path(strip)}")
        return None
    return strip


class SWAPLINE_OT_connect(bpy.types.Operator):
    """Launch the local engine or connect to the remote one (see the add-on preferences)"""

    bl_idname = "swapline.connect"
    bl_label = "Connect Engine"

    def execute(self, context):
        if sync.link().state in (CONNECTING, CONNECTED):
            self.report({"INFO"}, "Swapline engine already connected")
            return {"CANCELLED"}
        if not ensure_link(self, context):
            return {"CANCELLED"}
        return {"FINISHED"}


class SWAPLINE_OT_disconnect(bpy.types.Operator):
    """Close the engine connection; a local engine is stopped"""

    bl_idname = "swapline.disconnect"
    bl_label = "Disconnect Engine"

    def execute(self, context):
        sync.link().disconnect()
        return {"FINISHED"}


class SWAPLINE_OT_mark_role(bpy.types.Operator):
    """Mark the active strip as the Source (face to put in) or the Destination (shot to change)"""

    bl_idname = "swapline.mark_role"
    bl_label = "Mark Strip Role"
    bl_options = {"REGISTER", "UNDO"}

    role: EnumProperty(items=ROLE_ITEMS)
    # A Source strip's person is put into other footage: asked once per strip (stored on the strip).
    confirm: BoolProperty(name=consent.QUESTION, options={"SKIP_SAVE"},
                          description="Confirm that you have the right to use the likeness of the person in "
                                      "this strip (asked once per strip)")

    def _strip(self, context):
        strip = strips.active_strip(_scene(context))
        if strip is None:
            self.report({"ERROR"}, "No active strip: click a movie strip first")
            return None
        if self.role != "NONE" and strip.type != "MOVIE":
            self.report({"ERROR"}, f"'{strip.name}' is not a movie strip")
            return None
        return strip

    def invoke(self, context, event):
        strip = self._strip(context)
        if strip is None:
            return {"CANCELLED"}
        if self.role == "SOURCE" and not consent.confirmed(strip):
            return context.window_manager.invoke_props_dialog(self, title="Use this person's likeness?",
                                                              confirm_text="Mark as Source")
        return self.execute(context)

    def draw(self, context):
        layout = self.layout
        layout.label(text="Swapline puts the face in this strip into other footage.")
        layout.prop(self, "confirm")

    def execute(self, context):
        scene = _scene(context)
        strip = self._strip(context)
        if strip is None:
            return {"CANCELLED"}
        if self.role == "SOURCE" and not consent.confirmed(strip):
            if not self.confirm:
                self.report({"ERROR"}, f"Confirm that you have the right to use the likeness of the person in "
                                       f"'{strip.name}' to mark it as Source")
                return {"CANCELLED"}
            consent.confirm(strip)
        strips.set_role(scene, strip, self.role)
        return {"FINISHED"}


class SWAPLINE_OT_extract(bpy.types.Operator):
    """Extract the faces of the Source and Destination strips (within their in/out points)"""

    bl_idname = "swapline.extract"
    bl_label = "Extract Faces"

    which: EnumProperty(items=[("BOTH", "Both", ""), ("SOURCE", "Source", ""), ("DESTINATION", "Destination", "")],
                        default="BOTH")

    def execute(self, context):
        scene = _scene(context)
        settings = scene.swapline
        roles = ("SOURCE", "DESTINATION") if self.which == "BOTH" else (self.which,)
        facesets = {"SOURCE": settings.source_faceset, "DESTINATION": settings.destination_faceset}
        work = []
        for role in roles:
            strip = _movie_strip(self, scene, role)
            if strip is None:
                return {"CANCELLED"}
            if not facesets[role].strip():
                self.report({"ERROR"}, f"Name the {role.lower()} faceset first")
                return {"CANCELLED"}
            work.append((strip, facesets[role].strip()))
        for strip, faceset in work:
            start, end = strips.source_range(strip)
            params = {"video": strips.video_path(strip), "faceset": faceset, "frame_start": start,
                      "frame_end": end, "size": settings.face_size, "face_type": settings.face_type}
            tag = {"purpose": "extract", "kind": "extract", "label": f"Extract {faceset}"}
            if not request(self, context, "job.start", {"kind": "extract", "params": params}, tag):
                return {"CANCELLED"}
        self.report({"INFO"}, "Extracting faces: " + ", ".join(f"'{s.name}' → {f}" for s, f in work))
        return {"FINISHED"}


class SWAPLINE_OT_cancel_job(bpy.types.Operator):
    """Cancel this engine job"""

    bl_idname = "swapline.cancel_job"
    bl_label = "Cancel Job"

    job_id: StringProperty()
    kind: StringProperty()

    def execute(self, context):
        if self.job_id.startswith(("upload-", "download-")):  # a transfer's line in the job list
            if not sync.link().cancel_transfer(self.job_id):
                self.report({"ERROR"}, "No transfer to cancel: the engine is not connected")
                return {"CANCELLED"}
            return {"FINISHED"}
        tag = {"purpose": "cancel", "kind": self.kind or None, "label": "Cancel"}
        if not request(self, context, "job.cancel", {"id": self.job_id}, tag):
            return {"CANCELLED"}
        return {"FINISHED"}


class SWAPLINE_OT_report(bpy.types.Operator):
    """Show a message from the engine in Blender's status bar (used by the drain)"""

    bl_idname = "swapline.report"
    bl_label = "Swapline Report"
    bl_options = {"INTERNAL"}

    level: EnumProperty(items=[("INFO", "Info", ""), ("WARNING", "Warning", ""), ("ERROR", "Error", "")])
    message: StringProperty()

    def execute(self, context):
        self.report({self.level}, self.message)
        return {"FINISHED"}


classes = (SWAPLINE_OT_connect, SWAPLINE_OT_disconnect, SWAPLINE_OT_mark_role, SWAPLINE_OT_extract,
           SWAPLINE_OT_cancel_job, SWAPLINE_OT_report)
