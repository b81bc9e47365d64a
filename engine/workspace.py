"""Shared piece: the workspace, a folder holding a SQLite catalog plus face images, models and renders.

One workspace per Blender project. Every file write is atomic (temp file, fsync, rename) and the
catalog runs in WAL mode, so killing the engine at any moment leaves a usable workspace.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path

from .errors import EngineError
from .facemasks import MASK_SCHEMA, MaskStore
from .facesets import FACESET_SCHEMA, FacesetStore, migrate_facesets
from .files import content_hash, disk_full

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY, kind TEXT NOT NULL, state TEXT NOT NULL, params TEXT NOT NULL,
    progress REAL NOT NULL DEFAULT 0, message TEXT NOT NULL DEFAULT '', stats TEXT NOT NULL DEFAULT '{}',
    result TEXT, error TEXT, created REAL NOT NULL, updated REAL NOT NULL, restarts INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS media (
    id INTEGER PRIMARY KEY, path TEXT NOT NULL UNIQUE, width INTEGER, height INTEGER,
    fps REAL, frames INTEGER, size_bytes INTEGER, mtime REAL
);
CREATE TABLE IF NOT EXISTS models (
    id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, directory TEXT NOT NULL,
    source TEXT, destination TEXT, iterations INTEGER NOT NULL DEFAULT 0, loss REAL, updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS renders (
    id INTEGER PRIMARY KEY, job_id TEXT NOT NULL, model TEXT NOT NULL, media_id INTEGER NOT NULL,
    directory TEXT NOT NULL, first_frame INTEGER NOT NULL, count INTEGER NOT NULL, created REAL NOT NULL
);
"""


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
        self._db.executescript(SCHEMA + FACESET_SCHEMA + MASK_SCHEMA)
        self._migrate()
        self.facesets = FacesetStore(self)
        self.masks = MaskStore(self)

    def _migrate(self) -> None:
        """Bring a catalog written by an older engine up to this one's columns."""
        with self._lock:
            columns = {r["name"] for r in self._db.execute("PRAGMA table_info(media)")}
            if "hash" not in columns:
                self._db.execute("ALTER TABLE media ADD COLUMN hash TEXT")
            if "restarts" not in {r["name"] for r in self._db.execute("PRAGMA table_info(jobs)")}:
                self._db.execute("ALTER TABLE jobs ADD COLUMN restarts INTEGER NOT NULL DEFAULT 0")
            migrate_facesets(self._db)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def transaction(self):
        """A context in which several writes commit together (one fsync for a batch of faces)."""
        return _Transaction(self)

    def _q(self, sql: str, args: tuple = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def _x(self, sql: str, args: tuple = ()) -> int:
        with self._lock:
            try:
                return self._db.execute(sql, args).lastrowid
            except sqlite3.OperationalError as exc:
                # SQLITE_FULL: the write is rolled back and the catalog stays as it was
                if "full" in str(exc).lower():
                    raise disk_full(self.root, "the catalog change") from exc
                raise

    # Paths -------------------------------------------------------------------------------------

    def faceset_dir(self, name: str) -> Path:
        return self.root / "facesets" / name

    def model_dir(self, name: str) -> Path:
        return self.root / "models" / name

    def render_dir(self, job_id: str) -> Path:
        return self.root / "renders" / job_id

    # Media -------------------------------------------------------------------------------------

    def register_media(self, path: Path, width: int, height: int, fps: float, frames: int) -> int:
        """The media row of a video, keyed by content: a moved file keeps its faces, an edited one loses them."""
        path = Path(path).resolve()
        st = path.stat()
        with self._lock:
            same_path = self._q("SELECT * FROM media WHERE path=?", (str(path),))
            if same_path and same_path[0]["size_bytes"] == st.st_size and same_path[0]["mtime"] == st.st_mtime \
                    and same_path[0]["hash"]:
                return same_path[0]["id"]  # unchanged since we last hashed it
            digest = content_hash(path)
            same_content = self._q("SELECT * FROM media WHERE hash=? ORDER BY path=? DESC", (digest, str(path)))
            if same_content:
                media_id = same_content[0]["id"]
                if same_path and same_path[0]["id"] != media_id:
                    self._forget_media(same_path[0]["id"])  # this path now holds other content
            elif same_path:
                media_id = same_path[0]["id"]
                if same_path[0]["hash"] and same_path[0]["hash"] != digest:
                    self.facesets.drop_media(media_id)  # the file was edited: its faces are stale
            else:
                media_id = None
            values = (str(path), width, height, fps, frames, st.st_size, st.st_mtime, digest)
            if media_id is None:
                return self._x("INSERT INTO media (path, width, height, fps, frames, size_bytes, mtime, hash)"
                               " VALUES (?,?,?,?,?,?,?,?)", values)
            self._x("UPDATE media SET path=?, width=?, height=?, fps=?, frames=?, size_bytes=?, mtime=?, hash=?"
                    " WHERE id=?", values + (media_id,))
            return media_id

    def register_placeholder_media(self, name: str) -> int:
        """A media row for imported faces whose video is not here: no file to hash, known by a name."""
        self._x("INSERT OR IGNORE INTO media (path, width, height, fps, frames) VALUES (?,?,?,?,?)", (name, 0, 0, 0.0, 0))
        return self._q("SELECT id FROM media WHERE path=?", (name,))[0]["id"]

    def media(self) -> dict[int, dict]:
        """Every media row by id: path, width, height, fps, frames."""
        return {r["id"]: dict(r) for r in self._q("SELECT id, path, width, height, fps, frames FROM media")}

    def _forget_media(self, media_id: int) -> None:
        self.facesets.drop_media(media_id)
        self._x("UPDATE media SET path=? WHERE id=?", (f"#replaced-{media_id}", media_id))

    def media_id(self, path: Path) -> int | None:
        """The media row of a video already seen (by path, then by content)."""
        path = Path(path).resolve()
        rows = self._q("SELECT id, size_bytes, mtime FROM media WHERE path=?", (str(path),))
        if rows:
            return rows[0]["id"]
        if not path.is_file():
            return None
        rows = self._q("SELECT id FROM media WHERE hash=?", (content_hash(path),))
        return rows[0]["id"] if rows else None

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
            "INSERT OR REPLACE INTO jobs (id, kind, state, params, progress, message, stats, result, error, created,"
            " updated, restarts) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                job["id"], job["kind"], job["state"], json.dumps(job["params"]), job["progress"], job["message"],
                json.dumps(job["stats"]), json.dumps(job["result"]), json.dumps(job["error"]), job["created"], time.time(),
                int(job.get("restarts", 0)),
            ),
        )

    def load_jobs(self) -> list[dict]:
        return [
            {
                "id": r["id"], "kind": r["kind"], "state": r["state"], "params": json.loads(r["params"]),
                "progress": r["progress"], "message": r["message"], "stats": json.loads(r["stats"]),
                "result": json.loads(r["result"]) if r["result"] else None,
                "error": json.loads(r["error"]) if r["error"] else None, "created": r["created"], "eta": None,
                "restarts": r["restarts"],
            }
            for r in self._q("SELECT * FROM jobs ORDER BY created")
        ]


class _Transaction:
    def __init__(self, ws: Workspace) -> None:
        self._ws = ws

    def __enter__(self) -> Workspace:
        self._ws._lock.acquire()
        self._ws._db.execute("BEGIN")
        return self._ws

    def __exit__(self, exc_type, *rest) -> None:
        db = self._ws._db
        try:
            if not exc_type:
                try:
                    db.execute("COMMIT")
                except sqlite3.OperationalError as exc:
                    if db.in_transaction:
                        db.execute("ROLLBACK")
                    if "full" in str(exc).lower():
                        raise disk_full(self._ws.root, "the catalog change") from exc
                    raise
            elif db.in_transaction:  # SQLite rolls back by itself after some errors (disk full)
                db.execute("ROLLBACK")
        finally:
            self._ws._lock.release()
