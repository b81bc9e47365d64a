"""Faces stage: a faceset out of the workspace, as a folder of crops with one faceset.json, or as
DeepFaceLab aligned JPGs carrying its metadata (so DeepFaceLab can train on our faces).

Each face's frame geometry travels with it, so importing the folder again needs no detection.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from ..errors import Cancelled, EngineError
from ..facesets import FaceRecord
from ..files import atomic_write
from ..geometry.align import transform_points
from ..workspace import Workspace
from .dfl_jpeg import embed_metadata
from .interchange import FORMAT, FORMAT_VERSION, MAX_SKIPPED, OURS_TO_DFL, SIDECAR


def _dfl_metadata(face: FaceRecord, extra: dict, lm_crop: np.ndarray, media_path: str, mask: bytes | None) -> dict:
    """DeepFaceLab's metadata for one of our faces: our crop is its aligned image."""
    meta = {
        "face_type": OURS_TO_DFL[face.face_type], "landmarks": lm_crop.tolist(),
        "source_filename": extra.get("source_filename") or f"{Path(media_path).stem}_{face.frame:06d}.png",
        "source_rect": [float(v) for v in face.box], "source_landmarks": np.asarray(face.landmarks68).tolist(),
        "image_to_face_mat": np.asarray(face.transform).tolist(),
        "eyebrows_expand_mod": float(extra.get("eyebrows_expand_mod") or 1.0),
    }
    if extra.get("polys"):
        meta["seg_ie_polys"] = {"polys": [{"type": int(p["type"] == "include"), "pts": p["pts"]} for p in extra["polys"]]}
    if mask is not None:
        meta["xseg_mask"] = _compact_mask(mask)
    return meta


def _compact_mask(png: bytes) -> bytes:
    # all the metadata shares one 64 KB JPEG segment: a big mask goes in smaller, as a JPG if it must
    if len(png) <= 40_000:
        return png
    mask = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_GRAYSCALE)
    if mask is None:
        return png
    if max(mask.shape) > 256:
        mask = cv2.resize(mask, (256, 256), interpolation=cv2.INTER_AREA)
    data = cv2.imencode(".png", mask)[1].tobytes()
    return data if len(data) <= 40_000 else cv2.imencode(".jpg", mask, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()


def export_faceset(ws: Workspace, faceset: str, out_dir: Path, report, should_stop, dfl: bool = False) -> dict:
    """Write every face of a faceset (all tracks) as image files plus one faceset.json; with `dfl`,
    the images are DeepFaceLab aligned JPGs carrying its metadata, so DeepFaceLab can train on them."""
    fs = ws.facesets.get(faceset)
    if dfl and fs["face_type"] not in OURS_TO_DFL:
        raise EngineError("bad_request", f"DeepFaceLab has no {fs['face_type']} face type")
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise EngineError("bad_request", f"{out_dir} is a file, not a folder")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not (out_dir / SIDECAR).is_file():
        raise EngineError("bad_request", f"{out_dir} holds other files; export into an empty folder")
    faces = ws.facesets.faces(faceset, everyone=True)
    if not faces:
        raise EngineError("no_faces", f"faceset {faceset!r} is empty; there is nothing to export")
    media = ws.media()
    entries, skipped = [], []
    for i, face in enumerate(faces):
        if should_stop():
            raise Cancelled()
        report(i / len(faces), f"face {i + 1}/{len(faces)}", {"faces": len(entries), "skipped": len(skipped)})
        name = f"{i:06d}.jpg" if dfl else f"{i:06d}{face.image.suffix.lower()}"
        try:
            data = face.image.read_bytes()
            # the mask the face has: learned by our model, else the one it came with
            mask_file = ws.masks.learned(face.id) or (ws.root / face.extra["mask"] if face.extra.get("mask") else None)
            mask = mask_file.read_bytes() if mask_file is not None else None
        except OSError as exc:
            skipped.append(f"face {face.id}: {exc.strerror or exc}")
            continue
        lm_crop = transform_points(face.transform, face.landmarks68)
        path = media[face.media_id]["path"]
        extra = dict(face.extra)
        label = ws.masks.label(face.id)
        if label:  # drawn here: back to crop pixels, as DeepFaceLab and our importer read them
            extra["polys"] = [{"type": "include" if p["include"] else "exclude",
                               "pts": np.round(np.asarray(p["points"]) * face.size - 0.5, 2).tolist()} for p in label]
        if dfl:
            if face.image.suffix.lower() not in (".jpg", ".jpeg"):
                data = cv2.imencode(".jpg", cv2.imread(str(face.image)), [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()
            data = embed_metadata(data, _dfl_metadata(face, extra, lm_crop, path, mask), out_dir / name)
        if mask is not None:
            extra["mask"] = f"{Path(name).stem}_mask.png"
            atomic_write(out_dir / extra["mask"], mask)
        atomic_write(out_dir / name, data)
        entries.append({
            "file": name, "media": path, "frame": face.frame, "face_index": face.face_index, "track": face.track,
            "box": [float(v) for v in face.box], "score": float(face.score),
            "landmarks68_crop": np.round(lm_crop, 3).tolist(),
            "landmarks68": np.asarray(face.landmarks68, np.float64).round(3).tolist(),
            "transform": np.asarray(face.transform).tolist(), "yaw": face.yaw, "pitch": face.pitch,
            "roll": face.roll, "sharpness": face.sharpness, "brightness": face.brightness, "extra": extra,
        })
    used = {e["media"] for e in entries}
    doc = {"format": FORMAT, "version": FORMAT_VERSION, "images": "deepfacelab" if dfl else "plain",
           "face_type": fs["face_type"], "size": fs["size"], "people": json.loads(fs["people"] or "null"),
           "media": {m["path"]: {k: m[k] for k in ("width", "height", "fps", "frames")} for m in media.values()
                     if m["path"] in used},
           "faces": entries}
    atomic_write(out_dir / SIDECAR, json.dumps(doc, indent=1).encode())  # last: a complete folder has one
    report(1.0, f"exported {len(entries)} faces", {"faces": len(entries), "skipped": len(skipped)})
    return {"faceset": faceset, "folder": str(out_dir), "faces": len(entries), "skipped": skipped[:MAX_SKIPPED],
            "skipped_count": len(skipped)}
