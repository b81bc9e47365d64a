"""Shared piece: media known by content hash, received in chunks, resumable after a broken connection.

A remote engine cannot read the user's disk, so the add-on uploads each clip once:
`<workspace>/media/<sha256><ext>` holds a finished blob, `<workspace>/media/.partial/<sha256>` one
being received. Chunks are appended at the exact offset the engine has (a client that lost its
connection asks `status` and carries on from `received`); on the last byte the file is synced,
its SHA-256 checked, and only then renamed into place, so a blob under its final name is always
whole and right. A full disk keeps the partial for a later resume.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import shutil
import threading
import weakref
from pathlib import Path

from .errors import EngineError
from .files import content_hash, sync_folder_of

MAX_SIZE = 64 * 2**30   # a declared size above this is refused before anything is written
MAX_CHUNK = 16 * 2**20  # one request's data; the bridge's frame limit is 64 MiB
_HASH = re.compile(r"[0-9a-f]{64}")
_EXT = re.compile(r"[a-z0-9]{1,8}")
_HASHERS = 64           # running digests kept for uploads in progress (others re-read their file)


def check_hash(value) -> str:
    """A SHA-256 as 64 lowercase hex digits (it becomes a file name, so nothing else passes)."""
    if not isinstance(value, str) or not _HASH.fullmatch(value):
        raise EngineError("bad_request", "'hash' must be a SHA-256 as 64 lowercase hex digits")
    return value


def media_extension(name: str) -> str:
    """The blob's extension from the client's file name: lowercase letters and digits, at most 8,
    else none (decoders sniff content, but some pick a demuxer by extension)."""
    ext = os.path.splitext(name)[1][1:].lower() if isinstance(name, str) else ""
    return f".{ext}" if _EXT.fullmatch(ext) else ""


class MediaStore:
    """The media folder of one workspace. Thread-safe: uploads of one hash take turns on a lock, so
    two connections sending the same clip cannot interleave their bytes."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.folder = self.root / "media"
        self.partial_folder = self.folder / ".partial"
        self._locks: weakref.WeakValueDictionary[str, threading.Lock] = weakref.WeakValueDictionary()
        self._guard = threading.Lock()
        # hash -> (running sha256, bytes it has seen): the last chunk then needs no re-read of the file
        self._hashers: dict[str, tuple[object, int]] = {}

    def _lock(self, digest: str) -> threading.Lock:
        with self._guard:
            lock = self._locks.get(digest)
            if lock is None:
                lock = self._locks[digest] = threading.Lock()
            return lock

    def blob(self, digest: str) -> Path | None:
        """The finished file of this hash, whatever its extension, or None."""
        check_hash(digest)
        try:
            names = [e.name for e in os.scandir(self.folder) if e.name.split(".", 1)[0] == digest and e.is_file()]
        except FileNotFoundError:
            return None
        return self.folder / min(names) if names else None

    def status(self, digest: str) -> dict:
        """{hash, present, received, path}: `path` workspace-relative once the blob is here."""
        blob = self.blob(digest)
        if blob is not None:
            return {"hash": digest, "present": True, "received": blob.stat().st_size,
                    "path": blob.relative_to(self.root).as_posix()}
        return self._partial_status(digest) or {"hash": digest, "present": False, "received": 0, "path": None}

    def _partial_status(self, digest: str) -> dict | None:
        """The status of an upload under way, from its partial alone; None when there is none. A
        partial exists only until its blob does, so this spares each chunk a scan of the folder."""
        try:
            received = (self.partial_folder / digest).stat().st_size
        except FileNotFoundError:
            return None
        return {"hash": digest, "present": False, "received": received, "path": None}

    def append(self, digest: str, name: str, size: int, offset: int, data: bytes) -> dict:
        """Write one chunk at `offset` (which must be what the engine has); the last one finishes the blob."""
        check_hash(digest)
        if not 0 <= size <= MAX_SIZE:
            raise EngineError("bad_request", f"'size' must be between 0 and {MAX_SIZE} bytes (64 GiB), got {size}")
        if len(data) > MAX_CHUNK:
            raise EngineError("bad_request", f"a chunk holds at most {MAX_CHUNK} bytes, got {len(data)}")
        with self._lock(digest):
            state = self._partial_status(digest) or self.status(digest)
            if state["present"]:
                return state  # someone else finished it meanwhile: nothing to write
            if offset != state["received"]:
                raise EngineError("bad_request", f"upload of {digest[:12]} must continue at offset "
                                                  f"{state['received']}, not {offset}")
            if offset + len(data) > size:
                raise EngineError("bad_request", f"this chunk ends at byte {offset + len(data)}, past the "
                                                  f"declared size {size}")
            partial = self.partial_folder / digest
            if offset == 0:
                self._check_room(size)
            self._write(partial, offset, data, digest, last=offset + len(data) == size)
            if offset + len(data) < size:
                return {**state, "received": offset + len(data)}
            self._finish(partial, digest, media_extension(name))
            return self.status(digest)

    def _check_room(self, size: int) -> None:
        # a clip that cannot fit is refused before its first byte, not after minutes of upload
        try:
            self.partial_folder.mkdir(parents=True, exist_ok=True)
            free = shutil.disk_usage(self.partial_folder).free
        except OSError as exc:
            raise EngineError("io_error", f"cannot use the media folder {self.folder}: {exc.strerror or exc}") from None
        if size > free:
            raise EngineError("disk_full", f"the engine's disk has {free / 2**20:.0f} MiB free; this file "
                                           f"needs {size / 2**20:.0f} MiB. Free some space and upload again")

    def _write(self, partial: Path, offset: int, data: bytes, digest: str, last: bool) -> None:
        try:
            partial.parent.mkdir(parents=True, exist_ok=True)
            with open(partial, "ab", buffering=0) as f:
                try:
                    view = memoryview(data)
                    while view:
                        view = view[f.write(view):]
                    if last:
                        os.fsync(f.fileno())
                except OSError:
                    os.ftruncate(f.fileno(), offset)  # no half chunk: the client resumes at a chunk boundary
                    raise
        except OSError as exc:
            self._forget_hasher(digest)
            if exc.errno == errno.ENOSPC:
                raise EngineError("disk_full", f"the engine's disk is full after {offset} bytes of "
                                               f"{digest[:12]}; they are kept: free some space and upload "
                                               "again to resume") from None
            raise EngineError("io_error", f"could not write the upload {digest[:12]}: {exc.strerror or exc}") from None
        with self._guard:
            hasher, seen = self._hashers.pop(digest, (None, 0))
            if hasher is None and offset == 0:
                hasher = hashlib.sha256()
            if hasher is None or seen != offset:
                return  # resumed after a restart: the last chunk re-reads the file instead
            while len(self._hashers) >= _HASHERS:  # abandoned uploads: forget the oldest running digest
                self._hashers.pop(next(iter(self._hashers)))
            self._hashers[digest] = (hasher, offset + len(data))
        hasher.update(data)  # the digest's own lock is held: no other chunk of it runs meanwhile

    def _forget_hasher(self, digest: str) -> tuple[object, int]:
        with self._guard:
            return self._hashers.pop(digest, (None, 0))

    def _finish(self, partial: Path, digest: str, ext: str) -> None:
        hasher, seen = self._forget_hasher(digest)
        size = partial.stat().st_size
        actual = hasher.hexdigest() if hasher is not None and seen == size else content_hash(partial)
        if actual != digest:
            partial.unlink(missing_ok=True)
            raise EngineError("hash_mismatch", f"the uploaded bytes hash to {actual[:12]}, not {digest[:12]}; "
                                               "the upload was discarded: send the file again")
        target = self.folder / f"{digest}{ext}"
        try:
            os.replace(partial, target)
        except OSError as exc:
            raise EngineError("io_error", f"could not store the upload {digest[:12]}: {exc.strerror or exc}") from None
        sync_folder_of(target)
