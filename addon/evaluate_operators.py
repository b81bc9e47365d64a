"""Blender layer: Evaluate, the quality report of a merged shot, and Open Sheet.

Evaluate asks the engine for an `evaluate` job on the shot's merge (engine/recipes_evaluate.py): it
checks there is a merge to judge, names the job's output folder (evaluate_request.py), marks the
shot's evaluation (evaluate_state.py) WAITING and returns; the drain (evaluate_drain.py) sends,
follows and finishes it without Blender ever waiting. Open Sheet shows the summary sheet full size.
"""

from __future__ import annotations

import bpy

from . import evaluate_drain, evaluate_state, live_preview, mask_editor, strips, sync
from .engine_link import CONNECTED
from .evaluate_request import merge_of, merges_asked, output_folder
from .evaluate_state import PENDING
from .operators import ensure_link


class SWAPLINE_OT_evaluate(bpy.types.Operator):
    """Measure the shot's merge: is the face closer to the source person than to the destination, are
    the expression and head pose kept, does it flicker more than the shot, are there seams, and how well
    the model rebuilds faces it never trained on. Shows the summary sheet and the figures"""

    bl_idname = "swapline.evaluate"
    bl_label = "Evaluate"

    def execute(self, context):
        scene = strips.sequencer_scene(context)
        shot = live_preview.target(scene)
        if shot is None or shot.type != "MOVIE":
            self.report({"ERROR"}, "Select a merged shot (or its face layer) first")
            return {"CANCELLED"}
        evaluation = shot.swapline_evaluation
        if evaluation.state in PENDING:
            self.report({"ERROR"}, f"'{shot.name}' is being evaluated already")
            return {"CANCELLED"}
        layer = live_preview.layer_strip(scene, shot)
        merging = merges_asked(scene, shot)
        if layer is None and not merging and (sync.link().state != CONNECTED or merge_of(scene, shot) is None):
            self.report({"ERROR"}, f"'{shot.name}' has no merge result: press Merge Shot first")
            return {"CANCELLED"}
        if not ensure_link(self, context):  # starts connecting, never waits for it
            return {"CANCELLED"}
        evaluation.state, evaluation.job_id, evaluation.message = "WAITING", "", "Waiting for the engine…"
        # a merge of the shot still running is the one to evaluate (once done), else the one on show
        evaluation.merge_job = merging[-1] if merging else layer.swapline_job if layer is not None else ""
        evaluation.output = output_folder(scene, shot)
        evaluation.label = f"Evaluate {shot.name}"
        evaluate_drain.drain()  # sends at once when the engine is connected and the merge done
        evaluate_drain.start_timer()
        self.report({"INFO"}, f"Evaluating '{shot.name}'")
        return {"FINISHED"}


class SWAPLINE_OT_evaluate_open(bpy.types.Operator):
    """Open the shot's summary sheet in an Image Editor (a new window), to read it full size"""

    bl_idname = "swapline.evaluate_open"
    bl_label = "Open Sheet"

    def execute(self, context):
        scene = strips.sequencer_scene(context)
        shot = live_preview.target(scene)
        evaluation = shot.swapline_evaluation if shot is not None and shot.type == "MOVIE" else None
        image = evaluate_drain.sheet_image(evaluation) if evaluation is not None else None
        if image is None:
            missing = evaluation is not None and evaluation.sheet
            self.report({"ERROR"}, f"The summary sheet is gone: {evaluation.sheet}" if missing else
                        "No summary sheet yet: press Evaluate after a merge")
            return {"CANCELLED"}
        return mask_editor.open_image(self, context, image)


classes = (SWAPLINE_OT_evaluate, SWAPLINE_OT_evaluate_open)


def register() -> None:
    """The evaluation's home on movie strips and its load handler (operators and panels are
    registered with the others, in __init__)."""
    evaluate_state.register()
    evaluate_drain.register()


def unregister() -> None:
    evaluate_drain.unregister()
    evaluate_state.unregister()
