"""Shared piece: the faces of one video in a faceset, described for a bundle and stored from one.

The faceset export (faces/export.py) re-aligns faces on import and keeps only 68 landmarks, so a
merge on the other engine would place faces a little differently. A bundle carries the catalog rows
as they are instead: dense and 68-point landmarks, transforms, tracks, the chosen person, drawn
labels, learned and imported masks, byte for byte. Floats travel as JSON numbers, which round-trip
float32 and float64 exactly. The video is named by its content hash, not by a media id.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .errors import EngineError
from .facesets import FaceRecord
from .files import content_hash
from .geometry.align import FACE_TYPES
from .workspace import Workspace

FACES_DOC = "faceset/faces.json"
MAX_LANDMARKS = 2000
_IMAGE_EXTS = (".jpg", ".png")


def media_row(ws: Workspace, video: Path) -> dict:
    """The catalog's media row of a video (with its content hash): the faces' key across engines."""
    media_id = ws.media_id(Path(video))
    if media_id is None:
        raise EngineError("no_faces", f"no faces were extracted from {Path(video).name} in this workspace")
    # the workspace has no public read of one media row with its hash; the catalog is ours to read
    row = ws._q("SELECT id, path, width, height, fps, frames, hash FROM media WHERE id=?", (media_id,))[0]
    return dict(row)


def media_by_hash(ws: Workspace, digest: str, info: dict) -> int:
    """The media row of the video with this content, made as a placeholder when the video is not here
    yet: registering the uploaded file later finds it by hash and keeps its faces."""
    with ws.transaction():
        rows = ws._q("SELECT id FROM media WHERE hash=? ORDER BY id", (digest,))
        if rows:
            return rows[0]["id"]
        return ws._x("INSERT INTO media (path, width, height, fps, frames, hash) VALUES (?,?,?,?,?,?)",
                     (f"bundle:{digest}", int(info["width"]), int(info["height"]), float(info["fps"]),
                      int(info["frames"]), digest))


def describe(ws: Workspace, faceset: str, media_id: int) -> tuple[dict, dict[str, Path]]:
    """(the faces document, member name -> file) for every face of one video in a faceset. Members
    are named by position, so two workspaces holding the same faces describe them identically."""
    fs = ws.facesets.get(faceset)
    faces = ws.facesets.faces(faceset, media_id, everyone=True)
    tracks = {f.track for f in faces}
    chosen = sorted(t["track"] for t in ws.facesets.tracks(faceset) if t["chosen"] and t["track"] in tracks)
    entries, files = [], {}
    for i, f in enumerate(faces):
        ext = f.image.suffix.lower()
        if ext == ".jpeg":
            ext = ".jpg"
        if ext not in _IMAGE_EXTS:
            raise EngineError("bad_request", f"face {f.id} has a {ext} crop; a bundle carries JPG and PNG only")
        image = f"faceset/{i:06d}{ext}"
        files[image] = f.image
        extra = dict(f.extra)
        if extra.get("mask"):
            extra["mask"] = f"faceset/{i:06d}_mask.png"
            files[extra["mask"]] = ws.root / f.extra["mask"]
        learned = ws.masks.learned(f.id)
        if learned is not None:
            files[f"faceset/{i:06d}_learned.png"] = learned
        entries.append({
            "frame": f.frame, "face_index": f.face_index, "box": [float(v) for v in f.box], "score": float(f.score),
            "landmarks": np.asarray(f.landmarks, np.float32).tolist(),
            "landmarks68": np.asarray(f.landmarks68, np.float32).tolist(),
            "transform": np.asarray(f.transform, np.float64).tolist(), "image": image, "track": f.track,
            "yaw": f.yaw, "pitch": f.pitch, "roll": f.roll, "sharpness": f.sharpness, "brightness": f.brightness,
            "face_type": f.face_type, "size": f.size, "extra": extra, "label": ws.masks.label(f.id),
            "learned": f"faceset/{i:06d}_learned.png" if learned is not None else None,
            "learned_model": ws.masks.learned_model(f.id) if learned is not None else None,
            "files": {},  # filled below: each member's sha256, so equal docs mean equal pixels too
        })
    for entry in entries:
        for member in (entry["image"], entry["extra"].get("mask"), entry["learned"]):
            if member:
                entry["files"][member] = content_hash(files[member])
    doc = {"face_type": fs["face_type"], "size": fs["size"], "people": chosen, "faces": entries}
    return doc, files


def _floats(value, shape: tuple, what: str) -> np.ndarray:
    a = np.asarray(value, np.float64)
    if a.shape != shape and not (shape[0] == -1 and a.ndim == 2 and a.shape[1] == shape[1]):
        raise ValueError(f"{what} has shape {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError(f"{what} is not finite")
    return a


def _int(value, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**31:
        raise ValueError(f"{what} {value!r} is not a small non-negative integer")
    return value


def check_doc(doc) -> None:
    """Refuse a faces document that is not the shape `describe` writes (bundles come from the network)."""
    try:
        if not isinstance(doc, dict) or doc.get("face_type") not in FACE_TYPES:
            raise ValueError("unknown face type")
        if not 64 <= _int(doc.get("size"), "size") <= 1024:
            raise ValueError("face size outside 64..1024")
        if not isinstance(doc.get("faces"), list) or not doc["faces"]:
            raise ValueError("no faces")
        if not isinstance(doc.get("people"), list):
            raise ValueError("no chosen person")
        [_int(t, "track") for t in doc["people"]]
        for e in doc["faces"]:
            for key in ("frame", "face_index", "track", "size"):
                _int(e[key], key)
            _floats(e["box"], (4,), "box")
            _floats([e[k] for k in ("score", "yaw", "pitch", "roll", "sharpness", "brightness")], (6,), "numbers")
            lm = _floats(e["landmarks"], (-1, 2), "landmarks")
            if len(lm) > MAX_LANDMARKS:
                raise ValueError("too many landmarks")
            _floats(e["landmarks68"], (68, 2), "landmarks68")
            _floats(e["transform"], (2, 3), "transform")
            if e["face_type"] not in FACE_TYPES or not isinstance(e["extra"], dict) or \
                    not isinstance(e["files"], dict) or e["image"] not in e["files"]:
                raise ValueError("face type, extra or files malformed")
            if e["label"] is not None and not isinstance(e["label"], list):
                raise ValueError("label malformed")
            if e["learned"] is not None and (e["learned"] not in e["files"] or not isinstance(e["learned_model"], str)):
                raise ValueError("learned mask malformed")
            mask = e["extra"].get("mask")
            if mask is not None and mask not in e["files"]:
                raise ValueError("imported mask malformed")
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise EngineError("bad_bundle", f"the bundle's faces are malformed: {exc}") from None


def store(ws: Workspace, faceset: str, doc: dict, media_id: int, files: dict[str, Path]) -> int:
    """Create `faceset` (which must not exist) holding the document's faces of `media_id`; `files`
    maps members to files already placed in the faceset's folder. Returns the faces stored."""
    fs_id = ws.facesets.ensure(faceset, doc["face_type"], doc["size"])
    try:
        _store_faces(ws, faceset, fs_id, doc, media_id, files)
    except BaseException:
        ws._x("DELETE FROM facesets WHERE id=?", (fs_id,))  # all or nothing: a half faceset would be reused
        raise
    return len(doc["faces"])


def _store_faces(ws: Workspace, faceset: str, fs_id: int, doc: dict, media_id: int, files: dict[str, Path]) -> None:
    learned: dict[str, list] = {}
    with ws.transaction():
        for e in doc["faces"]:
            extra = dict(e["extra"])
            if extra.get("mask"):
                extra["mask"] = str(files[extra["mask"]].relative_to(ws.root))
            face_id = ws.facesets.add(fs_id, FaceRecord(
                media_id=media_id, frame=e["frame"], face_index=e["face_index"], box=tuple(e["box"]),
                score=e["score"], landmarks=np.asarray(e["landmarks"], np.float32).reshape(-1, 2),
                landmarks68=np.asarray(e["landmarks68"], np.float32), transform=np.asarray(e["transform"], np.float64),
                image=files[e["image"]], track=e["track"], yaw=e["yaw"], pitch=e["pitch"], roll=e["roll"],
                sharpness=e["sharpness"], brightness=e["brightness"], face_type=e["face_type"], size=e["size"],
                extra=extra))
            if e["label"]:
                ws.masks.set_label(face_id, e["label"])
            if e["learned"]:
                learned.setdefault(e["learned_model"], []).append((face_id, files[e["learned"]]))
    for model, items in learned.items():
        ws.masks.set_learned(items, model)
    tracks = {e["track"] for e in doc["faces"]}
    ws.facesets.choose_people(faceset, [t for t in doc["people"] if t in tracks] or None)


def same_faces(ws: Workspace, faceset: str, doc: dict, media_id: int) -> bool:
    """Whether the workspace's faceset already holds exactly the document's faces of this video."""
    if ws.facesets.find(faceset) is None:
        return False
    try:
        here, _ = describe(ws, faceset, media_id)
    except EngineError:
        return False
    return _canon(here) == _canon(doc)


def _canon(doc: dict) -> str:
    # float32 values written as JSON numbers read back equal, so text compares the documents
    return json.dumps(doc, sort_keys=True)
