"""Faces stage: facesets into a workspace, from DeepFaceLab aligned JPGs or from a folder of crops
described by one faceset.json (what export.py writes).

Imported faces are re-aligned from their landmarks into our crop convention, so they mix with
extracted ones.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from ..errors import Cancelled, EngineError
from ..facesets import FaceRecord
from ..geometry.align import FACE_TYPES, align_transform, invert, transform_points
from ..geometry.pose import pose_from_68
from ..media.encode import write_image
from ..workspace import Workspace
from .dfl_jpeg import dfl_face, read_dfl_jpeg
from .quality import face_quality

DFL_TO_OURS = {"half_face": "half", "midfull_face": "mid_full", "full_face": "full", "whole_face": "whole_face",
               "head": "head"}
OURS_TO_DFL = {ours: dfl for dfl, ours in DFL_TO_OURS.items()}
SIDECAR = "faceset.json"
FORMAT, FORMAT_VERSION = "swapline-faceset", 1
BATCH = 64  # faces per catalog commit
MAX_SKIPPED = 20  # reasons kept in a result; the count covers the rest
_IMAGES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"}


def _compose(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The 2x3 transform applying `b`, then `a`."""
    return np.hstack([a[:, :2] @ b[:, :2], (a[:, :2] @ b[:, 2] + a[:, 2])[:, None]])


def _stretch(small: tuple, big: tuple) -> np.ndarray:
    """Pixels of an image resized to shape `small` → pixels of the one at shape `big` (cv2.resize's
    pixel centres: x = (x_small + 0.5) * w / w_small - 0.5)."""
    fx, fy = big[1] / small[1], big[0] / small[0]
    return np.array([[fx, 0, 0.5 * fx - 0.5], [0, fy, 0.5 * fy - 0.5]])


def _warp(image: np.ndarray, m: np.ndarray, size: int, border: int = cv2.BORDER_REPLICATE) -> np.ndarray:
    scale = float(np.sqrt(abs(np.linalg.det(m[:, :2]))))
    if scale < 0.5:  # warpAffine samples without averaging: shrink big crops first so they do not alias
        h, w = image.shape[:2]
        small = cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
        m, image = _compose(m, _stretch(small.shape, image.shape)), small
    return cv2.warpAffine(image, m, (size, size), flags=cv2.INTER_CUBIC, borderMode=border)


@dataclass
class _Incoming:
    """One face on its way in: its crop as found, where that crop came from, what it carries."""

    source: str  # for messages: the file, or the entry of a faceset.json
    image: np.ndarray  # the crop as found
    to_image: np.ndarray  # frame -> that crop
    lm68: np.ndarray  # (68, 2) frame pixels
    face_type: str  # ours, for what the found crop holds
    media_id: int
    frame: int
    face_index: int
    track_key: object  # faces with one key share a track
    box: tuple | None = None
    score: float = 1.0
    extra: dict = field(default_factory=dict)
    mask: np.ndarray | None = None  # any size, stretched over the found crop
    polys: list = field(default_factory=list)  # (include, points in the found crop)
    pose: tuple[float, float, float] | None = None


class _FacesetWriter:
    """Re-aligns incoming faces into one faceset and commits them in batches.

    The first face decides the face type and size of a faceset that does not exist yet; one that
    exists keeps its own. Tracks are numbered after the faceset's existing ones.
    """

    def __init__(self, ws: Workspace, name: str, size: int | None) -> None:
        if size is not None and not 64 <= size <= 1024:
            raise EngineError("bad_request", f"face size {size} is outside 64..1024")
        existing = ws.facesets.find(name)
        self.ws, self.name, self.dir = ws, name, ws.faceset_dir(name)
        self.created = existing is None  # a faceset made by this import takes the export's choice of people
        self.face_type = existing["face_type"] if existing else None
        self.size = size or (existing["size"] if existing else None)
        self.id: int | None = None
        self.pending: list[FaceRecord] = []
        self.used: set[tuple[int, int, int]] = set()
        self.tracks: dict = {}
        self.first_track = 0
        self.stored, self.skipped, self.skipped_count = 0, [], 0

    def place(self, face: _Incoming) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float]]:
        """(frame → our crop, found crop → our crop, pose), or a `bad_faceset` error if the face cannot
        make one of our crops. Touches nothing."""
        ftype = self.face_type or face.face_type
        if FACE_TYPES[face.face_type].coverage < FACE_TYPES[ftype].coverage:
            raise EngineError("bad_faceset", f"{face.source}: a {face.face_type} crop holds too little of the head "
                                             f"for the {ftype} faceset {self.name!r}")
        size = self.size or int(np.clip(face.image.shape[1], 64, 1024))
        with np.errstate(all="ignore"):  # absurd numbers are caught below, not warned about
            pose = face.pose or pose_from_68(face.lm68)
            ours = align_transform(face.lm68, size, ftype, yaw=pose[0])
            warp = _compose(ours, invert(face.to_image))
            ok = np.isfinite(warp).all() and np.isfinite(pose).all() and 1e-3 < abs(np.linalg.det(warp[:, :2])) < 1e3
        if not ok or np.ptp(face.lm68, axis=0).min() < 1.0:
            raise EngineError("bad_faceset", f"{face.source}: its landmarks and transform do not place a face")
        return ours, warp, pose

    def store(self, face: _Incoming, placed: tuple) -> None:
        (ours, warp, (yaw, pitch, roll)), idx = placed, face.face_index
        if self.id is None:
            self.face_type = self.face_type or face.face_type
            self.size = self.size or int(np.clip(face.image.shape[1], 64, 1024))
            self.id = self.ws.facesets.ensure(self.name, self.face_type, self.size)
            self.first_track = self.ws.facesets.next_track(self.id)
        if face.track_key not in self.tracks:
            self.tracks[face.track_key] = self.first_track + len(self.tracks)
        while (face.media_id, face.frame, idx) in self.used:  # two faces claiming one frame's slot
            idx += 1
        self.used.add((face.media_id, face.frame, idx))
        crop = _warp(face.image, warp, self.size)
        path = self.dir / f"m{face.media_id}_f{face.frame:06d}_{idx}.jpg"
        write_image(path, crop)
        extra, mask = dict(face.extra), None
        if face.mask is not None:
            mask = _warp(face.mask, _compose(warp, _stretch(face.mask.shape, face.image.shape)), self.size,
                         cv2.BORDER_CONSTANT)
            write_image(path.with_name(f"{path.stem}_mask.png"), mask)
            extra["mask"] = str(path.with_name(f"{path.stem}_mask.png").relative_to(self.ws.root))
        if face.polys:
            extra["polys"] = [{"type": "include" if include else "exclude",
                               "pts": np.round(transform_points(warp, pts), 2).tolist()} for include, pts in face.polys]
        box = face.box if face.box is not None else (*face.lm68.min(0), *face.lm68.max(0))
        sharpness, brightness = face_quality(crop, mask)
        self.pending.append(FaceRecord(
            media_id=face.media_id, frame=face.frame, face_index=idx, box=tuple(float(v) for v in box),
            score=face.score, landmarks=face.lm68, landmarks68=face.lm68, transform=ours, image=path,
            track=self.tracks[face.track_key], yaw=yaw, pitch=pitch, roll=roll, sharpness=sharpness,
            brightness=brightness, face_type=self.face_type, size=self.size, extra=extra))
        if len(self.pending) >= BATCH:
            self.flush()

    def flush(self) -> None:
        # crops are on disk before their rows commit: a crash leaves an orphan file, never a row without one
        with self.ws.transaction():
            for face in self.pending:
                polys = face.extra.pop("polys", None)
                face_id = self.ws.facesets.add(self.id, face)
                if polys:  # DeepFaceLab's drawn polygons become our labels (one home: the label table)
                    self._label(face_id, polys)
        self.stored += len(self.pending)
        self.pending = []

    def _label(self, face_id: int, polys: list[dict]) -> None:
        # crop pixels (OpenCV's, centres on integers) -> fractions of the crop
        label = [{"include": p["type"] == "include", "points": ((np.asarray(p["pts"], np.float64) + 0.5) / self.size).tolist()}
                 for p in polys if len(p["pts"]) >= 3]
        try:
            self.ws.masks.set_label(face_id, label)
        except EngineError as exc:  # a malformed polygon costs the label, not the face
            self.skip(f"the mask polygons of face {face_id}: {exc.message}", files=0)

    def skip(self, reason: str, files: int = 1) -> None:
        self.skipped_count += files
        if len(self.skipped) < MAX_SKIPPED:
            self.skipped.append(reason)

    def run(self, items: list, read, report, should_stop, folder: Path) -> dict:
        """Read each item into an `_Incoming` with `read` and store it; files that fail are skipped."""
        for i, item in enumerate(items):
            if should_stop():
                self.flush()  # what was imported stays, crops and rows together
                raise Cancelled()
            try:
                face = read(item, i)
                placed = self.place(face)
            except EngineError as exc:
                if exc.code not in ("bad_faceset", "io_error"):  # reading failed; writing failures stop us
                    raise
                self.skip(exc.message)
            else:
                self.store(face, placed)
            report((i + 1) / len(items), f"face {i + 1}/{len(items)}",
                   {"faces": self.stored + len(self.pending), "skipped": self.skipped_count})
        self.flush()
        if self.stored == 0:
            why = self.skipped[0] if self.skipped else "it holds no faces"
            raise EngineError("bad_faceset", f"no face could be imported from {folder}: {why}")
        return {"faceset": self.name, "faces": self.stored, "skipped": self.skipped,
                "skipped_count": self.skipped_count}


def _folder(folder: Path) -> Path:
    folder = Path(folder)
    if not folder.is_dir():
        raise EngineError("not_found", f"no folder {folder}")
    return folder


def _mask_image(data: bytes) -> np.ndarray | None:
    mask = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE)
    if mask is None or max(mask.shape) > 4096:
        return None
    return mask if mask.max() > 1 else mask * np.uint8(255)  # some writers store 0/1, not 0/255


def _clip_and_frame(source_filename: str | None, index: int) -> tuple[str, int]:
    """DeepFaceLab names a face after its frame image ("00042.png", "shot2_00042.png"): the digits are
    the frame, what precedes them the clip. A name without digits is its own clip."""
    stem = Path(source_filename or "").stem
    m = re.fullmatch(r"(.*?)(\d{1,9})", stem)  # nine digits at most: frame numbers fit the catalog
    return (m.group(1).rstrip("_-. "), int(m.group(2))) if m else (stem, index)


def import_dfl_faceset(ws: Workspace, folder: Path, faceset: str, size: int | None, report, should_stop) -> dict:
    """Import a DeepFaceLab "aligned" folder into `faceset`, re-aligned to our convention."""
    folder = _folder(folder)
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in _IMAGES)
    jpgs = [p for p in files if p.suffix.lower() in (".jpg", ".jpeg")]
    writer = _FacesetWriter(ws, faceset, size)
    if len(files) > len(jpgs):
        others = len(files) - len(jpgs)
        writer.skip(f"{others} non-JPG images: only DeepFaceLab's JPG faces are read", others)

    def read(path: Path, i: int) -> _Incoming:
        image, meta = read_dfl_jpeg(path)
        face = dfl_face(meta, path)
        if face.face_type not in DFL_TO_OURS and face.face_type != "mark_only":
            raise EngineError("bad_faceset", f"{path}: unknown face type {face.face_type!r}")
        lm_src, to_image = face.source_geometry()
        clip, frame = _clip_and_frame(face.source_filename, i)
        mask = _mask_image(face.xseg_mask) if face.xseg_mask else None
        index = re.search(r"_(\d{1,3})$", path.stem)  # "00042_1.jpg": the frame's second face
        extra = {"source": "deepfacelab", "dfl_face_type": face.face_type, "source_filename": face.source_filename,
                 "eyebrows_expand_mod": face.eyebrows_expand_mod,
                 "xseg_mask": "unreadable" if face.xseg_mask and mask is None else face.xseg_mask is not None}
        return _Incoming(str(path), image, to_image, lm_src, DFL_TO_OURS.get(face.face_type, "full"),
                         ws.register_placeholder_media(f"dfl:{folder.resolve()}/{clip}"), frame,
                         int(index.group(1)) if index else 0, clip, box=face.source_rect, extra=extra, mask=mask,
                         polys=face.polys)

    return writer.run(jpgs, read, report, should_stop, folder)


def _finite(value) -> float:
    value = float(value)
    if not np.isfinite(value):
        raise ValueError(f"{value} is not a number")
    return value


def _sidecar_media(ws: Workspace, path: str, info: dict) -> int:
    """The media row of an exported face's video: the clip itself when it is here, else a placeholder."""
    if not path.startswith(("dfl:", "import:")) and Path(path).is_file():
        return ws.register_media(Path(path), int(info.get("width") or 0), int(info.get("height") or 0),
                                 float(info.get("fps") or 0.0), int(info.get("frames") or 0))
    return ws.register_placeholder_media(path if path.startswith(("dfl:", "import:")) else f"import:{path}")


def import_faceset(ws: Workspace, folder: Path, faceset: str, size: int | None, report, should_stop) -> dict:
    """Import a folder written by `export_faceset` (or, without a faceset.json, a DeepFaceLab one)."""
    folder = _folder(folder)
    if not (folder / SIDECAR).is_file():
        return import_dfl_faceset(ws, folder, faceset, size, report, should_stop)
    try:
        doc = json.loads((folder / SIDECAR).read_text(encoding="utf-8"))
        ftype, entries, media = doc["face_type"], list(doc["faces"]), dict(doc.get("media", {}))
        if doc.get("format") != FORMAT or int(doc.get("version", 0)) > FORMAT_VERSION or ftype not in FACE_TYPES:
            raise ValueError(f"format {doc.get('format')!r} version {doc.get('version')!r}, face type {ftype!r}")
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise EngineError("bad_faceset", f"{folder / SIDECAR} is not a faceset description we can read: {exc}") from None
    media_ids: dict[str, int] = {}

    def read(e: dict, i: int) -> _Incoming:
        try:
            image = cv2.imread(str(folder / Path(e["file"]).name))
            if image is None:
                raise ValueError(f"its image {e['file']!r} is missing or unreadable")
            extra = dict(e.get("extra") or {})
            mask = cv2.imread(str(folder / Path(extra.pop("mask")).name), cv2.IMREAD_GRAYSCALE) \
                if extra.get("mask") else None
            polys = [(p["type"] == "include", np.asarray(p["pts"], np.float64).reshape(-1, 2))
                     for p in extra.pop("polys", [])]
            frame, face_index, track = int(e["frame"]), int(e.get("face_index", 0)), int(e.get("track", 0))
            if not all(0 <= v < 2**31 for v in (frame, face_index, track)):
                raise ValueError(f"frame {frame}, face {face_index} or track {track} is out of range")
            if str(e["media"]) not in media_ids:
                media_ids[str(e["media"])] = _sidecar_media(ws, str(e["media"]), dict(media.get(str(e["media"]), {})))
            return _Incoming(
                f"{folder / SIDECAR}: face {i}", image, np.asarray(e["transform"], np.float64).reshape(2, 3),
                np.asarray(e["landmarks68"], np.float64).reshape(68, 2), ftype, media_ids[str(e["media"])], frame,
                face_index, track, box=tuple(_finite(v) for v in e["box"][:4]) if e.get("box") else None,
                score=_finite(e.get("score", 1.0)), extra=extra, mask=mask, polys=polys,
                pose=tuple(_finite(e[k]) for k in ("yaw", "pitch", "roll")))
        except (KeyError, IndexError, ValueError, TypeError, AttributeError) as exc:
            raise EngineError("bad_faceset", f"{folder / SIDECAR}: face {i} is malformed ({type(exc).__name__}: "
                                             f"{exc})") from None

    writer = _FacesetWriter(ws, faceset, size)
    result = writer.run(entries, read, report, should_stop, folder / SIDECAR)
    if isinstance(doc.get("people"), list) and writer.created:
        chosen = [writer.tracks[t] for t in doc["people"] if t in writer.tracks]
        ws.facesets.choose_people(faceset, chosen or None)
    return result
