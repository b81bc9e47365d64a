"""Faces stage: facesets in and out of a workspace, as DeepFaceLab aligned JPGs or as a folder of
crops described by one faceset.json.

Imported faces are re-aligned from their landmarks into our crop convention, so they mix with
extracted ones; exports carry each face's frame geometry, so nothing has to be detected again.
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
from ..files import atomic_write
from ..geometry.align import FACE_TYPES, align_transform, invert, transform_points
from ..geometry.pose import pose_from_68
from ..media.encode import write_image
from ..workspace import Workspace
from .dfl_jpeg import dfl_face, embed_metadata, read_dfl_jpeg
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


def _placeholder_media(ws: Workspace, path: str) -> int:
    """A media row for faces whose video is not here: no file to hash, known by a made-up path."""
    ws._x("INSERT OR IGNORE INTO media (path, width, height, fps, frames) VALUES (?,?,?,?,?)", (path, 0, 0, 0.0, 0))
    return ws._q("SELECT id FROM media WHERE path=?", (path,))[0]["id"]


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
        rows = ws._q("SELECT face_type, size FROM facesets WHERE name=?", (name,))
        self.ws, self.name, self.dir = ws, name, ws.faceset_dir(name)
        self.created = not rows  # a faceset made by this import takes the export's choice of people
        self.face_type = rows[0]["face_type"] if rows else None
        self.size = size or (rows[0]["size"] if rows else None)
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
                self.ws.facesets.add(self.id, face)
        self.stored += len(self.pending)
        self.pending = []

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
                         _placeholder_media(ws, f"dfl:{folder.resolve()}/{clip}"), frame,
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
    return _placeholder_media(ws, path if path.startswith(("dfl:", "import:")) else f"import:{path}")


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


def _dfl_metadata(face: FaceRecord, lm_crop: np.ndarray, media_path: str, mask: bytes | None) -> dict:
    """DeepFaceLab's metadata for one of our faces: our crop is its aligned image."""
    extra = face.extra
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
    media = {r["id"]: dict(r) for r in ws._q("SELECT id, path, width, height, fps, frames FROM media")}
    entries, skipped = [], []
    for i, face in enumerate(faces):
        if should_stop():
            raise Cancelled()
        report(i / len(faces), f"face {i + 1}/{len(faces)}", {"faces": len(entries), "skipped": len(skipped)})
        name = f"{i:06d}.jpg" if dfl else f"{i:06d}{face.image.suffix.lower()}"
        try:
            data = face.image.read_bytes()
            mask = (ws.root / face.extra["mask"]).read_bytes() if face.extra.get("mask") else None
        except OSError as exc:
            skipped.append(f"face {face.id}: {exc.strerror or exc}")
            continue
        lm_crop = transform_points(face.transform, face.landmarks68)
        path = media[face.media_id]["path"]
        extra = dict(face.extra)
        if dfl:
            if face.image.suffix.lower() not in (".jpg", ".jpeg"):
                data = cv2.imencode(".jpg", cv2.imread(str(face.image)), [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()
            data = embed_metadata(data, _dfl_metadata(face, lm_crop, path, mask), out_dir / name)
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
