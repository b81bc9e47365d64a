"""Blender layer: the Quality panel under Merge: Evaluate, the summary sheet and the headline figures.
Panels only draw; what they show is the shot's `swapline_evaluation` (evaluate_state.py).

FIGURES says how each headline figure of the report (engine/evaluate/types.py HEADLINE_KEYS) reads
in the panel: a test checks that it shows every one of them.
"""

from __future__ import annotations

import bpy

from . import live_preview, mirror, strips, sync
from .evaluate_state import PENDING, headline

SAME_PERSON = 0.6  # dlib's distance under which two faces are taken for one person


def _number(value, digits: int = 2, unit: str = "") -> str:
    return "n/a" if value is None else f"{value:.{digits}f}{unit}"


def _share(value) -> str:
    return "n/a" if value is None else f"{value * 100:.0f} %"


# (label, headline keys, text of their values): one line each, in the order drawn
FIGURES = (
    ("Closer to source", ("closer_to_source",), lambda v: f"{_share(v[0])} of frames"),
    ("Identity distance", ("identity_to_source", "identity_to_destination"),
     lambda v: f"source {_number(v[0])} · destination {_number(v[1])} (same person < {SAME_PERSON})"),
    ("Landmarks", ("landmark_distance",), lambda v: f"{_number(v[0], 3)} × eye distance"),
    ("Pose difference", ("yaw_difference", "pitch_difference", "roll_difference"),
     lambda v: f"yaw {_number(v[0], 1, '°')} · pitch {_number(v[1], 1, '°')} · roll {_number(v[2], 1, '°')}"),
    ("Flicker", ("flicker_ratio",), lambda v: f"{_number(v[0])} × the shot's own"),
    ("Seam colour", ("seam_colour", "seam_colour_destination"),
     lambda v: f"ΔE {_number(v[0], 1)} (shot {_number(v[1], 1)})"),
    ("Seam gradient", ("seam_gradient_ratio",), lambda v: f"{_number(v[0])} × the shot's"),
    ("SSIM held back", ("ssim_source_held_back", "ssim_destination_held_back"),
     lambda v: f"source {_number(v[0], 3)} · destination {_number(v[1], 3)}" if v != [None, None] else
     "n/a: train a new model with Hold Back above 0"),
    ("Faces found", ("faces_found",), lambda v: _share(v[0])),
)


def figure_lines(figures: dict) -> list[tuple[str, str]]:
    """(label, text) of each figure line; a figure missing or not a number reads n/a."""
    def value(key):
        found = figures.get(key)
        return float(found) if isinstance(found, (int, float)) and not isinstance(found, bool) else None

    return [(label, text([value(k) for k in keys])) for label, keys, text in FIGURES]


def draw_quality(layout, context) -> None:
    scene = strips.sequencer_scene(context)
    shot = live_preview.target(scene) if scene is not None else None
    if shot is None or shot.type != "MOVIE":
        layout.label(text="Select a merged shot to evaluate it", icon="INFO")
        return
    evaluation = shot.swapline_evaluation
    row = layout.row()
    row.enabled = evaluation.state not in PENDING
    row.operator("swapline.evaluate", icon="VIEWZOOM")
    if evaluation.state in PENDING:
        _draw_progress(layout.box(), context, evaluation)
    elif evaluation.state == "FAILED":
        col = layout.column()
        col.alert = True
        col.label(text=evaluation.message or "Evaluation failed", icon="ERROR")
    if evaluation.headline:
        _draw_result(layout, scene, shot, evaluation)


def _draw_progress(box, context, evaluation) -> None:
    job = mirror.find_job(sync.status(context), evaluation.job_id) if evaluation.job_id else None
    row = box.row(align=True)
    row.label(text=evaluation.label or "Evaluate", icon="SORTTIME" if job is None else "PLAY")
    if job is not None and job.state in mirror.ACTIVE:
        op = row.operator("swapline.cancel_job", text="", icon="X")
        op.job_id, op.kind = job.job_id, job.kind
        box.progress(factor=job.progress, type="BAR", text=f"{job.progress * 100:.0f}%")
    if evaluation.message:
        box.label(text=evaluation.message)


def _draw_result(layout, scene, shot, evaluation) -> None:
    box = layout.box()
    layer = live_preview.layer_strip(scene, shot)
    if layer is not None and layer.swapline_job and evaluation.merge_job and layer.swapline_job != evaluation.merge_job:
        box.label(text="Merged again since: press Evaluate for the new result", icon="ERROR")
    image = bpy.data.images.get(evaluation.image) if evaluation.image else None
    if image is not None and image.preview is not None and image.preview.icon_id:
        box.template_icon(icon_value=image.preview.icon_id, scale=12.0)
    row = box.row(align=True)
    row.enabled = image is not None or bool(evaluation.sheet)  # Open Sheet loads it again if the file lost it
    row.operator("swapline.evaluate_open", icon="IMAGE_DATA")
    col = box.column(align=True)
    for label, text in figure_lines(headline(evaluation)):
        split = col.split(factor=0.4, align=True)
        split.label(text=label)
        split.label(text=text)


class SEQUENCER_PT_swapline_quality(bpy.types.Panel):
    bl_space_type = "SEQUENCE_EDITOR"
    bl_region_type = "UI"
    bl_category = "Swapline"
    bl_parent_id = "SEQUENCER_PT_swapline_merge"
    bl_label = "Quality"

    def draw(self, context):
        draw_quality(self.layout, context)


classes = (SEQUENCER_PT_swapline_quality,)
