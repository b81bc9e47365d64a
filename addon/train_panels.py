"""Blender layer: the Train panel's contents and its option sub-panels. Panels only draw.

The Train panel (panels.SEQUENCER_PT_swapline_train) draws `draw_train`: the model and preset, the
buttons, the followed job's numbers and its pictures. The options sit in sub-panels below it, one
per group of train_options (Model, Losses, Augmentation, GAN & Style, Phases, Run), closed at first.
"""

from __future__ import annotations

import bpy

from . import mirror, strips, sync, train_view
from .train_options import GROUPS, ON_SCENE, PRESET_ITEMS, group

KINDS = train_view.TRAIN_KINDS


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def draw_train(layout, context) -> None:
    scene = strips.sequencer_scene(context)
    settings = scene.swapline
    st = sync.status(context)
    state = st.train
    col = layout.column(align=True)
    col.prop(settings, "model")
    preset = next((text for key, text, _ in PRESET_ITEMS if key == settings.train.preset), "Preset")
    col.operator_menu_enum("swapline.train_preset", "preset", text=f"Preset: {preset}", icon="PRESET")
    live = mirror.active_jobs(st, *KINDS)
    _draw_buttons(layout, live[0] if live else None)
    if state.job_id:
        _draw_status(layout, state, mirror.find_job(st, state.job_id), settings.train.phase_mode)
    _draw_pictures(layout, state)
    row = layout.row(align=True)
    row.prop(settings.train, "dfm_path", text="")
    row.operator("swapline.train_export_dfm", text="Export .dfm", icon="EXPORT")


def _draw_buttons(layout, job) -> None:
    row = layout.row(align=True)
    if job is None:
        row.operator("swapline.train", text="Start", icon="PLAY")
        return
    if job.state == "paused":
        row.operator("swapline.train_command", text="Resume", icon="PLAY").command = "resume"
    else:
        row.operator("swapline.train_command", text="Pause", icon="PAUSE").command = "pause"
    row.operator("swapline.train_stop", text="Stop", icon="SNAP_FACE")
    row = layout.row(align=True)
    row.operator("swapline.train_command", text="Save Now", icon="FILE_TICK").command = "save"
    row.operator("swapline.train_command", text="Backup Now", icon="DUPLICATE").command = "backup"
    layout.operator("swapline.train_apply", icon="CHECKMARK")


def _draw_status(layout, state, job, phase_mode: str) -> None:
    """The followed job: numbers from its stats (state), progress and errors from its mirror (job)."""
    box = layout.box()
    title = f"{state.kind.capitalize() or 'Train'} {state.model}".strip()
    row = box.row()
    row.label(text=title, icon="PAUSE" if state.state == "paused" else "PLAY" if state.state == "running" else "INFO")
    row.label(text=state.state.capitalize())
    if state.phase:
        box.label(text=f"Phase: {state.phase} ({'auto' if phase_mode == 'AUTO' else 'manual'})")
    if job is not None and job.state in mirror.ACTIVE:
        box.progress(factor=job.progress, type="BAR", text=f"{job.progress * 100:.0f}%")
    if state.iteration >= 0:
        target = f" / {state.target}" if state.target > 0 else ""
        box.label(text=f"Iteration {state.iteration}{target}")
    if state.loss >= 0:
        sides = f" (src {state.src_loss:.4f} · dst {state.dst_loss:.4f})" if state.src_loss >= 0 else ""
        box.label(text=f"Loss {state.loss:.4f}{sides}")
    if state.samples_per_s >= 0:
        wait = f" · data wait {state.data_wait * 100:.0f}%" if state.data_wait >= 0 else ""
        box.label(text=f"{state.samples_per_s:.1f} samples/s{wait}")
    if state.eta >= 0:
        box.label(text=f"{_duration(state.eta)} to the target", icon="TIME")
    if job is not None and job.state == "failed":
        col = box.column()
        col.alert = True
        col.label(text=job.error_message or job.error_code or "failed", icon="ERROR")
    elif state.message and state.state not in ("running", "paused"):
        box.label(text=state.message)


def _draw_pictures(layout, state) -> None:
    if not (state.preview_path or state.graph_path):
        if state.job_id:
            layout.label(text="Pictures appear after the first preview", icon="IMAGE_DATA")
        return
    box = layout.box()
    row = box.row(align=True)
    row.label(text="Preview", icon="IMAGE_DATA")
    row.prop(state, "image_scale", text="")
    row.operator("swapline.train_images", text="", icon="FILE_REFRESH")
    for path, icon, which in ((state.preview_path, state.preview_icon, "PREVIEW"),
                              (state.graph_path, state.graph_icon, "GRAPH")):
        if not path:
            continue
        col = box.column(align=True)
        col.template_icon(icon_value=icon, scale=state.image_scale)
        col.operator("swapline.train_show_image", text="Open Loss Graph" if which == "GRAPH" else "Open Preview",
                     icon="WINDOW").which = which


class _OptionsPanel:
    bl_space_type = "SEQUENCE_EDITOR"
    bl_region_type = "UI"
    bl_category = "Swapline"
    bl_parent_id = "SEQUENCER_PT_swapline_train"
    bl_options = {"DEFAULT_CLOSED"}


def draw_options(layout, context, name: str) -> None:
    settings = strips.sequencer_scene(context).swapline
    layout.use_property_split = True
    layout.use_property_decorate = False
    col = layout.column(align=True)
    for option in group(name):
        if option.name in ON_SCENE:
            col.prop(settings, ON_SCENE[option.name])
        else:
            col.prop(settings.train, option.name)


def _options_panel(name: str) -> type:
    ident = "SEQUENCER_PT_swapline_train_" + "".join(c for c in name.lower() if c.isalnum())

    def draw(self, context):
        draw_options(self.layout, context, name)

    return type(ident, (_OptionsPanel, bpy.types.Panel), {"bl_label": name, "bl_idname": ident, "draw": draw})


classes = tuple(_options_panel(name) for name in GROUPS)
