"""Service layer: the synchronous mask operations (labels, previews, removal) the add-on calls.

Each handler takes (workspace, args) and answers at once; long mask work (training, applying,
mattes) runs as jobs (recipes_masks.py). Labels cross the wire in face space (fractions of the
aligned crop) or frame space (frame pixels), both in continuous coordinates (geometry/polygons.py).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import cv2
import numpy as np

from .errors import EngineError
from .facemasks import crop_side
from .facesets import FaceRecord
from .geometry.polygons import check_polygons, face_to_frame, frame_to_face
from .media.decode import iter_frames
from .media.encode import write_image
from .service_args import arg, ints
from .workspace import Workspace

MAX_PREVIEWS = 256  # faces per mask.preview request: a page of thumbnails, not a whole faceset
TINT = np.array([60, 60, 255], np.float32)  # BGR: the masked face shows reddish
EDGE = (0, 255, 255)  # the mask's edge in yellow


def _face(ws: Workspace, args: dict) -> FaceRecord:
    return ws.facesets.face(arg(args, "face", int))


def _space(args: dict) -> str:
    space = arg(args, "space", str, "face", optional=True)
    if space not in ("face", "frame"):
        raise EngineError("bad_request", f"argument 'space' must be 'face' or 'frame', not {space!r}")
    return space


def _media(ws: Workspace, face: FaceRecord) -> dict:
    media = ws.media().get(face.media_id)
    if media is None:
        raise EngineError("not_found", f"face {face.id} has no video in this workspace")
    return media


def mask_labels(ws: Workspace, args: dict) -> dict:
    name = arg(args, "faceset", str)
    labelled = ws.masks.labelled(name)
    total = next(f["faces"] for f in ws.facesets.list() if f["name"] == name)
    return {"labelled": labelled, "count": len(labelled), "faces": total}


def mask_label_get(ws: Workspace, args: dict) -> dict:
    face, space = _face(ws, args), _space(args)
    media = _media(ws, face)
    polygons = ws.masks.label(face.id) or []
    if space == "frame":
        polygons = face_to_frame(polygons, face.transform, crop_side(face))
    return {"face": face.id, "polygons": polygons, "space": space, "size": crop_side(face),
            "crop": str(face.image), "width": media["width"] or 0, "height": media["height"] or 0}


def mask_label_set(ws: Workspace, args: dict) -> dict:
    face, space = _face(ws, args), _space(args)
    if "polygons" not in args:
        raise EngineError("bad_request", "argument 'polygons' must be a list (empty to delete the label)")
    try:
        polygons = check_polygons(args["polygons"])
    except ValueError as exc:
        raise EngineError("bad_request", str(exc)) from None
    if space == "frame":
        polygons = frame_to_face(polygons, face.transform, crop_side(face))
    ws.masks.set_label(face.id, polygons)  # checks the mapped points again (finite, in range)
    return {"face": face.id, "count": len(ws.masks.labelled(ws.masks.faceset_of(face.id)))}


def mask_frame(ws: Workspace, args: dict) -> dict:
    """The face's whole frame as a PNG (decoded once, then cached), to draw a label on."""
    face = _face(ws, args)
    media = _media(ws, face)
    video = Path(media["path"])
    if not video.is_absolute() or not video.is_file():  # imported faces name their clip, not a path
        raise EngineError("not_found", f"the video of face {face.id} is not here: {video}")
    st = video.stat()
    # keyed by the file's size and time too: a clip edited in place must not show its old frames
    out = ws.root / "cache" / "frames" / f"m{face.media_id}_{st.st_size}_{st.st_mtime_ns}_f{face.frame:06d}.png"
    if not out.is_file():
        frame = next((f for _, f in iter_frames(video, face.frame, face.frame + 1)), None)
        if frame is None:
            raise EngineError("not_found", f"{video.name} has no frame {face.frame}")
        write_image(out, frame)
    return {"image": str(out), "width": media["width"], "height": media["height"], "crop": str(face.image),
            "size": crop_side(face)}


def _overlay(crop: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The crop with the mask tinted and its edge drawn."""
    m = mask[..., None] * 0.45
    out = crop.astype(np.float32) * (1 - m) + TINT * m
    out = np.clip(out, 0, 255).astype(np.uint8)
    contours, _ = cv2.findContours((mask > 0.5).astype(np.uint8), cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(out, contours, -1, EDGE, max(1, crop.shape[0] // 256), cv2.LINE_AA)
    return out


def mask_preview(ws: Workspace, args: dict) -> dict:
    """Overlay PNGs of faces with their current masks; a changed mask gets a new file name, so a
    client that caches images by path never shows a stale one."""
    ids = ints(args, "faces")
    if len(ids) > MAX_PREVIEWS:
        raise EngineError("bad_request", f"at most {MAX_PREVIEWS} faces per preview request, got {len(ids)}")
    folder = ws.root / "cache" / "mask_previews"
    previews, sources = {}, {}
    for face_id in ids:
        face = ws.facesets.face(face_id)
        crop = cv2.imread(str(face.image), cv2.IMREAD_COLOR)
        if crop is None:
            raise EngineError("not_found", f"the crop of face {face.id} is missing: {face.image}")
        mask, source = ws.masks.mask_of(face, crop.shape[0])
        key = hashlib.sha1((np.round(mask * 255).astype(np.uint8)).tobytes())
        key.update(f"{source}:{face.image.stat().st_mtime_ns}".encode())
        out = folder / f"face{face.id}_{key.hexdigest()[:16]}.png"
        if not out.is_file():
            write_image(out, _overlay(crop, mask))
            for old in folder.glob(f"face{face.id}_*.png"):  # one preview per face stays on disk
                if old != out:
                    old.unlink(missing_ok=True)
        previews[str(face.id)], sources[str(face.id)] = str(out), source
    return {"previews": previews, "sources": sources}


def mask_remove(ws: Workspace, args: dict) -> dict:
    return {"removed": ws.masks.remove_learned(arg(args, "faceset", str))}


MASK_OPS: dict = {
    "mask.labels": mask_labels, "mask.label.get": mask_label_get, "mask.label.set": mask_label_set,
    "mask.frame": mask_frame, "mask.preview": mask_preview, "mask.remove": mask_remove,
}
