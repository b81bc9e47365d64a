"""Blender layer: mask operators. Drawing labels (open, save, step, clear), learning masks (train,
apply, remove) and previews in the faceset grid. The matte's operators are in matte_operators.py.

Each validates, sends the requests mask_view builds (or a job.start), and reports; the answers
arrive through the drain in sync.py.
"""

from __future__ import annotations

import bpy
from bpy.props import EnumProperty, IntProperty

from . import mask_editor, mask_view, mirror, strips, sync
from .operators import request, send_requests
from .properties import MASK_SPACE_ITEMS

def _status(context):
    return sync.status(context)


def _settings(context):
    return strips.sequencer_scene(context).swapline


def _faceset_on_show(op, context) -> str | None:
    view = _status(context).faceset
    if view.state != "READY" or not view.faceset:
        op.report({"ERROR"}, "No faceset on show: load one in the Faceset panel first")
        return None
    return view.faceset


def target_facesets(context) -> list[str]:
    """The facesets mask learning works on: those of the marked Source and Destination strips, else
    the faceset on show."""
    scene = strips.sequencer_scene(context)
    settings = scene.swapline
    names = [name.strip() for role, name in (("SOURCE", settings.source_faceset),
                                             ("DESTINATION", settings.destination_faceset))
             if strips.find_role(scene, role) is not None and name.strip()]
    view = _status(context).faceset
    if not names and view.faceset:
        names = [view.faceset]
    return list(dict.fromkeys(names))


def _read_open_mask(op, state) -> list[dict] | None:
    mask = bpy.data.masks.get(mask_editor.MASK_NAME)
    if mask is None:
        op.report({"ERROR"}, f"The mask '{mask_editor.MASK_NAME}' is gone: press Edit Mask again")
        return None
    polygons, skipped = mask_editor.read_mask(mask, state.space.lower(), state.width or 1, state.height or 1)
    if skipped:
        op.report({"WARNING"}, "Not saved: " + "; ".join(skipped))
    return polygons


def _open(op, context, face_id: int, space: str) -> set:
    """Open `face_id`, saving the face open now first."""
    state = _status(context).masks
    name = _faceset_on_show(op, context)
    if name is None:
        return {"CANCELLED"}
    mask_editor.open_editor(context)
    is_open = state.edit == "OPEN" and state.face_id >= 0
    polygons = _read_open_mask(op, state) if is_open else []
    if polygons is None:
        return {"CANCELLED"}
    if is_open and (polygons or state.face_id in mask_view.labelled_ids(state)):  # what is drawn, or its removal
        requests = [mask_view.save(state, polygons, then=face_id, then_space=space)]
    else:  # nothing drawn on a face without a label: nothing to store
        state.face_id, state.open_faceset = face_id, name
        requests = mask_view.open_face(state, name, face_id, space)
    state.open_faceset = name
    return send_requests(op, context, requests)


class SWAPLINE_OT_mask_refresh(bpy.types.Operator):
    """Count the labelled faces of the faceset on show"""

    bl_idname = "swapline.mask_refresh"
    bl_label = "Refresh Labels"

    def execute(self, context):
        name = _faceset_on_show(self, context)
        if name is None:
            return {"CANCELLED"}
        return send_requests(self, context, [mask_view.count(name)])


class SWAPLINE_OT_mask_edit(bpy.types.Operator):
    """Draw the mask of the selected face (or the first unlabelled one) in the Image Editor's Mask mode"""

    bl_idname = "swapline.mask_edit"
    bl_label = "Edit Mask"

    face_id: IntProperty(default=-1, description="The face to open; -1: the selected or first unlabelled face")

    def execute(self, context):
        status = _status(context)
        face_id = self.face_id if self.face_id >= 0 else mask_view.first_to_label(status.faceset, status.masks)
        if face_id is None:
            self.report({"ERROR"}, "No faces on show: load the faceset in the Faceset panel")
            return {"CANCELLED"}
        return _open(self, context, face_id, _settings(context).masks.space)


class SWAPLINE_OT_mask_step(bpy.types.Operator):
    """Save this face's mask and open the previous or next face of the page"""

    bl_idname = "swapline.mask_step"
    bl_label = "Next Face"

    step: IntProperty(default=1, description="1: next face, -1: previous face")

    def execute(self, context):
        status = _status(context)
        state = status.masks
        if state.edit != "OPEN":
            self.report({"ERROR"}, "No face open: press Edit Mask first")
            return {"CANCELLED"}
        view = status.faceset
        face_id = mask_view.neighbour(view, state.face_id, self.step)
        if face_id is not None:
            return _open(self, context, face_id, state.space)
        more = view.offset + len(view.faces) < view.total if self.step > 0 else view.offset > 0
        if not more:
            self.report({"INFO"}, f"This is the {'last' if self.step > 0 else 'first'} face")
            return {"CANCELLED"}
        polygons = _read_open_mask(self, state)  # saved, then the page turns and its nearest face opens
        if polygons is None:
            return {"CANCELLED"}
        step = 1 if self.step > 0 else -1
        if not polygons and state.face_id not in mask_view.labelled_ids(state):
            return send_requests(self, context, mask_view.turn_page(view, state, step, state.space))
        return send_requests(self, context, [mask_view.save(state, polygons, page_step=step)])


class SWAPLINE_OT_mask_space(bpy.types.Operator):
    """Draw on the aligned face or on the whole frame (an open face is saved and reopened)"""

    bl_idname = "swapline.mask_space"
    bl_label = "Draw On"

    space: EnumProperty(items=MASK_SPACE_ITEMS)

    def execute(self, context):
        _settings(context).masks.space = self.space
        state = _status(context).masks
        if state.edit == "OPEN" and state.space != self.space:
            return _open(self, context, state.face_id, self.space)
        return {"FINISHED"}


class SWAPLINE_OT_mask_save(bpy.types.Operator):
    """Store the drawn polygons as this face's label (include layers add, exclude layers cut out)"""

    bl_idname = "swapline.mask_save"
    bl_label = "Save Mask"

    def execute(self, context):
        state = _status(context).masks
        if state.edit != "OPEN":
            self.report({"ERROR"}, "No face open: press Edit Mask first")
            return {"CANCELLED"}
        polygons = _read_open_mask(self, state)
        if polygons is None:
            return {"CANCELLED"}
        return send_requests(self, context, [mask_view.save(state, polygons)])


class SWAPLINE_OT_mask_clear(bpy.types.Operator):
    """Delete the open (or selected) face's drawn label; learned and landmark masks are used again"""

    bl_idname = "swapline.mask_clear"
    bl_label = "Clear Label"

    def invoke(self, context, event):
        return context.window_manager.invoke_confirm(self, event, title="Clear Label", confirm_text="Clear",
                                                     message="Delete this face's drawn polygons?")

    def execute(self, context):
        status = _status(context)
        state = status.masks
        if state.edit == "OPEN":
            face_id, name = state.face_id, state.open_faceset
        else:  # nothing open: the face selected in the grid
            selected = sorted(item.face_id for item in status.faceset.selection)
            face_id, name = (selected[0] if selected else None), status.faceset.faceset
        if face_id is None or not name:
            self.report({"ERROR"}, "Open a face with Edit Mask, or select one in the faceset grid")
            return {"CANCELLED"}
        return send_requests(self, context, [mask_view.clear(name, face_id)])


class SWAPLINE_OT_mask_previews(bpy.types.Operator):
    """Show the faces with their masks overlaid (drawn, learned or landmark), or the plain faces"""

    bl_idname = "swapline.mask_previews"
    bl_label = "Show Masks"

    def execute(self, context):
        status = _status(context)
        state = status.masks
        if state.show_previews:
            state.show_previews = False
            return {"FINISHED"}
        if _faceset_on_show(self, context) is None:
            return {"CANCELLED"}
        state.show_previews = True
        return send_requests(self, context, mask_view.previews(state, status.faceset.faces))


def start_job(op, context, kind: str, params: dict, label: str, **extra) -> bool:
    """Send job.start for `kind`; the tag's purpose is `kind` unless given."""
    tag = {"purpose": extra.pop("purpose", kind), "kind": kind, "label": label, **extra}
    return request(op, context, "job.start", {"kind": kind, "params": params}, tag)


class SWAPLINE_OT_mask_train(bpy.types.Operator):
    """Train the mask model further on the labelled faces of the Source and Destination facesets"""

    bl_idname = "swapline.mask_train"
    bl_label = "Train Mask Model"

    def execute(self, context):
        settings = _settings(context).masks
        facesets = target_facesets(context)
        if not facesets:
            self.report({"ERROR"}, "Mark a Source or Destination strip, or load a faceset, first")
            return {"CANCELLED"}
        if mirror.active_jobs(_status(context), "mask_train"):
            self.report({"ERROR"}, "The mask model is already training")
            return {"CANCELLED"}
        # "more", not "iterations": a model trained before would otherwise be at its count already
        # and train nothing on the labels added since
        params = {"model": settings.model.strip() or "xseg", "facesets": facesets,
                  "resolution": int(settings.resolution), "more": settings.iterations,
                  "max_seconds": settings.minutes * 60.0 if settings.minutes > 0 else None}
        if not start_job(self, context, "mask_train", params, "Train masks"):
            return {"CANCELLED"}
        self.report({"INFO"}, f"Training the mask model on {', '.join(facesets)}")
        return {"FINISHED"}


class SWAPLINE_OT_mask_apply(bpy.types.Operator):
    """Apply the trained mask model to every face of the Source and Destination facesets"""

    bl_idname = "swapline.mask_apply"
    bl_label = "Apply Mask Model"

    def execute(self, context):
        model = _settings(context).masks.model.strip() or "xseg"
        facesets = target_facesets(context)
        if not facesets:
            self.report({"ERROR"}, "Mark a Source or Destination strip, or load a faceset, first")
            return {"CANCELLED"}
        for name in facesets:
            if not start_job(self, context, "mask_apply", {"model": model, "faceset": name}, f"Apply masks to {name}"):
                return {"CANCELLED"}
        return {"FINISHED"}


class SWAPLINE_OT_mask_remove(bpy.types.Operator):
    """Delete the learned masks of the Source and Destination facesets (drawn labels stay)"""

    bl_idname = "swapline.mask_remove"
    bl_label = "Remove Learned Masks"

    def invoke(self, context, event):
        names = ", ".join(target_facesets(context)) or "no faceset"
        return context.window_manager.invoke_confirm(
            self, event, title="Remove Learned Masks", icon="WARNING", confirm_text="Remove",
            message=f"Remove the learned masks of {names}? Drawn labels stay.")

    def execute(self, context):
        facesets = target_facesets(context)
        if not facesets:
            self.report({"ERROR"}, "Mark a Source or Destination strip, or load a faceset, first")
            return {"CANCELLED"}
        return send_requests(self, context, [mask_view.remove(name) for name in facesets])


classes = (SWAPLINE_OT_mask_refresh, SWAPLINE_OT_mask_edit, SWAPLINE_OT_mask_step, SWAPLINE_OT_mask_space,
           SWAPLINE_OT_mask_save, SWAPLINE_OT_mask_clear, SWAPLINE_OT_mask_previews, SWAPLINE_OT_mask_train,
           SWAPLINE_OT_mask_apply, SWAPLINE_OT_mask_remove)
