"""Blender layer: a shot's evaluation as saved with the .blend (`strip.swapline_evaluation`).

What was asked (the merge judged, the output folder named for the engine) and what came of it (the
engine's job, the sheet and report on this machine, the headline figures as JSON). The drain
(evaluate_drain.py) is the only writer once the operator has asked; the Quality panel only reads.
"""

from __future__ import annotations

import json

import bpy
from bpy.props import EnumProperty, PointerProperty, StringProperty

from . import strips

STATE_ITEMS = [
    ("NONE", "None", "Never evaluated"),
    ("WAITING", "Waiting", "Asked for; sent once the engine and the merge are ready"),
    ("RUNNING", "Running", "The engine's evaluate job is queued or running"),
    ("FETCHING", "Fetching", "Done on a remote engine; its report is being downloaded"),
    ("DONE", "Done", "The sheet and the figures are here"),
    ("FAILED", "Failed", "The evaluation did not finish (see the message)"),
]
PENDING = ("WAITING", "RUNNING", "FETCHING")


class SwaplineEvaluation(bpy.types.PropertyGroup):
    """A shot's quality report: the request, the engine's job and its outcome."""

    state: EnumProperty(items=STATE_ITEMS, default="NONE")
    merge_job: StringProperty(description="The merge job evaluated")
    job_id: StringProperty(description="The engine's evaluate job")
    output: StringProperty(description="The output folder named in the request (workspace-relative)")
    label: StringProperty()
    message: StringProperty()
    sheet: StringProperty(subtype="FILE_PATH", description="summary.png on this machine")
    report: StringProperty(subtype="FILE_PATH", description="report.json on this machine")
    image: StringProperty(description="The sheet's image datablock")
    headline: StringProperty(description="The report's headline figures (JSON)")


def headline(evaluation) -> dict:
    """The stored headline figures ({} when there are none)."""
    try:
        value = json.loads(evaluation.headline or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def evaluations():
    """(scene, shot) of every movie strip in the file: the strips that carry an evaluation."""
    for scene in bpy.data.scenes:
        for strip in strips.all_strips(scene):
            if strip.type == "MOVIE":
                yield scene, strip


def register() -> None:
    bpy.utils.register_class(SwaplineEvaluation)
    bpy.types.Strip.swapline_evaluation = PointerProperty(type=SwaplineEvaluation)


def unregister() -> None:
    del bpy.types.Strip.swapline_evaluation
    bpy.utils.unregister_class(SwaplineEvaluation)
