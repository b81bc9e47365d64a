"""Stage piece: the quality report of one swap: one pass over the shot, report.json and summary.png.

The pass streams (destination, result, matte) frame pairs (inputs.py) and measures each pair as it
goes: the main face of both frames (observe.py; the result's face is the one over the destination's,
not another person in the shot), expression and pose kept (expression.py), flicker against the
destination's own (temporal.py) and the step across the mask border (seams.py). Identity distances
are taken after the pass: the destination's identity is the mean of its faces in the frames judged,
known only once they are all seen (embeddings are kept, frames are not). The model's reconstruction
of held-back faces (reconstruct.py) needs no frames of the shot and runs last.

The figures land in report.json (types.SCHEMA) with a headline of the few a person reads first
(types.HEADLINE_KEYS), and a sheet (sheet.py) shows sample faces and the figures over time.
"""

from __future__ import annotations

import datetime
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from ..config import check_types, from_dict
from ..errors import Cancelled, EngineError
from ..files import atomic_write
from ..geometry.hull import hull_mask
from ..media.decode import iter_frames_at, probe
from .crops import evenly_spaced
from .inputs import Shot, open_shot
from .types import HEADLINE_KEYS, SCHEMA, FaceObservation

CROP = 256  # side of the sample crops handed to the sheet
CROP_MARGIN = 1.6  # a sample crop is this many face boxes wide: the mask border shows
IDENTITY_LIMIT = 64  # faces (or frames) averaged into the source and the destination identity
MAX_SAMPLES = 16


@dataclass(frozen=True)
class EvaluateParams:
    """What to judge: the swap `result` of the shot `destination`, against the source person (a video
    or a faceset of the workspace), optionally with the model that made it (reconstruction)."""

    source_video: str | None = None
    source_faceset: str | None = None
    destination: str = ""
    result: str = ""
    output: str | None = None  # folder of report.json and summary.png; None: default_output(result)
    model: str | None = None
    frames: int | None = None  # judge the first N result frames only; None: all of them
    samples: int = 4  # sample frames shown on the sheet

    def __post_init__(self) -> None:
        check_types(self, "evaluate option")
        if (self.source_video is None) == (self.source_faceset is None):
            raise ValueError("evaluate needs one source: 'source_video' or 'source_faceset'")
        for name in ("source_video", "source_faceset", "destination", "result", "output", "model"):
            if getattr(self, name) == "":
                raise ValueError(f"evaluate option {name!r} must not be empty")
        if self.frames is not None and self.frames < 1:
            raise ValueError("evaluate option 'frames' must be at least 1")
        if not 0 <= self.samples <= MAX_SAMPLES:
            raise ValueError(f"evaluate option 'samples' must be 0..{MAX_SAMPLES}")

    @classmethod
    def from_dict(cls, d: dict) -> "EvaluateParams":
        return from_dict(cls, d, "evaluate option")


def default_output(result: str | Path) -> Path:
    """Beside what is judged: <folder>/evaluation for a folder, <stem>_evaluation next to a video."""
    path = Path(result)
    return path / "evaluation" if path.is_dir() else path.with_name(f"{path.stem}_evaluation")


Progress = Callable[..., None]


def evaluate(params: EvaluateParams, ws=None, report_progress: Progress = lambda *a: None,
             should_stop: Callable[[], bool] = lambda: False) -> dict:
    """Judge the swap; write report.json and summary.png. `ws` (a Workspace) is needed for a source
    faceset and a model only. Returns {"report", "sheet", "output", "headline"}."""
    from .observe import identity_available

    started = time.monotonic()
    if (params.source_faceset or params.model) and ws is None:
        raise EngineError("bad_request", "a source faceset or a model needs a workspace (--workspace)")
    shot = open_shot(params.destination, params.result, params.frames)
    out_dir = Path(params.output) if params.output else default_output(params.result)
    identity = identity_available()
    report_progress(0.0, "the source person")
    source = _source(params, ws, identity, should_stop)
    report_progress(0.1, f"frame 0/{len(shot.frames)}")
    passed = _measure(shot, identity, params.samples, should_stop,
                      lambda p, m: report_progress(0.1 + 0.75 * p, m))
    identity_figures, identity_rows = _identity(passed["observed"], source["embeddings"], identity)
    metrics = {"identity": identity_figures, **passed["metrics"]}
    if params.model:
        from .reconstruct import reconstruction

        report_progress(0.85, f"reconstruction by {params.model}")
        metrics["reconstruction"] = reconstruction(ws, params.model, should_stop)
    else:
        metrics["reconstruction"] = {"available": False, "reason": "no model given (--model NAME with --workspace)"}
    if should_stop():
        raise Cancelled()
    per_frame = passed["per_frame"]
    for row, identity_row in zip(per_frame, identity_rows):
        row["identity"] = identity_row
    counts = passed["counts"]
    report = _plain({
        "schema": SCHEMA,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "seconds": 0.0,
        "inputs": {"source": source["description"], "destination": str(shot.destination.path),
                   "result": {"kind": shot.result_kind, "path": str(shot.result_path)}, "model": params.model},
        "frames": {"first": shot.first, "count": counts["frames"], "destination_faces": counts["destination"],
                   "result_faces": counts["result"]},
        "headline": headline(metrics, counts),
        "metrics": metrics,
        "per_frame": per_frame,
        "samples": [s["frame"] for s in passed["samples"]],
        "sheet": "summary.png",
    })
    samples = [{**s, "source": source["crops"][k % len(source["crops"])] if source["crops"] else None}
               for k, s in enumerate(passed["samples"])]
    report_progress(0.97, "summary sheet")
    from .sheet import summary_sheet

    report["seconds"] = round(time.monotonic() - started, 3)  # the sheet shows it: the time to measure
    sheet = summary_sheet(report, samples, out_dir / "summary.png")
    report["seconds"] = round(time.monotonic() - started, 3)
    path = out_dir / "report.json"
    atomic_write(path, json.dumps(report, indent=1, allow_nan=False).encode())
    report_progress(1.0, f"evaluated {counts['frames']} frames")
    return {"report": str(path), "sheet": str(sheet), "output": str(out_dir), "headline": report["headline"]}


def headline(metrics: dict, counts: dict) -> dict:
    """The figures a person reads first (types.HEADLINE_KEYS), None where not measured."""
    def median(*keys):
        node = metrics
        for key in keys:
            node = node.get(key) if isinstance(node, dict) else None
        return node.get("median") if isinstance(node, dict) else None

    identity = metrics["identity"]
    recon = metrics["reconstruction"]
    out = {
        "closer_to_source": identity.get("closer_to_source"),
        "identity_to_source": median("identity", "to_source"),
        "identity_to_destination": median("identity", "to_destination"),
        "landmark_distance": median("expression", "landmarks"),
        "yaw_difference": median("expression", "yaw"),
        "pitch_difference": median("expression", "pitch"),
        "roll_difference": median("expression", "roll"),
        "flicker_ratio": metrics["flicker"].get("ratio"),
        "seam_colour": median("seams", "colour"),
        "seam_colour_destination": median("seams", "colour_destination"),
        "seam_gradient_ratio": median("seams", "gradient_ratio"),
        "ssim_source_held_back": median("reconstruction", "source", "held_back", "ssim")
        if recon.get("available") else None,
        "ssim_destination_held_back": median("reconstruction", "destination", "held_back", "ssim")
        if recon.get("available") else None,
        "faces_found": counts["both"] / counts["destination"] if counts["destination"] else None,
    }
    assert tuple(out) == HEADLINE_KEYS, "headline() and types.HEADLINE_KEYS must list the same figures"
    return {k: (float(v) if v is not None and math.isfinite(float(v)) else None) for k, v in out.items()}


def _source(params: EvaluateParams, ws, identity: bool, should_stop) -> dict:
    """The source person: a description for the report, its identity embeddings (when the identity
    extra is there) and a few face crops for the sheet."""
    from .observe import faceset_embeddings, video_embeddings

    count = max(params.samples, 1)
    if params.source_faceset is not None:
        records = ws.facesets.faces(params.source_faceset)
        if not records:
            raise EngineError("no_faces", f"the faceset {params.source_faceset!r} has no faces of its person")
        embeddings = faceset_embeddings(records, IDENTITY_LIMIT, should_stop) if identity else None
        crops = [c for c in (cv2.imread(str(r.image)) for r in evenly_spaced(records, count)) if c is not None]
        crops = [cv2.resize(c, (CROP, CROP), interpolation=cv2.INTER_AREA) for c in crops]
        description = {"kind": "faceset", "name": params.source_faceset, "faces": len(records)}
    else:
        path = Path(params.source_video)
        info = probe(path)
        embeddings = video_embeddings(path, IDENTITY_LIMIT, should_stop) if identity else None
        crops = _video_crops(info, count)
        description = {"kind": "video", "path": str(info.path),
                       "faces": len(embeddings) if embeddings is not None else None}
    return {"description": description, "embeddings": embeddings, "crops": crops}


def _video_crops(info, count: int) -> list[np.ndarray]:
    """Face crops of `count` evenly spaced frames of the source video (frames without a face: none)."""
    from .observe import FaceObserver

    observer = FaceObserver(identity=False)
    crops = []
    for index, frame in iter_frames_at(info.path, evenly_spaced(list(range(info.frames)), count)):
        face = observer.step(index, frame)
        if face is not None:
            crops.append(_crop(frame, _window(face.box, frame.shape)))
    return crops


def _measure(shot: Shot, identity: bool, samples: int, should_stop, progress) -> dict:
    """The streaming pass: per-frame expression, flicker and seam rows, the observations' embeddings
    (for the identity rows after it) and the sample crops."""
    from .expression import expression_row, expression_summary
    from .observe import FaceObserver, embed_face
    from .seams import seam_row, seam_summary
    from .temporal import FlickerMeter

    # every swapped face is identified (its own per-frame row); the destination's identity is only
    # the reference, and a spread sample of its faces gives it at half the cost of a long clip
    destination_faces = FaceObserver(identity=False)
    result_faces = FaceObserver(identity=identity, like=destination_faces)
    identify = set(evenly_spaced(list(shot.frames), IDENTITY_LIMIT)) if identity else set()
    flicker = FlickerMeter()
    wanted = set(evenly_spaced(list(shot.frames), samples))
    per_frame, observed, crops = [], [], []
    counts = {"frames": 0, "destination": 0, "result": 0, "both": 0}
    total, every = len(shot.frames), max(1, len(shot.frames) // 50)
    for n, (index, dst, res, matte) in enumerate(shot.pairs()):
        if should_stop():
            raise Cancelled()
        d = destination_faces.step(index, dst)
        if d is not None and index in identify:
            d.embedding = embed_face(dst, d.landmarks68)
        r = result_faces.step(index, res, near=d.box if d is not None else None)
        counts["frames"] += 1
        counts["destination"] += d is not None
        counts["result"] += r is not None
        counts["both"] += d is not None and r is not None
        mask = matte if matte is not None and matte.any() else _hull(d, dst.shape)
        region = mask > 0 if mask is not None else np.zeros(dst.shape[:2], bool)  # no face: the step is skipped
        per_frame.append({
            "frame": index, "identity": None,
            "expression": expression_row(d, r) if d is not None and r is not None else None,
            "flicker": flicker.step(index, dst, res, region),
            "seams": seam_row(dst, res, mask, _face_size(d, mask)) if mask is not None else None,
        })
        observed.append((d, r))
        if index in wanted:
            window = _window(d.box if d is not None else (r.box if r is not None else None), dst.shape, mask)
            crops.append({"frame": index, "destination": _crop(dst, window), "result": _crop(res, window)})
        if n % every == 0 or n + 1 == total:
            progress((n + 1) / total, f"frame {n + 1}/{total}")
    if not counts["frames"]:
        raise EngineError("bad_media", f"no frame of {shot.result_path.name} could be read with the destination's")
    return {"per_frame": per_frame, "observed": observed, "samples": crops, "counts": counts,
            "metrics": {"expression": expression_summary([row["expression"] for row in per_frame]),
                        "flicker": flicker.summary(),
                        "seams": seam_summary([row["seams"] for row in per_frame])}}


def _identity(observed: list, source_embeddings, identity: bool) -> tuple[dict, list]:
    """The identity summary and per-frame rows of the (destination, result) observations. The
    destination's identity is the mean of its own faces in a spread sample of the frames judged;
    their distance to the source is the context figure."""
    from .identity import identity_reference, identity_row, identity_summary

    none = [None] * len(observed)
    if not identity:
        return {"available": False, "reason": "the identity extra is not installed "
                                              "(pip install 'swapline[identity]')"}, none
    source_ref = identity_reference(source_embeddings) if source_embeddings is not None else None
    if source_ref is None:
        return {"available": False, "reason": "no face of the source person could be measured"}, none
    destinations = [d.embedding for d, _ in observed if d is not None and d.embedding is not None]
    destination_ref = identity_reference(np.stack(destinations)) if destinations else None
    if destination_ref is None:
        return {"available": False, "reason": "no face of the destination could be measured"}, none
    rows = [identity_row(r, source_ref, destination_ref) for _, r in observed]
    baseline = [row["to_source"] for row in
                (identity_row(d, source_ref, destination_ref) for d, _ in observed)
                if row is not None]
    return identity_summary(rows, baseline), rows


def _hull(face: FaceObservation | None, shape) -> np.ndarray | None:
    """The destination face's hull as a 0/255 mask: the region when the result carries no matte."""
    if face is None:
        return None
    return (hull_mask(face.landmarks68, shape[:2]) > 0.5).astype(np.uint8) * 255


def _face_size(face: FaceObservation | None, mask: np.ndarray) -> float:
    """The face's size in pixels (its box's larger side; without a face, the mask's)."""
    if face is not None:
        x0, y0, x1, y1 = face.box
        return float(max(x1 - x0, y1 - y0))
    ys, xs = np.nonzero(mask)
    return float(max(xs.max() - xs.min(), ys.max() - ys.min()) + 1)


def _window(box, shape, mask: np.ndarray | None = None) -> tuple[float, float, float]:
    """(centre x, centre y, side) of a sample crop: around the face, else the mask, else the frame."""
    if box is None and mask is not None and mask.any():
        ys, xs = np.nonzero(mask)
        box = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
    if box is None:
        h, w = shape[:2]
        return w / 2, h / 2, float(min(h, w))
    x0, y0, x1, y1 = (float(v) for v in box)
    return (x0 + x1) / 2, (y0 + y1) / 2, max(x1 - x0, y1 - y0, 1.0) * CROP_MARGIN


def _crop(frame: np.ndarray, window: tuple[float, float, float]) -> np.ndarray:
    """A CROP x CROP square of the frame (black beyond its edges), shrunk with area averaging."""
    cx, cy, side = window
    h, w = frame.shape[:2]
    half = max(1, int(round(side / 2)))
    x0, y0 = int(round(cx)) - half, int(round(cy)) - half
    x1, y1 = x0 + 2 * half, y0 + 2 * half
    part = np.zeros((2 * half, 2 * half) + frame.shape[2:], frame.dtype)
    sx0, sy0, sx1, sy1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
    if sx1 > sx0 and sy1 > sy0:
        part[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = frame[sy0:sy1, sx0:sx1]
    interp = cv2.INTER_AREA if 2 * half > CROP else cv2.INTER_LINEAR
    return cv2.resize(part, (CROP, CROP), interpolation=interp)


def _plain(value):
    """JSON-ready: numpy scalars and arrays as Python numbers and lists, NaN and inf as None."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(float(value)) else None
    return value
