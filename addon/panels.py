"""Blender layer: the Swapline tab in the Video Sequencer sidebar. Panels only draw."""

from __future__ import annotations

import bpy

from . import mirror, strips, sync

_STATE_ICONS = {"DISCONNECTED": "UNLINKED", "CONNECTING": "SORTTIME", "CONNECTED": "LINKED", "FAILED": "ERROR"}
_JOB_ICONS = {"queued": "SORTTIME", "running": "PLAY", "done": "CHECKMARK", "failed": "ERROR",
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
        row.label(text=job.label or job.kind, icon=_JOB_ICONS.get(job.state, "QUESTION"))
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
        if st.connection == "CONNECTED":
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
        col.prop(settings, "face_size")
        layout.operator("swapline.extract", icon="USER")
        _draw_jobs(layout, context, "extract", limit=2)


class SEQUENCER_PT_swapline_train(_SwaplinePanel, bpy.types.Panel):
    bl_label = "Train"
    bl_parent_id = "SEQUENCER_PT_swapline"

    def draw(self, context):
        layout = self.layout
        settings = strips.sequencer_scene(context).swapline
        col = layout.column(align=True)
        col.prop(settings, "model")
        col.prop(settings, "iterations")
        col.prop(settings, "time_budget")
        col.prop(settings, "resolution")
        col.prop(settings, "batch_size")
        if mirror.active_jobs(sync.status(context), "train"):
            layout.operator("swapline.train_stop", icon="PAUSE")
        else:
            layout.operator("swapline.train", icon="PLAY")
        _draw_jobs(layout, context, "train", limit=1)


class SEQUENCER_PT_swapline_merge(_SwaplinePanel, bpy.types.Panel):
    bl_label = "Merge"
    bl_parent_id = "SEQUENCER_PT_swapline"

    def draw(self, context):
        layout = self.layout
        settings = strips.sequencer_scene(context).swapline
        layout.prop(settings, "model")
        layout.operator("swapline.merge", icon="RENDER_RESULT")
        _draw_jobs(layout, context, "merge", limit=1)


classes = (SEQUENCER_PT_swapline, SEQUENCER_PT_swapline_strips, SEQUENCER_PT_swapline_extract,
           SEQUENCER_PT_swapline_train, SEQUENCER_PT_swapline_merge)
