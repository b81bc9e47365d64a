"""Service layer: recipes that wire the workspace to each stage, one function per job kind.

A recipe takes (workspace, params dict, context) and returns the job's result. The server runs them
as jobs; the command line runs the same functions in-process.
"""

from __future__ import annotations

from pathlib import Path

from .errors import EngineError
from .faces.extract import ExtractParams, extract_faces
from .jobs import JobContext
from .recipes_evaluate import EVALUATE_STAGES
from .recipes_masks import MASK_STAGES
from .recipes_train import TRAIN_STAGES
from .service_args import settings
from .workspace import Workspace


def extract(ws: Workspace, params: dict, ctx: JobContext) -> dict:
    return extract_faces(ws, settings(ExtractParams, params), ctx.report, ctx.should_stop)


def merge(ws: Workspace, params: dict, ctx: JobContext) -> dict:
    """A shot merged into a face layer, a matte, merged frames and/or a video (params["outputs"]),
    with params["settings"] the MergeSettings (animated by keys); into params["output"] or the
    workspace's renders/<job id>; a re-run into the same folder resumes."""
    from .merge.shot import MergeParams, merge_shot  # torch loads only when a job needs it

    p = settings(MergeParams, params)  # every setting checked before the model loads
    out_dir = Path(p.output) if p.output else ws.render_dir(ctx.job_id)
    return merge_shot(ws, p, out_dir, ctx.report, ctx.should_stop)


def import_faceset(ws: Workspace, params: dict, ctx: JobContext) -> dict:
    """A faceset from a folder: one we exported (faceset.json) or DeepFaceLab's aligned JPGs."""
    from .faces.interchange import import_dfl_faceset, import_faceset as import_folder

    p = _pick(params, required=("folder", "faceset"), optional={"size": None, "dfl": False})
    run = import_dfl_faceset if p["dfl"] else import_folder
    return run(ws, Path(p["folder"]), p["faceset"], p["size"], ctx.report, ctx.should_stop)


def export_faceset(ws: Workspace, params: dict, ctx: JobContext) -> dict:
    """A faceset as a folder of images with a JSON sidecar, or as DeepFaceLab aligned JPGs."""
    from .faces.export import export_faceset as export_folder

    p = _pick(params, required=("faceset", "output"), optional={"dfl": False})
    return export_folder(ws, p["faceset"], Path(p["output"]), ctx.report, ctx.should_stop, dfl=p["dfl"])


def _pick(params: dict, required: tuple[str, ...], optional: dict) -> dict:
    """A small job's params, strictly: every required key, known optional ones, nothing else."""
    unknown = set(params) - set(required) - set(optional)
    if unknown:
        raise EngineError("bad_request", f"unknown option {sorted(unknown)[0]!r}")
    missing = [k for k in required if not isinstance(params.get(k), str) or not params[k]]
    if missing:
        raise EngineError("bad_request", f"{missing[0]!r} must be a non-empty string")
    out = {**optional, **params}
    if out.get("size") is not None and not isinstance(out["size"], int):
        raise EngineError("bad_request", "'size' must be a whole number of pixels")
    if not isinstance(out.get("dfl", False), bool):
        raise EngineError("bad_request", "'dfl' must be true or false")
    return out


STAGES = {"extract": extract, "merge": merge, "import_faceset": import_faceset, "export_faceset": export_faceset,
          **TRAIN_STAGES, **MASK_STAGES, **EVALUATE_STAGES}
