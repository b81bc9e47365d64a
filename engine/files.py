"""Shared piece: atomic file writes, so a kill or a full disk never leaves half a file behind."""

from __future__ import annotations

import errno
import hashlib
import os
import threading
from pathlib import Path

from .errors import EngineError


def atomic_write(path: Path, data: bytes, sync_folder: bool = True, mode: int | None = None) -> None:
    """Write `data` so that `path` holds either the old content or all of the new, never a mix.

    Temp file in the same folder, fsync, rename, then fsync the folder so the rename itself
    survives a power cut. A full disk (or quota, or file size limit) becomes `disk_full`, any
    other OS failure (no permission, a broken disk) an `io_error`; either way the temp file goes
    and `path` keeps its old content.
    A writer of many files in one folder passes `sync_folder=False` and calls `sync_folder()`
    once before it records them (one folder fsync per batch instead of per file).
    `mode` sets the file's permissions before any byte is written (a private key: 0o600).
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        opener = None if mode is None else (lambda name, flags: os.open(name, flags, 0o600))
        with open(tmp, "wb", opener=opener) as f:
            if mode is not None and hasattr(os, "fchmod"):
                os.fchmod(f.fileno(), mode)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass  # the folder itself is unusable; there is no temp file to clean up
        raise write_error(exc, path) from exc
    if sync_folder:
        sync_folder_of(path)


def is_disk_full(exc: BaseException) -> bool:
    """Whether an OS error means "no room": the disk, the user's quota or the largest file size."""
    return isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS


DISK_FULL_ERRNOS = frozenset(e for e in (errno.ENOSPC, getattr(errno, "EDQUOT", None), errno.EFBIG) if e)


def write_error(exc: OSError, path: Path, what: str | None = None) -> EngineError:
    """The domain error of a failed write of `path` (`what` names it for a person; default its name)."""
    what = what or Path(path).name
    if is_disk_full(exc):
        return disk_full(Path(path).parent, what)
    return EngineError("io_error", f"could not write {path}: {exc.strerror or exc}")


def disk_full(folder: Path, what: str) -> EngineError:
    """The one message every writer gives when the disk is full: what was lost and what to do."""
    return EngineError("disk_full", f"the disk holding {folder} is full: {what} was not written; "
                                    "free some space and resume the job (nothing written before is lost)")


def remove_stale_temps(folder: Path) -> int:
    """Delete the temp files other processes' `atomic_write`s left in `folder` when they were killed
    mid-write (this process's own may be in use); returns how many went. Never taken for finished
    files anyway (hidden names ending in .tmp): this only gives their space back."""
    removed = 0
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return 0
    for entry in entries:
        name = entry.name
        parts = name.rsplit(".", 3)  # ".<name>", "<pid>", "<thread>", "tmp"
        if len(parts) == 4 and name.startswith(".") and parts[3] == "tmp" and parts[1] != str(os.getpid()) \
                and entry.is_file():
            try:
                os.unlink(entry.path)
                removed += 1
            except OSError:
                pass  # gone already, or not ours to remove: it stays hidden either way
    return removed


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


def try_lock(path: Path):
    """An exclusive lock on `path` (created if missing) held while the returned file stays open, or
    None when another process holds it. The kernel drops the lock with its process, a killed one
    included. Where the platform has no flock, the lock is always granted."""
    try:
        import fcntl
    except ImportError:  # Windows: one engine per workspace is the user's care there
        return open(os.devnull, "rb")
    try:
        f = open(path, "a+b")
    except OSError as exc:
        raise write_error(exc, Path(path)) from exc
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.close()
        return None
    return f
