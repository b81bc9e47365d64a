"""Blender layer: the Swapline tab in the Video Sequencer sidebar. Panels only draw."""

from __future__ import annotations

import bpy

from . import faceset_view, mask_view, merge_panels, mirror, strips, sync, train_panels
from .preferences import get_preferences
from .properties import SORT_ITEMS

_STATE_ICONS = {"DISCONNECTED": "UNLINKED", "CONNECTING": "SORTTIME", "CONNECTED": "LINKED", "FAILED": "ERROR"}
_JOB_TITLES = {"mask_train": "Train masks", "mask_apply": "Apply masks", "mask_matte": "Face matte"}
_JOB_ICONS = {"queued": "SORTTIME", "running": "PLAY", "paused": "PAUSE", "done": "CHECKMARK", "failed": "ERROR",
              "cancelled": "CANCEL"}


class _SwaplinePanel:
    bl_space_type = "SEQUENCE_EDITOR"
    bl_region_type = "UI"
    bl_category = "Swapline"


def _draw_jobs(layout, context, kind: str, limit: int) -> None:
    jobs = sorted((j for j in sync.status(context).jobs if j.kind == kind), key=lambda j: j.created, reverse=True)
    for job in jobs[:limit]:
        box = layout.box()
        row = box.row(align=True)
        row.label(text=_JOB_TITLES.get(job.kind) or job.label or job.kind, icon=_JOB_ICONS.get(job.state, "QUESTION"))
        row.label(text=job.state.capitalize())
        if job.state in mirror.ACTIVE:
            op = row.operator("swapline.cancel_job", text="", icon="X")
            op.job_id, op.kind = job.job_id, job.kind
            text = f"{job.progress * 100:.0f}%"
            if job.eta >= 0:
                text += f"  ·  {job.eta:.0f} s left"
            box.progress(factor=job.progress, type="BAR", text=text)
        if job.iteration >= 0:
            loss = f"  ·  loss {job.loss:.4f}" if job.loss >= 0 else ""
            box.label(text=f"Iteration {job.iteration}{loss}")
        if job.state == "failed":
            col = box.column()
            col.alert = True
            col.label(text=job.error_message or job.error_code or "failed", icon="ERROR")
        elif job.message and job.state in mirror.ACTIVE:
            box.label(text=job.message)


def _engine_load(st) -> tuple[int, int]:
    """Jobs running and queued on the connected engine, as engine.info's load counts them.

    Read from the mirrored jobs: the engine sends every job change to every client and the job list
    on connect, so this stays current without asking engine.info again.
    """
    states = [job.state for job in st.jobs]
    return sum(s in ("running", "paused") for s in states), states.count("queued")


class SEQUENCER_PT_swapline(_SwaplinePanel, bpy.types.Panel):
    bl_label = "Swapline"

    def draw(self, context):
        layout = self.layout
        st = sync.status(context)
        row = layout.row()
        row.label(text=st.connection_message or st.connection.capitalize(),
                  icon=_STATE_ICONS.get(st.connection, "QUESTION"))
        if st.connection in ("CONNECTED", "CONNECTING"):
            row.operator("swapline.disconnect", text="", icon="CANCEL")
        else:
            row.operator("swapline.connect", text="", icon="PLAY")
        prefs = get_preferences(context)
        if st.connection == "CONNECTED" and prefs.engine_mode == "REMOTE":
            # A shared engine: what it runs on and how busy it is decide whether to queue work there.
            col = layout.column(align=True)
            col.label(text=f"{st.engine_name} {st.engine_version}".strip(), icon="LOCKED" if prefs.use_tls else "URL")
            col.label(text=st.engine_device, icon="MEMORY")
            running, queued = _engine_load(st)
            col.label(text=f"Load: {running} running, {queued} queued", icon="SORTTIME")
            col.label(text=st.engine_workspace, icon="FILE_FOLDER")
        elif st.connection == "CONNECTED":
            col = layout.column(align=True)
            col.label(text=f"{st.engine_name} {st.engine_version} on {st.engine_device}".strip())
            col.label(text=st.engine_workspace, icon="FILE_FOLDER")
        else:
            layout.prop(strips.sequencer_scene(context).swapline, "workspace")
        if st.last_error:
            col = layout.column()
            col.alert = True
            col.label(text=st.last_error, icon="ERROR")


class SEQUENCER_PT_swapline_strips(_SwaplinePanel, bpy.types.Panel):
    bl_label = "Strips"
    bl_parent_id = "SEQUENCER_PT_swapline"

    def draw(self, context):
        layout = self.layout
        scene = strips.sequencer_scene(context)
        active = strips.active_strip(scene)
        if active is not None:
            layout.label(text=active.name, icon="SEQUENCE")
            row = layout.row(align=True)
            for role, text in (("SOURCE", "Source"), ("DESTINATION", "Destination"), ("NONE", "Clear")):
                sub = row.row(align=True)
                sub.enabled = active.swapline_role != role
                sub.operator("swapline.mark_role", text=text, depress=active.swapline_role == role).role = role
        else:
            layout.label(text="Select a movie strip to mark it")
        col = layout.column(align=True)
        for role in ("SOURCE", "DESTINATION"):
            strip = strips.find_role(scene, role)
            col.label(text=f"{role.capitalize()}: {strip.name if strip else '—'}",
                      icon="CHECKMARK" if strip else "DOT")


class SEQUENCER_PT_swapline_extract(_SwaplinePanel, bpy.types.Panel):
    bl_label = "Extract"
    bl_parent_id = "SEQUENCER_PT_swapline"

    def draw(self, context):
        layout = self.layout
        settings = strips.sequencer_scene(context).swapline
        col = layout.column(align=True)
        col.prop(settings, "source_faceset", text="Source")
        col.prop(settings, "destination_faceset", text="Destination")
        col.prop(settings, "face_type")
        col.prop(settings, "face_size")
        layout.operator("swapline.extract", icon="USER")
        _draw_jobs(layout, context, "extract", limit=2)


class SEQUENCER_PT_swapline_faceset(_SwaplinePanel, bpy.types.Panel):
    bl_label = "Faceset"
    bl_parent_id = "SEQUENCER_PT_swapline"

    def draw(self, context):
        layout = self.layout
        st = sync.status(context)
        view = st.faceset
        row = layout.row(align=True)
        for which, text in (("SOURCE", "Source"), ("DESTINATION", "Destination")):
            row.operator("swapline.faceset_browse", text=text, depress=view.which == which).which = which
        row.operator("swapline.faceset_refresh", text="", icon="FILE_REFRESH")
        name = faceset_view.faceset_name(view, strips.sequencer_scene(context).swapline)
        hint = _faceset_hint(st, view, name)
        if hint:
            layout.label(text=hint, icon="INFO")
            return
        counts = (_count(view.face_count, "face"), _count(view.frame_count, "frame"), _count(view.track_count, "track"))
        layout.label(text=" · ".join(counts), icon="USER")
        if view.message:
            layout.label(text=view.message)
        _draw_people(layout.box(), view)
        _draw_faces(layout.box(), view, st.masks)


def _faceset_hint(st, view, name: str) -> str:
    """What to do before there is anything to browse; '' when there is."""
    if not name:
        return f"Name the {view.which.lower()} faceset in the Extract panel"
    if st.connection != "CONNECTED":
        return "Connect the engine to browse the faceset"
    if view.faceset != name or view.state == "NONE":
        return f"Press Refresh to load '{name}'"
    if view.state == "LOADING":
        return f"Loading '{name}'…"
    if view.state == "MISSING":
        return f"No faces in '{name}' yet: extract them first"
    return ""


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _thumbnail(layout, item, scale: float) -> None:
    if item.thumbnail == "LOADED" and item.icon_id:
        layout.template_icon(icon_value=item.icon_id, scale=scale)
    else:  # not loaded yet, or (remote engine) not on this machine
        layout.template_icon(icon_value=_builtin_icon("TIME" if item.thumbnail == "PENDING" else "USER"),
                             scale=scale)


def _builtin_icon(name: str) -> int:
    return bpy.types.UILayout.bl_rna.functions["label"].parameters["icon"].enum_items[name].value


def _draw_people(box, view) -> None:
    row = box.row()
    row.label(text="People", icon="COMMUNITY")
    row.operator("swapline.faceset_choose", text="Automatic").automatic = True
    for track in view.tracks:
        row = box.row(align=True)
        _thumbnail(row.column(), track, 1.5)
        col = row.column(align=True)
        who = f"Person {track.person} · " if track.person else ""
        col.label(text=f"{who}Track {track.track}: {_count(track.faces, 'face')}")
        col.label(text=f"Frames {track.first}–{track.last}")
        op = row.operator("swapline.faceset_choose", text="", depress=track.chosen,
                          icon="CHECKBOX_HLT" if track.chosen else "CHECKBOX_DEHLT")
        op.track, op.automatic = track.track, False
        if track.person:
            op = row.operator("swapline.faceset_choose", text="", icon="USER")
            op.track, op.automatic, op.whole_person = track.track, False, True
        showing = view.show == "TRACK" and view.track == track.track
        op = row.operator("swapline.faceset_show", text="", icon="HIDE_OFF", depress=showing)
        op.show, op.track = ("CHOSEN", 0) if showing else ("TRACK", track.track)
    if any(not track.chosen for track in view.tracks):
        box.operator("swapline.faceset_keep_chosen", icon="TRASH")


def _draw_faces(box, view, masks) -> None:
    row = box.row(align=True)
    for show, text in (("CHOSEN", "Person"), ("EVERYONE", "Everyone")):
        row.operator("swapline.faceset_show", text=text, depress=view.show == show).show = show
    sort = next(text for key, text, _ in SORT_ITEMS if key == view.sort)
    row.operator_menu_enum("swapline.faceset_sort", "sort", text=sort, icon="SORTSIZE")
    row = box.row(align=True)
    row.prop(view, "thumbnail_scale")
    row.operator("swapline.mask_previews", text="Show Masks", icon="MOD_MASK", depress=masks.show_previews)
    if not view.faces:
        box.label(text="No faces to show")
        return
    selected = faceset_view.selected_ids(view)
    labelled = mask_view.labelled_ids(masks) if masks.faceset == view.faceset else set()
    grid = box.grid_flow(row_major=True, columns=0, even_columns=True, even_rows=True, align=True)
    for face in view.faces:
        cell = grid.column(align=True)
        overlay = mask_view.preview_of(masks, face.face_id) if masks.show_previews else None
        _thumbnail(cell, overlay or face, view.thumbnail_scale)
        # a drawn label shows as a pen on the face's button
        op = cell.operator("swapline.faceset_select", text=f"{face.frame} · t{face.track}",
                           depress=face.face_id in selected,
                           icon=_face_icon(face.face_id, labelled, masks))
        op.face_id, op.action = face.face_id, "TOGGLE"
    row = box.row(align=True)
    row.operator("swapline.faceset_page", text="", icon="TRIA_LEFT").step = -1
    last = min(view.offset + len(view.faces), view.total)
    row.label(text=f"{view.offset + 1}–{last} of {view.total}")
    row.operator("swapline.faceset_page", text="", icon="TRIA_RIGHT").step = 1
    row = box.row(align=True)
    row.label(text=f"{len(view.selection)} selected")
    row.operator("swapline.faceset_select", text="", icon="SELECT_SET").action = "PAGE"
    row.operator("swapline.faceset_select", text="", icon="X").action = "NONE"
    col = box.column(align=True)
    sub = col.row(align=True)
    sub.enabled = bool(view.selection)
    sub.operator("swapline.faceset_delete", icon="TRASH")
    col.operator("swapline.faceset_best", icon="SOLO_ON")


def _face_icon(face_id: int, labelled: set, masks) -> str:
    """The face open in the mask editor, a face with a drawn label, or none."""
    if masks.edit != "NONE" and masks.face_id == face_id:
        return "EDITMODE_HLT"
    return "GREASEPENCIL" if face_id in labelled else "NONE"


class SEQUENCER_PT_swapline_train(_SwaplinePanel, bpy.types.Panel):
    bl_label = "Train"
    bl_parent_id = "SEQUENCER_PT_swapline"

    def draw(self, context):
        train_panels.draw_train(self.layout, context)  # the options are its sub-panels (train_panels.py)
        _draw_jobs(self.layout, context, "export_dfm", limit=1)


class SEQUENCER_PT_swapline_merge(_SwaplinePanel, bpy.types.Panel):
    bl_label = "Merge"
    bl_parent_id = "SEQUENCER_PT_swapline"

    def draw(self, context):
        merge_panels.draw_merge(self.layout, context)  # the options are its sub-panels (merge_panels.py)
        _draw_jobs(self.layout, context, "merge", limit=1)


classes = (SEQUENCER_PT_swapline, SEQUENCER_PT_swapline_strips, SEQUENCER_PT_swapline_extract,
           SEQUENCER_PT_swapline_faceset, SEQUENCER_PT_swapline_train, SEQUENCER_PT_swapline_merge)
