"""Service layer: recipes that wire the workspace to each stage, one function per job kind.

A recipe takes (workspace, params dict, context) and returns the job's result. The server runs them
as jobs; the command line runs the same functions in-process.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import cv2
import numpy as np

from .errors import EngineError
from .faces.extract import ExtractParams, extract_faces
from .geometry.align import recrop_transform, transform_points
from .jobs import JobContext
from .recipes_masks import MASK_STAGES
from .service_args import settings
from .workspace import Workspace


def extract(ws: Workspace, params: dict, ctx: JobContext) -> dict:
    return extract_faces(ws, settings(ExtractParams, params), ctx.report, ctx.should_stop)


def load_samples(ws: Workspace, faceset: str, face_type: str | None = None, max_size: int | None = None):
    """A faceset's chosen faces and their landmarks in crop pixels, as the trainer takes them.

    With a `face_type` narrower than the faceset's, each crop is re-cut from the stored one (from
    the same landmarks, so it matches a fresh extraction); `max_size` shrinks crops larger than the
    model needs, so a 512 px faceset does not fill memory for a 64 px model. When any face has a
    drawn, learned or imported mask, every face brings its mask (the hull where it has none).
    """
    from .train.samples import FaceSamples

    fs = ws.facesets.get(faceset)
    records = ws.facesets.faces(faceset)
    if not records:
        raise EngineError("no_faces", f"faceset {faceset!r} is empty; extract faces into it first")
    stored, kind = fs["size"], face_type or fs["face_type"]
    size = min(stored, max_size or stored)
    masked = ws.masks.masked(faceset)  # none: training draws the hull itself, nothing to read here
    images, landmarks, masks = [], [], []
    for r in records:
        img = cv2.imread(str(r.image))
        if img is None:
            continue  # a face file deleted by hand is skipped, not fatal
        try:
            m = recrop_transform(r.transform, stored, fs["face_type"], r.landmarks68, size, kind, r.yaw)
        except ValueError as exc:
            raise EngineError("bad_request", str(exc)) from None
        img = cv2.warpAffine(img, m, (size, size), flags=cv2.INTER_AREA if size < stored else cv2.INTER_CUBIC,
                             borderMode=cv2.BORDER_REPLICATE)
        images.append(img)
        if masked:
            mask = np.round(ws.masks.mask_of(r, stored)[0] * 255).astype(np.uint8)
            masks.append(cv2.warpAffine(mask, m, (size, size), flags=cv2.INTER_LINEAR))
        # crop -> crop after frame -> crop: the landmarks land where the narrow crop has them
        landmarks.append(transform_points(m, transform_points(r.transform, r.landmarks68)).astype(np.float32))
    if not images:
        raise EngineError("not_found", f"the face images of faceset {faceset!r} are missing from {ws.root}")
    return FaceSamples(images=np.stack(images), landmarks=np.stack(landmarks),
                       masks=np.stack(masks) if masked else None)


def train(ws: Workspace, params: dict, ctx: JobContext) -> dict:
    from .train.loop import TrainSettings, train_pair  # torch loads only when a job needs it

    params = dict(params)
    try:
        model, source, destination = params.pop("model"), params.pop("source"), params.pop("destination")
    except KeyError as exc:
        raise EngineError("bad_request", f"train needs {exc.args[0]!r}") from None
    train_settings = settings(TrainSettings, params)
    if not train_settings.face_type:  # the model remembers its crop, so merging cuts the same one
        train_settings = dataclasses.replace(train_settings, face_type=ws.facesets.get(source)["face_type"])
    work = max(128, 2 * train_settings.resolution)
    src = load_samples(ws, source, train_settings.face_type, work)
    dst = load_samples(ws, destination, train_settings.face_type, work)
    ctx.report(0.0, f"training on {len(src.images)} source and {len(dst.images)} destination faces")
    result = train_pair(src, dst, ws.model_dir(model), train_settings, ctx.report, ctx.should_stop)
    ws.record_model(model, source, destination, result["iterations"], result["loss"])
    return {"model": model, **result}


def merge(ws: Workspace, params: dict, ctx: JobContext) -> dict:
    from .merge.shot import MergeParams, merge_shot  # torch loads only when a job needs it

    p = settings(MergeParams, params)
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


STAGES = {"extract": extract, "train": train, "merge": merge,
          "import_faceset": import_faceset, "export_faceset": export_faceset, **MASK_STAGES}
