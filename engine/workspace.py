"""Shared piece: the workspace, a folder holding a SQLite catalog plus face images, models and renders.

One workspace per Blender project. Every file write is atomic (temp file, fsync, rename) and the
catalog runs in WAL mode, so killing the engine at any moment leaves a usable workspace.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import EngineError

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY, kind TEXT NOT NULL, state TEXT NOT NULL, params TEXT NOT NULL,
    progress REAL NOT NULL DEFAULT 0, message TEXT NOT NULL DEFAULT '', stats TEXT NOT NULL DEFAULT '{}',
    result TEXT, error TEXT, created REAL NOT NULL, updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS media (
    id INTEGER PRIMARY KEY, path TEXT NOT NULL UNIQUE, width INTEGER, height INTEGER,
    fps REAL, frames INTEGER, size_bytes INTEGER, mtime REAL
);
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
CREATE TABLE IF NOT EXISTS models (
    id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, directory TEXT NOT NULL,
    source TEXT, destination TEXT, iterations INTEGER NOT NULL DEFAULT 0, loss REAL, updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS renders (
    id INTEGER PRIMARY KEY, job_id TEXT NOT NULL, model TEXT NOT NULL, media_id INTEGER NOT NULL,
    directory TEXT NOT NULL, first_frame INTEGER NOT NULL, count INTEGER NOT NULL, created REAL NOT NULL
);
"""


@dataclass(frozen=True)
class FaceRecord:
    """One detected face as the catalog holds it."""

    id: int
    media_id: int
    frame: int
    face_index: int
    box: tuple[float, float, float, float]
    score: float
    landmarks: np.ndarray
    landmarks68: np.ndarray
    transform: np.ndarray
    image: Path


def _blob(a: np.ndarray, dtype) -> bytes:
    return np.ascontiguousarray(a, dtype=dtype).tobytes()


class Workspace:
    """The catalog and files of one project. Thread-safe: one connection guarded by a lock."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root).resolve()
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise EngineError("io_error", f"cannot create workspace {self.root}: {exc.strerror}") from exc
        self._lock = threading.RLock()
        self._db = sqlite3.connect(self.root / "catalog.sqlite", check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _q(self, sql: str, args: tuple = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def _x(self, sql: str, args: tuple = ()) -> int:
        with self._lock:
            return self._db.execute(sql, args).lastrowid

    # Paths -------------------------------------------------------------------------------------

    def faceset_dir(self, name: str) -> Path:
        return self.root / "facesets" / name

    def model_dir(self, name: str) -> Path:
        return self.root / "models" / name

    def render_dir(self, job_id: str) -> Path:
        return self.root / "renders" / job_id

    # Media -------------------------------------------------------------------------------------

    def register_media(self, path: Path, width: int, height: int, fps: float, frames: int) -> int:
        path = Path(path).resolve()
        st = path.stat()
        with self._lock:
            self._x(
                "INSERT INTO media (path, width, height, fps, frames, size_bytes, mtime) VALUES (?,?,?,?,?,?,?)"
                " ON CONFLICT(path) DO UPDATE SET width=excluded.width, height=excluded.height,"
                " fps=excluded.fps, frames=excluded.frames, size_bytes=excluded.size_bytes, mtime=excluded.mtime",
                (str(path), width, height, fps, frames, st.st_size, st.st_mtime),
            )
            return self._q("SELECT id FROM media WHERE path=?", (str(path),))[0]["id"]

    def media_id(self, path: Path) -> int | None:
        rows = self._q("SELECT id FROM media WHERE path=?", (str(Path(path).resolve()),))
        return rows[0]["id"] if rows else None

    # Facesets and faces ------------------------------------------------------------------------

    def ensure_faceset(self, name: str, face_type: str, size: int) -> int:
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

    def faceset(self, name: str) -> sqlite3.Row:
        rows = self._q("SELECT * FROM facesets WHERE name=?", (name,))
        if not rows:
            raise EngineError("not_found", f"no faceset named {name!r}; extract faces into it first")
        return rows[0]

    def list_facesets(self) -> list[dict]:
        rows = self._q(
            "SELECT f.name, f.face_type, f.size, COUNT(c.id) AS faces, COUNT(DISTINCT c.media_id || ':' || c.frame)"
            " AS frames FROM facesets f LEFT JOIN faces c ON c.faceset_id=f.id GROUP BY f.id ORDER BY f.name"
        )
        return [dict(r) for r in rows]

    def clear_faces(self, faceset_id: int, media_id: int, frame_start: int, frame_end: int) -> None:
        """Forget earlier faces of these frames, so re-extracting a range replaces it."""
        for row in self._q(
            "SELECT image FROM faces WHERE faceset_id=? AND media_id=? AND frame>=? AND frame<?",
            (faceset_id, media_id, frame_start, frame_end),
        ):
            (self.root / row["image"]).unlink(missing_ok=True)
        self._x(
            "DELETE FROM faces WHERE faceset_id=? AND media_id=? AND frame>=? AND frame<?",
            (faceset_id, media_id, frame_start, frame_end),
        )

    def add_face(
        self, faceset_id: int, media_id: int, frame: int, face_index: int, box, score: float,
        landmarks: np.ndarray, landmarks68: np.ndarray, transform: np.ndarray, image: Path,
    ) -> int:
        return self._x(
            "INSERT OR REPLACE INTO faces (faceset_id, media_id, frame, face_index, box, score, landmarks,"
            " landmarks68, transform, image) VALUES (?,?,?,?,?,?,?,?,?,?)",
            (
                faceset_id, media_id, frame, face_index, json.dumps([float(v) for v in box]), float(score),
                _blob(landmarks[:, :2], np.float32), _blob(landmarks68, np.float32), _blob(transform, np.float64),
                str(Path(image).relative_to(self.root)),
            ),
        )

    def faces(self, faceset: str, media_id: int | None = None, face_index: int | None = 0) -> list[FaceRecord]:
        """Faces of a faceset in frame order; by default only the main (largest) face of each frame."""
        fs = self.faceset(faceset)
        sql, args = "SELECT * FROM faces WHERE faceset_id=?", [fs["id"]]
        if media_id is not None:
            sql, args = sql + " AND media_id=?", args + [media_id]
        if face_index is not None:
            sql, args = sql + " AND face_index=?", args + [face_index]
        return [self._face(r) for r in self._q(sql + " ORDER BY media_id, frame, face_index", tuple(args))]

    def _face(self, r: sqlite3.Row) -> FaceRecord:
        return FaceRecord(
            id=r["id"], media_id=r["media_id"], frame=r["frame"], face_index=r["face_index"],
            box=tuple(json.loads(r["box"])), score=r["score"],
            landmarks=np.frombuffer(r["landmarks"], np.float32).reshape(-1, 2),
            landmarks68=np.frombuffer(r["landmarks68"], np.float32).reshape(68, 2),
            transform=np.frombuffer(r["transform"], np.float64).reshape(2, 3),
            image=self.root / r["image"],
        )

    # Models and renders ------------------------------------------------------------------------

    def record_model(self, name: str, source: str, destination: str, iterations: int, loss: float | None) -> None:
        self._x(
            "INSERT INTO models (name, directory, source, destination, iterations, loss, updated) VALUES (?,?,?,?,?,?,?)"
            " ON CONFLICT(name) DO UPDATE SET source=excluded.source, destination=excluded.destination,"
            " iterations=excluded.iterations, loss=excluded.loss, updated=excluded.updated",
            (name, str(self.model_dir(name).relative_to(self.root)), source, destination, iterations, loss, time.time()),
        )

    def record_render(self, job_id: str, model: str, media_id: int, directory: Path, first: int, count: int) -> None:
        self._x(
            "INSERT INTO renders (job_id, model, media_id, directory, first_frame, count, created) VALUES (?,?,?,?,?,?,?)",
            (job_id, model, media_id, str(directory), first, count, time.time()),
        )

    # Jobs --------------------------------------------------------------------------------------

    def save_job(self, job: dict) -> None:
        self._x(
            "INSERT OR REPLACE INTO jobs (id, kind, state, params, progress, message, stats, result, error, created, updated)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (
                job["id"], job["kind"], job["state"], json.dumps(job["params"]), job["progress"], job["message"],
                json.dumps(job["stats"]), json.dumps(job["result"]), json.dumps(job["error"]), job["created"], time.time(),
            ),
        )

    def load_jobs(self) -> list[dict]:
        return [
            {
                "id": r["id"], "kind": r["kind"], "state": r["state"], "params": json.loads(r["params"]),
                "progress": r["progress"], "message": r["message"], "stats": json.loads(r["stats"]),
                "result": json.loads(r["result"]) if r["result"] else None,
                "error": json.loads(r["error"]) if r["error"] else None, "created": r["created"], "eta": None,
            }
            for r in self._q("SELECT * FROM jobs ORDER BY created")
        ]
