"""Service layer: recipes of the face-swap model jobs (train, pretrain, export as .dfm).

Kept beside recipes.py, which merges TRAIN_STAGES into its STAGES table. Torch loads only when one
of these jobs runs.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import cv2
import numpy as np

from .errors import EngineError
from .facecrops import recut
from .jobs import JobContext
from .workspace import Workspace

TRAIN_KINDS = ("train", "pretrain")
COMMANDS = ("save", "backup", "pause", "resume", "phase", "set")  # what a training job obeys (job.control)
JOB_ONLY = ("model", "source", "destination", "holdout")  # a train job's params that are not training settings


def check_name(value, what: str) -> str:
    """A model or faceset name: non-empty, and never a path (it names a folder in the workspace)."""
    if not isinstance(value, str) or not value.strip():
        raise EngineError("bad_request", f"{what!r} must be a non-empty name")
    if "/" in value or "\\" in value or value in (".", "..") or "\0" in value:
        raise EngineError("bad_request", f"{what!r} must be a plain name, not a path: {value!r}")
    return value


def load_samples(ws: Workspace, faceset: str, face_type: str | None = None, max_size: int | None = None,
                 exclude: frozenset[int] | set[int] = frozenset()):
    """A faceset's chosen faces and their landmarks in crop pixels, as the trainer takes them.

    With a `face_type` narrower than the faceset's, each crop is re-cut from the stored one (from
    the same landmarks, so it matches a fresh extraction: engine/facecrops.py); `max_size` shrinks crops larger than the
    model needs, so a 512 px faceset does not fill memory for a 64 px model. When any face has a
    drawn, learned or imported mask, every face brings its mask (the hull where it has none). Each
    face's yaw comes along, so training can spread its batches evenly over poses (uniform_yaw).
    Faces in `exclude` (held back for the quality report, engine/holdout.py) are left out.
    """
    from .train.samples import FaceSamples

    fs = ws.facesets.get(faceset)
    records = [r for r in ws.facesets.faces(faceset) if r.id not in exclude]
    if not records:
        raise EngineError("no_faces", f"faceset {faceset!r} is empty; extract faces into it first")
    stored, kind = fs["size"], face_type or fs["face_type"]
    size = min(stored, max_size or stored)
    masked = ws.masks.masked(faceset)  # none: training draws the hull itself, nothing to read here
    images, landmarks, masks, yaws = [], [], [], []
    for r in records:
        img = cv2.imread(str(r.image))
        if img is None:
            continue  # a face file deleted by hand is skipped, not fatal
        cut = recut(r, stored, fs["face_type"], kind, size)
        images.append(cut.resample(img))
        landmarks.append(cut.landmarks)
        yaws.append(float(r.yaw))
        if masked:
            mask = np.round(ws.masks.mask_of(r, stored)[0] * 255).astype(np.uint8)
            masks.append(cut.resample(mask, cv2.INTER_LINEAR))
    if not images:
        raise EngineError("not_found", f"the face images of faceset {faceset!r} are missing from {ws.root}")
    return FaceSamples(images=np.stack(images), landmarks=np.stack(landmarks),
                       masks=np.stack(masks) if masked else None, yaws=np.asarray(yaws, np.float32))


def train_settings(params: dict, pretrain: bool = False):
    """TrainSettings from a job's params (less model/source/destination): the preset, then the rest on top."""
    from .train.settings import TrainSettings

    params = dict(params)
    preset = params.pop("preset", None)
    if pretrain:
        if params.get("pretrain") is False:
            raise EngineError("bad_request", "a pretrain job cannot set 'pretrain' to false")
        params["pretrain"] = True
    try:
        if preset is None:
            return TrainSettings.from_dict(params)
        if not isinstance(preset, str):
            raise ValueError("'preset' must be a preset's name")
        return TrainSettings.from_preset(preset, params)
    except (ValueError, KeyError) as exc:
        raise EngineError("bad_request", str(exc).strip("'\"")) from None


def _train(ws: Workspace, params: dict, ctx: JobContext, pretrain: bool) -> dict:
    from .train.distributed import is_main_process
    from .train.loop import train_pair  # torch loads only when a job needs it

    from .holdout import check_share, held_back

    params = dict(params)
    model = check_name(params.pop("model", None), "model")
    source = check_name(params.pop("source", None), "source")
    destination = params.pop("destination", None)
    share = check_share(params.pop("holdout", 0.0))
    settings = train_settings(params, pretrain)
    if destination is None and settings.pretrain:
        destination = source  # pretraining learns faces in general: one faceset feeds both sides
    destination = check_name(destination, "destination")
    if not settings.face_type:  # the model remembers its crop, so merging cuts the same one
        settings = dataclasses.replace(settings, face_type=ws.facesets.get(source)["face_type"])
    work = settings.resolution  # the sampler shrinks to this anyway: larger crops only cost memory
    held = held_back(ws, ws.model_dir(model), source, destination, share)
    skip_src = frozenset(held["source"]["faces"]) if held and held["source"]["faceset"] == source else frozenset()
    skip_dst = frozenset(held["destination"]["faces"]) if held and held["destination"]["faceset"] == destination \
        else frozenset()
    src = load_samples(ws, source, settings.face_type, work, skip_src)
    dst = src if destination == source else load_samples(ws, destination, settings.face_type, work, skip_dst)
    what = "pretraining" if settings.pretrain else "training"
    ctx.report(0.0, f"{what} on {len(src.images)} source and {len(dst.images)} destination faces")
    result = train_pair(src, dst, ws.model_dir(model), settings, ctx.report, ctx.should_stop,
                        commands=ctx.commands, set_paused=ctx.set_paused)
    if is_main_process():  # under torchrun every rank runs this recipe; one catalog row is enough
        ws.record_model(model, source, destination, result["iterations"], result["loss"])
    return {"model": model, **result}


def train(ws: Workspace, params: dict, ctx: JobContext) -> dict:
    return _train(ws, params, ctx, pretrain=False)


def pretrain(ws: Workspace, params: dict, ctx: JobContext) -> dict:
    """Train on faces in general (destination optional): a start for many later pairs."""
    return _train(ws, params, ctx, pretrain=True)


def export_dfm(ws: Workspace, params: dict, ctx: JobContext) -> dict:
    """The model as a DeepFaceLab .dfm (ONNX) file, for DeepFaceLive and other DFM players."""
    from .models.checkpoint import has_checkpoint

    unknown = set(params) - {"model", "output"}
    if unknown:
        raise EngineError("bad_request", f"unknown option {sorted(unknown)[0]!r}")
    model = check_name(params.get("model"), "model")
    output = params.get("output")
    if not isinstance(output, str) or not output:
        raise EngineError("bad_request", "'output' must be the path of the .dfm file to write")
    directory = ws.model_dir(model)
    if not has_checkpoint(directory):
        raise EngineError("not_found", f"model {model!r} has no checkpoint to export; train it first")
    out = Path(output)
    if not out.is_absolute():
        out = ws.root / "exports" / out  # a bare name lands in the workspace, not the engine's cwd
    from .models.dfm import export_dfm as export  # onnx loads only for an export

    ctx.report(0.0, f"exporting {model} as {out.name}")
    path = export(directory, out)
    return {"model": model, "output": str(path), "bytes": Path(path).stat().st_size}


TRAIN_STAGES: dict = {"train": train, "pretrain": pretrain, "export_dfm": export_dfm}
