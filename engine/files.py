"""Shared piece: atomic file writes, so a kill or a full disk never leaves half a file behind."""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

from .errors import EngineError


def atomic_write(path: Path, data: bytes, sync_folder: bool = True) -> None:
    """Write `data` so that `path` holds either the old content or all of the new, never a mix.

    Temp file in the same folder, fsync, rename, then fsync the folder so the rename itself
    survives a power cut. Any OS failure (disk full, no permission) becomes an `io_error`.
    A writer of many files in one folder passes `sync_folder=False` and calls `sync_folder()`
    once before it records them (one folder fsync per batch instead of per file).
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass  # the folder itself is unusable; there is no temp file to clean up
        raise EngineError("io_error", f"could not write {path}: {exc.strerror or exc}") from exc
    if sync_folder:
        sync_folder_of(path)


def sync_folder_of(path: Path) -> None:
    """Make renames into `path`'s folder durable."""
    _fsync_dir(Path(path).parent)


def _fsync_dir(directory: Path) -> None:
    # makes the rename durable on POSIX; folders cannot be opened this way on Windows
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def content_hash(path: Path, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file's bytes: media are known by content, so a moved clip keeps its faces."""
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            while block := f.read(chunk):
                h.update(block)
    except OSError as exc:
        raise EngineError("io_error", f"could not read {path}: {exc.strerror or exc}") from exc
    return h.hexdigest()
