"""Service layer: the recipe of the "evaluate" job (the quality report of a swap, engine/evaluate).

Kept beside recipes.py, which merges EVALUATE_STAGES into its STAGES table. Params:
{"source_video" | "source_faceset", "destination", "result", "output"?, "model"?, "frames"?, "samples"?};
paths come absolute (engine/paths.py made relative ones workspace-relative). The result is
{"report", "sheet", "output", "headline"}: what the add-on loads and shows.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from .errors import EngineError
from .jobs import JobContext
from .paths import check_plain_name
from .service_args import settings
from .workspace import Workspace


def evaluate(ws: Workspace, params: dict, ctx: JobContext) -> dict:
    """Judge a swap: report.json and summary.png into params["output"] or <workspace>/reports/<job id>."""
    from .evaluate.report import EvaluateParams, evaluate as run_report  # cv2 and the models load with the job

    p = settings(EvaluateParams, params)  # unknown keys and wrong types: bad_request
    if p.source_faceset is not None:
        check_plain_name(p.source_faceset, "source_faceset")
        ws.facesets.get(p.source_faceset)  # not_found before the long pass
    if p.model is not None:
        check_plain_name(p.model, "model")
        from .models.checkpoint import has_checkpoint  # torch loads only for a report with a model

        if not has_checkpoint(ws.model_dir(p.model)):  # refused now, not after the long pass
            raise EngineError("not_found", f"no trained model named {p.model!r} in this workspace")
    output = Path(p.output) if p.output else ws.root / "reports" / ctx.job_id
    return run_report(replace(p, output=str(output)), ws, ctx.report, ctx.should_stop)


EVALUATE_STAGES = {"evaluate": evaluate}
