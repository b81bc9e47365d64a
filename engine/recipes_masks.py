"""Service layer: recipes of the mask jobs (train the segmenter, apply it, render a shot's matte).

Kept beside recipes.py, which merges MASK_STAGES into its STAGES table.
"""

from __future__ import annotations

from .errors import EngineError
from .jobs import JobContext
from .service_args import settings
from .workspace import Workspace

# --- mask_train and mask_apply (segmentation network) -----------------------------------------

def _labelled_faces(ws: Workspace, facesets: list[str], resolution: int) -> tuple:
    """Every labelled face of the facesets (all people): crops (N,R,R,3) and masks (N,R,R) at the
    training resolution; labels are face-space polygons, so they rasterise straight at that size."""
    import cv2
    import numpy as np

    from .geometry.polygons import rasterize

    images, masks = [], []
    for name in facesets:
        for face_id in ws.masks.labelled(name):
            polygons = ws.masks.label(face_id)
            crop = cv2.imread(str(ws.facesets.face(face_id).image))
            if crop is None or not polygons:
                continue  # a crop deleted by hand is skipped, not fatal
            interp = cv2.INTER_AREA if crop.shape[0] > resolution else cv2.INTER_LINEAR
            images.append(cv2.resize(crop, (resolution, resolution), interpolation=interp))
            masks.append(rasterize(polygons, resolution))
    if not images:
        raise EngineError("no_labels", f"no labelled faces in {', '.join(map(repr, facesets))}: draw include "
                          "and exclude polygons on a few faces first (without labels the landmark hull is used)")
    return np.stack(images), np.stack(masks).astype(np.float32)


def mask_train(ws: Workspace, params: dict, ctx: JobContext) -> dict:
    """Train (or resume) the mask model `model` on the labelled faces of `facesets`."""
    from .masks.apply import mask_model_dir
    from .masks.learn import SegTrainSettings, train_segmenter, trained_iterations  # torch loads only now

    params = dict(params)
    model = params.pop("model", "xseg")
    facesets = params.pop("facesets", None)
    more = params.pop("more", None)
    if not isinstance(model, str):
        raise EngineError("bad_request", "'model' must be a name")
    if not isinstance(facesets, list) or not facesets or not all(isinstance(f, str) and f for f in facesets):
        raise EngineError("bad_request", "'facesets' must be a non-empty list of faceset names")
    directory = mask_model_dir(ws, model)
    if more is not None:  # "train on": so many steps past what the model has, new labels and all
        if not isinstance(more, int) or isinstance(more, bool) or more < 1 or "iterations" in params:
            raise EngineError("bad_request", "'more' must be a whole number >= 1, without 'iterations'")
        params["iterations"] = trained_iterations(directory) + more
    train_settings = settings(SegTrainSettings, params)
    images, masks = _labelled_faces(ws, facesets, train_settings.resolution)
    ctx.report(0.0, f"training mask model {model!r} on {len(images)} labelled faces")
    result = train_segmenter(images, masks, directory, train_settings, ctx.report, ctx.should_stop)
    return {"model": model, "iterations": result["iterations"], "loss": result["loss"], "labelled": len(images)}


def mask_apply(ws: Workspace, params: dict, ctx: JobContext) -> dict:
    """Learned masks for every face of `faceset` from the mask model `model`."""
    from .masks.apply import apply_segmenter

    unknown = set(params) - {"model", "faceset", "device"}
    if unknown:
        raise EngineError("bad_request", f"unknown option {sorted(unknown)[0]!r}")
    model, faceset, device = params.get("model", "xseg"), params.get("faceset"), params.get("device", "auto")
    if not all(isinstance(v, str) and v for v in (model, faceset, device)):
        raise EngineError("bad_request", "'model', 'faceset' and 'device' must be non-empty strings")
    return apply_segmenter(ws, model, faceset, ctx.report, ctx.should_stop, device)


# --- mask_matte (a shot's matte as an image sequence) -----------------------------------------


def mask_matte(ws: Workspace, params: dict, ctx: JobContext) -> dict:
    """The chosen person's face mask of every frame of a range, as gray PNGs (default folder: the
    workspace's renders/<job id>)."""
    from pathlib import Path

    from .masks.matte import MatteParams, matte_shot

    p = settings(MatteParams, params)
    out_dir = Path(p.output) if p.output else ws.render_dir(ctx.job_id)
    return matte_shot(ws, p, out_dir, ctx.report, ctx.should_stop)


MASK_STAGES: dict = {"mask_matte": mask_matte, "mask_train": mask_train, "mask_apply": mask_apply}
