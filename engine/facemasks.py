"""Shared piece: the masks of stored faces: hand-drawn labels, learned masks, and the one mask a
face has when training or merging asks for it.

Labels are include/exclude polygons in face space (fractions of the aligned crop), kept as JSON in
the catalog. Learned masks are 8-bit gray PNGs at crop size in the faceset's folder next to the
crops, each recorded with the model that drew it. Both rows go with their face: the foreign keys
cascade, and the faceset store unlinks the learned files along with the crops.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from .errors import EngineError
from .geometry.align import transform_points
from .geometry.hull import hull_mask
from .geometry.polygons import check_polygons, exclusion, rasterize

if TYPE_CHECKING:
    from .facesets import FaceRecord
    from .workspace import Workspace

MASK_SCHEMA = """
CREATE TABLE IF NOT EXISTS mask_labels (
    face_id INTEGER PRIMARY KEY REFERENCES faces(id) ON DELETE CASCADE,
    polygons TEXT NOT NULL,       -- JSON [{include, points: [[x, y], ...]}], fractions of the crop
    updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS learned_masks (
    face_id INTEGER PRIMARY KEY REFERENCES faces(id) ON DELETE CASCADE,
    path TEXT NOT NULL,           -- 8-bit gray PNG at crop size, relative to the workspace root
    model TEXT NOT NULL,
    updated REAL NOT NULL
);
"""



class MaskStore:
    """Labels and learned masks of one workspace's faces."""

    def __init__(self, ws: "Workspace") -> None:
        self._ws = ws
        self._q, self._x = ws._q, ws._x

    # Hand-drawn labels -----------------------------------------------------------------------

    def set_label(self, face_id: int, polygons: list[dict]) -> None:
        """Store a face's label (face space); an empty list deletes it."""
        try:
            polygons = check_polygons(polygons)
        except ValueError as exc:
            raise EngineError("bad_request", f"label of face {face_id}: {exc}") from None
        if not self._q("SELECT 1 FROM faces WHERE id=?", (int(face_id),)):
            raise EngineError("not_found", f"no face {face_id} in this workspace")
        if not polygons:
            self._x("DELETE FROM mask_labels WHERE face_id=?", (int(face_id),))
            return
        self._x("INSERT OR REPLACE INTO mask_labels (face_id, polygons, updated) VALUES (?,?,?)",
                (int(face_id), json.dumps(polygons), time.time()))

    def label(self, face_id: int) -> list[dict] | None:
        rows = self._q("SELECT polygons FROM mask_labels WHERE face_id=?", (int(face_id),))
        return json.loads(rows[0]["polygons"]) if rows else None

    def labelled(self, faceset: str) -> list[int]:
        """Ids of the faceset's faces that carry a label, every person's, in frame order."""
        fs = self._ws.facesets.get(faceset)
        rows = self._q("SELECT f.id FROM faces f JOIN mask_labels l ON l.face_id=f.id WHERE f.faceset_id=?"
                       " ORDER BY f.media_id, f.frame, f.face_index", (fs["id"],))
        return [r["id"] for r in rows]

    def masked(self, faceset: str) -> set[int]:
        """Ids of the faceset's faces whose mask is not the landmark hull (drawn, learned or imported)."""
        fs = self._ws.facesets.get(faceset)
        rows = self._q("SELECT id FROM faces f WHERE faceset_id=? AND (json_extract(extra, '$.mask') IS NOT NULL"
                       " OR EXISTS (SELECT 1 FROM mask_labels WHERE face_id=f.id)"
                       " OR EXISTS (SELECT 1 FROM learned_masks WHERE face_id=f.id))", (fs["id"],))
        return {r["id"] for r in rows}

    def faceset_of(self, face_id: int) -> str:
        """The name of the faceset a face belongs to."""
        rows = self._q("SELECT s.name FROM faces f JOIN facesets s ON s.id=f.faceset_id WHERE f.id=?", (int(face_id),))
        if not rows:
            raise EngineError("not_found", f"no face {face_id} in this workspace")
        return rows[0]["name"]

    # Learned masks ---------------------------------------------------------------------------

    @staticmethod
    def learned_path(face: "FaceRecord") -> Path:
        """Where a face's learned mask belongs: beside its crop."""
        return Path(face.image).with_name(f"{Path(face.image).stem}_learned.png")

    def set_learned(self, items: list[tuple[int, Path]], model: str) -> None:
        """Record written mask PNGs (absolute paths inside the workspace) for these faces, together."""
        rows, replaced = [], []
        for face_id, path in items:
            try:
                rel = Path(path).resolve().relative_to(self._ws.root)
            except ValueError:
                raise EngineError("bad_request", f"learned mask {path} is outside the workspace") from None
            rows.append((int(face_id), str(rel), model, time.time()))
        with self._ws.transaction():
            for face_id, rel, _, _ in rows:
                old = self._q("SELECT path FROM learned_masks WHERE face_id=?", (face_id,))
                if old and old[0]["path"] != rel:
                    replaced.append(old[0]["path"])
            for row in rows:
                # a face deleted while its mask was being drawn gets no row (and loses the file below)
                self._x("INSERT OR REPLACE INTO learned_masks (face_id, path, model, updated)"
                        " SELECT ?,?,?,? WHERE EXISTS (SELECT 1 FROM faces WHERE id=?)", (*row, row[0]))
            kept = {r["face_id"] for r in self._q(
                f"SELECT face_id FROM learned_masks WHERE face_id IN ({','.join('?' * len(rows))})",
                tuple(r[0] for r in rows))} if rows else set()
        replaced += [rel for face_id, rel, _, _ in rows if face_id not in kept]
        for rel in replaced:  # after the commit: a crash in between leaves an orphan, not a dangling row
            (self._ws.root / rel).unlink(missing_ok=True)

    def learned(self, face_id: int) -> Path | None:
        rows = self._q("SELECT path FROM learned_masks WHERE face_id=?", (int(face_id),))
        return self._ws.root / rows[0]["path"] if rows else None

    def learned_model(self, face_id: int) -> str | None:
        rows = self._q("SELECT model FROM learned_masks WHERE face_id=?", (int(face_id),))
        return rows[0]["model"] if rows else None

    def remove_learned(self, faceset: str) -> int:
        """Forget the faceset's learned masks (rows and files); labels stay."""
        fs = self._ws.facesets.get(faceset)
        where = "face_id IN (SELECT id FROM faces WHERE faceset_id=?)"
        with self._ws.transaction():
            paths = [r["path"] for r in self._q(f"SELECT path FROM learned_masks WHERE {where}", (fs["id"],))]
            self._x(f"DELETE FROM learned_masks WHERE {where}", (fs["id"],))
        for rel in paths:
            (self._ws.root / rel).unlink(missing_ok=True)
        return len(paths)

    # The mask a face has -----------------------------------------------------------------------

    def mask_of(self, face: "FaceRecord", size: int | None = None, brow_expand: float = 0.25) -> tuple[np.ndarray, str]:
        """A face's mask (float32 (size, size) 0..1 over its stored crop; size defaults to the crop's)
        and where it came from: a drawn label, else a learned mask, else one imported with the face
        (DeepFaceLab xseg), else the landmark hull with the forehead raised by `brow_expand`."""
        size = int(size or crop_side(face))
        polygons = self.label(face.id) if face.id is not None else None
        if polygons:
            return rasterize(polygons, size), "label"
        learned = self.learned(face.id) if face.id is not None else None
        for path, source in ((learned, "learned"),
                             (self._ws.root / face.extra["mask"] if face.extra.get("mask") else None, "imported")):
            mask = _read_mask(path, size) if path is not None else None
            if mask is not None:
                return mask, source
        return self.hull_of(face, size, brow_expand), "hull"

    @staticmethod
    def hull_of(face: "FaceRecord", size: int | None = None, brow_expand: float = 0.25) -> np.ndarray:
        """The landmark hull of a face over its stored crop (float32 (size, size) 0..1)."""
        crop = crop_side(face)
        size = int(size or crop)
        # crop pixels at another size: continuous coordinates scale, OpenCV's are half a pixel off
        lm = (transform_points(face.transform, face.landmarks68) + 0.5) * (size / crop) - 0.5
        return hull_mask(lm, (size, size), brow_expand)

    def exclusion_of(self, face: "FaceRecord", size: int | None = None) -> np.ndarray | None:
        """The face's drawn exclusion zones (float32 (size, size)), or None when it has none."""
        polygons = self.label(face.id) if face.id is not None else None
        if not polygons:
            return None
        return exclusion(polygons, int(size or crop_side(face)))


def crop_side(face: "FaceRecord") -> int:
    """The side of a face's stored crop in pixels."""
    if face.size:
        return int(face.size)
    img = cv2.imread(str(face.image), cv2.IMREAD_GRAYSCALE)  # catalogs from before sizes were stored
    if img is None:
        raise EngineError("not_found", f"the crop of face {face.id} is missing: {face.image}")
    return img.shape[0]


def _read_mask(path: Path, size: int) -> np.ndarray | None:
    """A gray mask file as float32 0..1 at `size`, or None when it is missing or unreadable."""
    img = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if img is None:
        return None
    if img.shape != (size, size):
        shrink = img.shape[0] > size
        img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    return img.astype(np.float32) / 255.0
