"""Blender layer: the faceset browser's operators. Each validates, sends the requests faceset_view
builds, and reports; the answers arrive through the drain in sync.py, which writes the view.

Deleting operators ask first (a confirmation, or a dialog for Best N): deleted faces leave the
engine's catalog and their images leave the disk.
"""

from __future__ import annotations

import bpy
from bpy.props import BoolProperty, EnumProperty, IntProperty

from . import faceset_view, strips, sync
from .operators import ensure_link, request, send_requests
from .properties import FACESET_ITEMS, SHOW_ITEMS, SORT_ITEMS


def _view(context):
    return sync.status(context).faceset


def _on_show(op, view) -> str | None:
    """The name of the faceset on show, or None after reporting that none is."""
    if view.state != "READY" or not view.faceset:
        op.report({"ERROR"}, "No faceset on show: extract faces, then press Refresh in the Faceset panel")
        return None
    return view.faceset


def _refresh(op, context) -> set:
    view = _view(context)
    name = faceset_view.faceset_name(view, strips.sequencer_scene(context).swapline)
    if not name:
        op.report({"ERROR"}, f"Name the {view.which.lower()} faceset first (Extract panel)")
        return {"CANCELLED"}
    if not ensure_link(op, context):
        return {"CANCELLED"}
    return send_requests(op, context, faceset_view.show(view, name))


class SWAPLINE_OT_faceset_refresh(bpy.types.Operator):
    """Load the faceset's counts, people and faces from the engine"""

    bl_idname = "swapline.faceset_refresh"
    bl_label = "Refresh Faceset"

    def execute(self, context):
        return _refresh(self, context)


class SWAPLINE_OT_faceset_browse(bpy.types.Operator):
    """Browse the source or the destination faceset"""

    bl_idname = "swapline.faceset_browse"
    bl_label = "Browse Faceset"

    which: EnumProperty(items=FACESET_ITEMS)

    def execute(self, context):
        _view(context).which = self.which
        return _refresh(self, context)


class _PageChange:
    """Operators that change what the page shows: they ask for that page only."""

    def send_page(self, context) -> set:
        view = _view(context)
        if _on_show(self, view) is None:
            return {"CANCELLED"}
        return send_requests(self, context, faceset_view.page(view))


class SWAPLINE_OT_faceset_sort(_PageChange, bpy.types.Operator):
    """Sort the faces on show"""

    bl_idname = "swapline.faceset_sort"
    bl_label = "Sort Faces"

    sort: EnumProperty(name="Sort", items=SORT_ITEMS)

    def execute(self, context):
        view = _view(context)
        view.sort, view.offset = self.sort, 0
        return self.send_page(context)


class SWAPLINE_OT_faceset_show(_PageChange, bpy.types.Operator):
    """Show the chosen person's faces, everyone's, or one track's"""

    bl_idname = "swapline.faceset_show"
    bl_label = "Show Faces"

    show: EnumProperty(name="Show", items=SHOW_ITEMS)
    track: IntProperty(description="With 'One Track': which")

    def execute(self, context):
        view = _view(context)
        view.show, view.track, view.offset = self.show, self.track, 0
        return self.send_page(context)


class SWAPLINE_OT_faceset_page(_PageChange, bpy.types.Operator):
    """Show the next or the previous page of faces"""

    bl_idname = "swapline.faceset_page"
    bl_label = "Faces Page"

    step: IntProperty(default=1, description="Pages to move: 1 next, -1 previous")

    def execute(self, context):
        view = _view(context)
        last = max(0, (view.total - 1) // faceset_view.PAGE_SIZE * faceset_view.PAGE_SIZE)
        offset = min(max(view.offset + self.step * faceset_view.PAGE_SIZE, 0), last)
        if offset == view.offset:
            return {"CANCELLED"}
        view.offset = offset
        return self.send_page(context)


class SWAPLINE_OT_faceset_select(bpy.types.Operator):
    """Select or deselect this face"""

    bl_idname = "swapline.faceset_select"
    bl_label = "Select Face"
    bl_options = {"INTERNAL"}

    face_id: IntProperty()
    action: EnumProperty(items=[("TOGGLE", "Toggle", "Select or deselect one face"),
                                ("PAGE", "Page", "Select every face of this page"),
                                ("NONE", "None", "Deselect every face")], default="TOGGLE")

    def execute(self, context):
        view = _view(context)
        if self.action == "NONE":
            view.selection.clear()
        elif self.action == "PAGE":
            faceset_view.set_selected(view, [face.face_id for face in view.faces], True)
        else:
            selected = self.face_id in faceset_view.selected_ids(view)
            faceset_view.set_selected(view, [self.face_id], not selected)
        return {"FINISHED"}


class SWAPLINE_OT_faceset_choose(bpy.types.Operator):
    """Make this track part of the faceset's person, or not (training uses the person's faces)"""

    bl_idname = "swapline.faceset_choose"
    bl_label = "Choose Person"

    track: IntProperty()
    automatic: BoolProperty(description="Let the engine pick: the person seen most, or each shot's longest track")
    whole_person: BoolProperty(description="Choose every track of this track's person, and only those")

    def execute(self, context):
        view = _view(context)
        name = _on_show(self, view)
        if name is None:
            return {"CANCELLED"}
        tracks = None
        if self.whole_person:
            person = next((t.person for t in view.tracks if t.track == self.track), 0)
            tracks = sorted(t.track for t in view.tracks if person and t.person == person) or [self.track]
        elif not self.automatic:
            chosen = {t.track for t in view.tracks if t.chosen} ^ {self.track}
            if not chosen:
                self.report({"ERROR"}, "Keep at least one track chosen, or press Automatic")
                return {"CANCELLED"}
            tracks = sorted(chosen)
        return send_requests(self, context, [faceset_view.choose(name, tracks)])


class SWAPLINE_OT_faceset_delete(bpy.types.Operator):
    """Delete the selected faces from the faceset (their images too)"""

    bl_idname = "swapline.faceset_delete"
    bl_label = "Delete Selected Faces"

    def invoke(self, context, event):
        count = len(_view(context).selection)
        if not count:
            return self.execute(context)  # nothing to confirm: execute says what is missing
        return context.window_manager.invoke_confirm(
            self, event, title="Delete Faces", confirm_text="Delete", icon="WARNING",
            message=f"Delete {count} selected face{'s' if count != 1 else ''} and their images?")

    def execute(self, context):
        view = _view(context)
        name = _on_show(self, view)
        if name is None:
            return {"CANCELLED"}
        selected = faceset_view.selected_ids(view)
        if not selected:
            self.report({"ERROR"}, "No faces selected: click faces in the grid first")
            return {"CANCELLED"}
        return send_requests(self, context, [faceset_view.delete(name, sorted(selected))])


class SWAPLINE_OT_faceset_keep_chosen(bpy.types.Operator):
    """Delete the faces of every track that is not chosen: only the faceset's person stays"""

    bl_idname = "swapline.faceset_keep_chosen"
    bl_label = "Keep Only Chosen Person"

    def invoke(self, context, event):
        others = [t for t in _view(context).tracks if not t.chosen]
        if not others:
            return self.execute(context)
        count = sum(t.faces for t in others)
        return context.window_manager.invoke_confirm(
            self, event, title="Keep Only the Chosen Person", confirm_text="Delete", icon="WARNING",
            message=f"Delete {count} faces of {len(others)} other track{'s' if len(others) != 1 else ''}?")

    def execute(self, context):
        view = _view(context)
        if _on_show(self, view) is None:
            return {"CANCELLED"}
        keep = faceset_view.keep_chosen(view)
        if keep is None:
            self.report({"INFO"}, "Only the chosen person's faces are in the faceset")
            return {"CANCELLED"}
        return send_requests(self, context, [keep])


class SWAPLINE_OT_faceset_best(bpy.types.Operator):
    """Keep the best faces of the faceset (sharp, varied poses) and delete the rest"""

    bl_idname = "swapline.faceset_best"
    bl_label = "Keep Best Faces"

    count: IntProperty(name="Faces to Keep", default=200, min=1, soft_max=5000)

    def invoke(self, context, event):
        return context.window_manager.invoke_props_dialog(self, title="Keep the Best Faces",
                                                          confirm_text="Delete the Rest")

    def draw(self, context):
        self.layout.prop(self, "count")
        self.layout.label(text="The other faces and their images are deleted.", icon="ERROR")

    def execute(self, context):
        name = _on_show(self, _view(context))
        if name is None:
            return {"CANCELLED"}
        return send_requests(self, context, [faceset_view.best(name, self.count)])


classes = (SWAPLINE_OT_faceset_refresh, SWAPLINE_OT_faceset_browse, SWAPLINE_OT_faceset_sort,
           SWAPLINE_OT_faceset_show, SWAPLINE_OT_faceset_page, SWAPLINE_OT_faceset_select,
           SWAPLINE_OT_faceset_choose, SWAPLINE_OT_faceset_delete, SWAPLINE_OT_faceset_keep_chosen,
           SWAPLINE_OT_faceset_best)
