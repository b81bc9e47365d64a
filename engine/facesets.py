"""Shared piece: the faceset catalog, every stored face with its landmarks, pose, track and quality.

Faces live in the workspace's SQLite catalog, one row per face with its aligned crop on disk.
A faceset can hold several people: faces carry a track id (one per person per shot), tracks of one
person are grouped when an identity embedding is available, and the faceset records which tracks
are "the person" it stands for. Without a choice, that is the person with the most faces (with
identities) or each shot's longest track (without), which is right for the usual one-person shot.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .errors import EngineError

if TYPE_CHECKING:
    from .workspace import Workspace

FACESET_SCHEMA = """
CREATE TABLE IF NOT EXISTS facesets (
    id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, face_type TEXT NOT NULL, size INTEGER NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS faces (
    id INTEGER PRIMARY KEY,
    faceset_id INTEGER NOT NULL REFERENCES facesets(id) ON DELETE CASCADE,
    media_id INTEGER NOT NULL REFERENCES media(id),
    frame INTEGER NOT NULL, face_index INTEGER NOT NULL,
    box TEXT NOT NULL, score REAL NOT NULL,
    landmarks BLOB NOT NULL,      -- dense FaceMesh points (N,2) float32, frame pixels
    landmarks68 BLOB NOT NULL,    -- 68-point layout (68,2) float32, frame pixels
    transform BLOB NOT NULL,      -- frame -> aligned crop (2,3) float64
    image TEXT NOT NULL,          -- aligned crop, relative to the workspace root
    UNIQUE (faceset_id, media_id, frame, face_index)
);
CREATE INDEX IF NOT EXISTS faces_by_media ON faces (faceset_id, media_id, frame);
CREATE TABLE IF NOT EXISTS track_identities (
    faceset_id INTEGER NOT NULL REFERENCES facesets(id) ON DELETE CASCADE,
    track INTEGER NOT NULL,
    embedding BLOB NOT NULL,      -- identity descriptor (128,) float32 of the track's best faces
    person INTEGER NOT NULL,      -- tracks of one person share this (the smallest of their track ids)
    PRIMARY KEY (faceset_id, track)
);
CREATE TABLE IF NOT EXISTS extractions (
    faceset_id INTEGER NOT NULL REFERENCES facesets(id) ON DELETE CASCADE,
    media_id INTEGER NOT NULL REFERENCES media(id),
    frame_start INTEGER NOT NULL, frame_end INTEGER NOT NULL, settings TEXT NOT NULL,
    done_until INTEGER NOT NULL, updated REAL NOT NULL,
    PRIMARY KEY (faceset_id, media_id, frame_start, frame_end)
);
"""

# Columns added after the first release; old catalogs get them on open.
_FACE_COLUMNS = {
    "track": "INTEGER NOT NULL DEFAULT 0",
    "yaw": "REAL NOT NULL DEFAULT 0", "pitch": "REAL NOT NULL DEFAULT 0", "roll": "REAL NOT NULL DEFAULT 0",
    "sharpness": "REAL NOT NULL DEFAULT 0", "brightness": "REAL NOT NULL DEFAULT 0",
    "face_type": "TEXT NOT NULL DEFAULT 'full'", "size": "INTEGER NOT NULL DEFAULT 0",
    "extra": "TEXT NOT NULL DEFAULT '{}'",  # imported metadata (DeepFaceLab mask polygons, source name)
}
_FACESET_COLUMNS = {"people": "TEXT"}  # JSON list of chosen track ids; NULL = each shot's longest track


def migrate_facesets(db: sqlite3.Connection) -> None:
    for table, wanted in (("faces", _FACE_COLUMNS), ("facesets", _FACESET_COLUMNS)):
        have = {r[1] for r in db.execute(f"PRAGMA table_info({table})")}
        for name, decl in wanted.items():
            if name not in have:
                db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {decl}")
    db.execute("CREATE INDEX IF NOT EXISTS faces_by_track ON faces (faceset_id, track)")


@dataclass(frozen=True)
class FaceRecord:
    """One detected face as the catalog holds it (id is None until it is stored)."""

    media_id: int
    frame: int
    face_index: int  # order within its frame, largest first
    box: tuple[float, float, float, float]  # detection box, frame pixels
    score: float
    landmarks: np.ndarray  # (N, 2) frame pixels, smoothed over time
    landmarks68: np.ndarray  # (68, 2) frame pixels
    transform: np.ndarray  # (2, 3) frame -> aligned crop
    image: Path
    track: int = 0
    yaw: float = 0.0  # degrees; positive = the face turns to the image's right
    pitch: float = 0.0  # degrees; positive = looking up
    roll: float = 0.0  # degrees; positive = clockwise in the image
    sharpness: float = 0.0  # variance of the Laplacian of the aligned face
    brightness: float = 0.0  # mean luma of the aligned face, 0..255
    face_type: str = "full"
    size: int = 0
    extra: dict = field(default_factory=dict)
    id: int | None = None


# What _files needs of a face row: its crop, its metadata and its learned mask (facemasks.py's table)
_FILE_COLUMNS = "image, extra, (SELECT path FROM learned_masks WHERE face_id=faces.id) AS learned"


def _files(row: sqlite3.Row) -> list[str]:
    """The files a face row owns (relative to the workspace): its crop, an imported face's mask and
    a learned mask."""
    mask = json.loads(row["extra"] or "{}").get("mask")
    return [f for f in (row["image"], mask, row["learned"]) if f]


def _blob(a: np.ndarray, dtype) -> bytes:
    return np.ascontiguousarray(a, dtype=dtype).tobytes()


class FacesetStore:
    """Facesets and their faces in one workspace's catalog."""

    def __init__(self, ws: "Workspace") -> None:
        self._ws = ws
        self._q, self._x = ws._q, ws._x

    # Facesets ----------------------------------------------------------------------------------

    def ensure(self, name: str, face_type: str, size: int) -> int:
        if not name or "/" in name or "\\" in name or name.startswith("."):
            raise EngineError("bad_request", f"faceset name {name!r} is not a plain name")
        rows = self._q("SELECT id, face_type, size FROM facesets WHERE name=?", (name,))
        if rows:
            if rows[0]["face_type"] != face_type or rows[0]["size"] != size:
                raise EngineError(
                    "bad_request",
                    f"faceset {name!r} holds {rows[0]['face_type']} faces at {rows[0]['size']} px, "
                    f"not {face_type} at {size} px",
                )
            return rows[0]["id"]
        return self._x(
            "INSERT INTO facesets (name, face_type, size, created) VALUES (?,?,?,?)", (name, face_type, size, time.time())
        )

    def find(self, name: str) -> sqlite3.Row | None:
        rows = self._q("SELECT * FROM facesets WHERE name=?", (name,))
        return rows[0] if rows else None

    def get(self, name: str) -> sqlite3.Row:
        fs = self.find(name)
        if fs is None:
            raise EngineError("not_found", f"no faceset named {name!r}; extract faces into it first")
        return fs

    def list(self) -> list[dict]:
        rows = self._q(
            "SELECT f.name, f.face_type, f.size, COUNT(c.id) AS faces, COUNT(DISTINCT c.media_id || ':' || c.frame)"
            " AS frames, COUNT(DISTINCT c.track) AS tracks FROM facesets f LEFT JOIN faces c ON c.faceset_id=f.id"
            " GROUP BY f.id ORDER BY f.name"
        )
        return [dict(r) for r in rows]

    def change_stamp(self, name: str) -> tuple:
        """A cheap stamp of everything merging reads from the faceset: its faces (count, newest id;
        a re-extraction replaces rows, so ids grow), the chosen people and identity grouping, and
        the faces' drawn labels and learned masks (count, latest update). Equal stamps: nothing a
        merge uses changed. One query; raises not_found for an unknown faceset."""
        fs = self.get(name)
        row = self._q(
            "SELECT (SELECT COUNT(*) FROM faces WHERE faceset_id=:f) AS faces,"
            " (SELECT MAX(id) FROM faces WHERE faceset_id=:f) AS last_face,"
            " (SELECT COUNT(*) || ':' || TOTAL(track * 7919 + person) FROM track_identities WHERE faceset_id=:f)"
            " AS identities,"
            " (SELECT COUNT(*) || ':' || IFNULL(MAX(l.updated), 0) FROM mask_labels l JOIN faces c ON c.id=l.face_id"
            " WHERE c.faceset_id=:f) AS labels,"
            " (SELECT COUNT(*) || ':' || IFNULL(MAX(m.updated), 0) FROM learned_masks m JOIN faces c ON c.id=m.face_id"
            " WHERE c.faceset_id=:f) AS learned",
            {"f": fs["id"]},
        )[0]
        return (row["faces"], row["last_face"] or 0, fs["people"], row["identities"], row["labels"], row["learned"])

    # People: tracks and the choice of who the faceset stands for --------------------------------

    def tracks(self, name: str) -> list[dict]:
        """Each track of the faceset: its shot, frame span, face count, a representative face and
        whether it is (part of) the chosen person."""
        fs = self.get(name)
        chosen = set(self._chosen_tracks(fs))
        people = self._people(fs["id"])
        rows = self._q(
            "SELECT track, media_id, COUNT(*) AS faces, MIN(frame) AS first, MAX(frame) AS last,"
            " AVG(sharpness) AS sharpness FROM faces WHERE faceset_id=? GROUP BY track ORDER BY track",
            (fs["id"],),
        )
        out = []
        for r in rows:
            face = self._q(
                "SELECT id, image FROM faces WHERE faceset_id=? AND track=? ORDER BY ABS(yaw) + ABS(pitch), sharpness DESC"
                " LIMIT 1", (fs["id"], r["track"]),
            )[0]
            out.append({**dict(r), "chosen": r["track"] in chosen, "person": people.get(r["track"]),
                        "face_id": face["id"], "image": str(self._ws.root / face["image"])})
        return out

    def choose_people(self, name: str, tracks: list[int] | None) -> None:
        """Make these tracks the faceset's person; None goes back to each shot's longest track."""
        fs = self.get(name)
        if tracks is not None:
            known = {r["track"] for r in self._q("SELECT DISTINCT track FROM faces WHERE faceset_id=?", (fs["id"],))}
            unknown = sorted(set(tracks) - known)
            if unknown:
                raise EngineError("not_found", f"faceset {name!r} has no track {unknown[0]}")
        self._x("UPDATE facesets SET people=? WHERE id=?",
                (json.dumps(sorted(set(tracks))) if tracks is not None else None, fs["id"]))

    def _chosen_tracks(self, fs: sqlite3.Row) -> list[int]:
        if fs["people"] is not None:
            return json.loads(fs["people"])
        people = self._people(fs["id"])
        if people:  # the person seen most, in all their shots
            # a person's id is the smallest of its tracks, so an unrecognised track can be its own person
            faces: dict[int, int] = {}
            tracks: dict[int, list[int]] = {}
            for r in self._q("SELECT track, COUNT(*) AS n FROM faces WHERE faceset_id=? GROUP BY track", (fs["id"],)):
                person = people.get(r["track"], r["track"])
                faces[person] = faces.get(person, 0) + r["n"]
                tracks.setdefault(person, []).append(r["track"])
            if faces:
                return sorted(tracks[max(faces, key=lambda p: (faces[p], -p))])
        rows = self._q(
            "SELECT media_id, track, COUNT(*) AS n FROM faces WHERE faceset_id=? GROUP BY media_id, track"
            " ORDER BY media_id, n DESC, track", (fs["id"],),
        )
        longest: dict[int, int] = {}
        for r in rows:
            longest.setdefault(r["media_id"], r["track"])
        return sorted(longest.values())

    def _people(self, faceset_id: int) -> dict[int, int]:
        rows = self._q("SELECT track, person FROM track_identities WHERE faceset_id=?", (faceset_id,))
        return {r["track"]: r["person"] for r in rows}

    def tracks_without_identity(self, faceset_id: int) -> list[int]:
        rows = self._q("SELECT DISTINCT track FROM faces WHERE faceset_id=? AND track NOT IN"
                       " (SELECT track FROM track_identities WHERE faceset_id=?) ORDER BY track",
                       (faceset_id, faceset_id))
        return [r["track"] for r in rows]

    def set_identities(self, faceset_id: int, embeddings: dict[int, np.ndarray], grouping) -> None:
        """Store tracks' identity descriptors and regroup every track of the faceset into people.

        `grouping` maps {track: descriptor} to {track: person}; it is the identity module's, passed
        in so the catalog does not depend on a face stage.
        """
        with self._ws.transaction():
            for track, emb in embeddings.items():
                self._x("INSERT OR REPLACE INTO track_identities (faceset_id, track, embedding, person)"
                        " VALUES (?,?,?,?)", (faceset_id, int(track), _blob(emb, np.float32), int(track)))
            rows = self._q("SELECT track, embedding FROM track_identities WHERE faceset_id=?", (faceset_id,))
            people = grouping({r["track"]: np.frombuffer(r["embedding"], np.float32) for r in rows})
            for track, person in people.items():
                self._x("UPDATE track_identities SET person=? WHERE faceset_id=? AND track=?",
                        (int(person), faceset_id, int(track)))

    def next_track(self, faceset_id: int) -> int:
        return (self._q("SELECT MAX(track) AS t FROM faces WHERE faceset_id=?", (faceset_id,))[0]["t"] or 0) + 1

    # Faces -------------------------------------------------------------------------------------

    def add(self, faceset_id: int, face: FaceRecord) -> int:
        return self._x(
            "INSERT OR REPLACE INTO faces (faceset_id, media_id, frame, face_index, box, score, landmarks, landmarks68,"
            " transform, image, track, yaw, pitch, roll, sharpness, brightness, face_type, size, extra)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                faceset_id, face.media_id, face.frame, face.face_index, json.dumps([float(v) for v in face.box]),
                float(face.score), _blob(face.landmarks[:, :2], np.float32), _blob(face.landmarks68, np.float32),
                _blob(face.transform, np.float64), str(Path(face.image).relative_to(self._ws.root)), int(face.track),
                float(face.yaw), float(face.pitch), float(face.roll), float(face.sharpness), float(face.brightness),
                face.face_type, int(face.size), json.dumps(face.extra),
            ),
        )

    def faces(self, name: str, media_id: int | None = None, everyone: bool = False) -> list[FaceRecord]:
        """Faces of a faceset in frame order: the chosen person's, or with `everyone` all of them."""
        fs = self.get(name)
        sql, args = "SELECT * FROM faces WHERE faceset_id=?", [fs["id"]]
        if media_id is not None:
            sql, args = sql + " AND media_id=?", args + [media_id]
        if not everyone:
            tracks = self._chosen_tracks(fs)
            sql += f" AND track IN ({','.join('?' * len(tracks))})"
            args += tracks
        return [self._face(r) for r in self._q(sql + " ORDER BY media_id, frame, face_index", tuple(args))]

    def faces_at(self, faceset_id: int, media_id: int, frame: int) -> list[FaceRecord]:
        """Every face stored for one frame of one video."""
        return [self._face(r) for r in self._q("SELECT * FROM faces WHERE faceset_id=? AND media_id=? AND frame=?"
                                                " ORDER BY face_index", (faceset_id, media_id, frame))]

    def face(self, face_id: int) -> FaceRecord:
        rows = self._q("SELECT * FROM faces WHERE id=?", (face_id,))
        if not rows:
            raise EngineError("not_found", f"no face {face_id} in this workspace")
        return self._face(rows[0])

    def delete(self, name: str, face_ids: list[int]) -> int:
        """Remove faces from the catalog and their crops from disk; they leave training too."""
        fs = self.get(name)
        if fs["people"] is None:
            # pin who the person is now, so deleting their faces cannot hand the role to someone else
            self.choose_people(name, self._chosen_tracks(fs))
        images, removed = [], 0
        with self._ws.transaction():
            for face_id in face_ids:
                rows = self._q(f"SELECT {_FILE_COLUMNS} FROM faces WHERE id=? AND faceset_id=?", (int(face_id), fs["id"]))
                if rows:
                    self._x("DELETE FROM faces WHERE id=?", (int(face_id),))
                    images.extend(_files(rows[0]))
                    removed += 1
        self._unlink(images)
        return removed

    def clear(self, faceset_id: int, media_id: int, frame_start: int, frame_end: int) -> None:
        """Forget earlier faces of these frames, so re-extracting a range replaces it."""
        where = "faceset_id=? AND media_id=? AND frame>=? AND frame<?"
        args = (faceset_id, media_id, frame_start, frame_end)
        images = [i for r in self._q(f"SELECT {_FILE_COLUMNS} FROM faces WHERE {where}", args) for i in _files(r)]
        self._x(f"DELETE FROM faces WHERE {where}", args)
        self._unlink(images)

    def drop_media(self, media_id: int) -> None:
        """Forget every face of a video whose content changed."""
        images = [i for r in self._q(f"SELECT {_FILE_COLUMNS} FROM faces WHERE media_id=?", (media_id,)) for i in _files(r)]
        self._x("DELETE FROM faces WHERE media_id=?", (media_id,))
        self._x("DELETE FROM extractions WHERE media_id=?", (media_id,))
        self._unlink(images)

    def _unlink(self, images: list[str]) -> None:
        # after the catalog commit: a crash in between leaves an orphan file, never a row without one
        for image in images:
            (self._ws.root / image).unlink(missing_ok=True)

    def _face(self, r: sqlite3.Row) -> FaceRecord:
        return FaceRecord(
            id=r["id"], media_id=r["media_id"], frame=r["frame"], face_index=r["face_index"],
            box=tuple(json.loads(r["box"])), score=r["score"],
            landmarks=np.frombuffer(r["landmarks"], np.float32).reshape(-1, 2),
            landmarks68=np.frombuffer(r["landmarks68"], np.float32).reshape(68, 2),
            transform=np.frombuffer(r["transform"], np.float64).reshape(2, 3),
            image=self._ws.root / r["image"], track=r["track"], yaw=r["yaw"], pitch=r["pitch"], roll=r["roll"],
            sharpness=r["sharpness"], brightness=r["brightness"], face_type=r["face_type"], size=r["size"],
            extra=json.loads(r["extra"]),
        )

    # Extraction records: what was extracted with which settings, and how far ----------------------

    def extraction(self, faceset_id: int, media_id: int, start: int, end: int) -> dict | None:
        rows = self._q("SELECT settings, done_until FROM extractions WHERE faceset_id=? AND media_id=?"
                       " AND frame_start=? AND frame_end=?", (faceset_id, media_id, start, end))
        return {"settings": json.loads(rows[0]["settings"]), "done_until": rows[0]["done_until"]} if rows else None

    def record_extraction(self, faceset_id: int, media_id: int, start: int, end: int, settings: dict,
                          done_until: int) -> None:
        self._x("INSERT OR REPLACE INTO extractions (faceset_id, media_id, frame_start, frame_end, settings,"
                " done_until, updated) VALUES (?,?,?,?,?,?,?)",
                (faceset_id, media_id, start, end, json.dumps(settings, sort_keys=True), done_until, time.time()))

    def count(self, faceset_id: int, media_id: int, start: int, end: int) -> dict:
        r = self._q("SELECT COUNT(*) AS faces, COUNT(DISTINCT frame) AS frames, COUNT(DISTINCT track) AS tracks"
                    " FROM faces WHERE faceset_id=? AND media_id=? AND frame>=? AND frame<?",
                    (faceset_id, media_id, start, end))[0]
        return dict(r)


