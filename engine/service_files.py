"""Service layer: media by content hash (chunked, resumable uploads) and reading workspace files back.

Each handler takes (service, args); the service holds a MediaStore (`media`) and a HashCache
(`hashes`). Paths in `files.*` arguments arrive already made absolute and confined to the workspace
by EngineService.handle (engine/paths.py); the media ops take a hash, never a path. docs/protocol.md, "Media and files", describes the ops for a client.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from .errors import EngineError
from .files import content_hash
from .mediastore import MediaStore, check_hash
from .paths import is_private
from .service_args import arg

READ_MAX = 8 * 2**20          # bytes per files.read
MANIFEST_MAX = 100_000        # files per manifest: a listing is one frame, and frames are bounded
HASH_CACHE_MAX = 200_000


class HashCache:
    """SHA-256s of workspace files keyed by (path, size, mtime_ns): listing a folder of rendered
    frames again hashes only the frames that changed."""

    def __init__(self, limit: int = HASH_CACHE_MAX) -> None:
        self.limit = limit
        self._hashes: dict[tuple[str, int, int], str] = {}
        self._lock = threading.Lock()

    def hash(self, path: Path, st: os.stat_result) -> str:
        key = (str(path), st.st_size, st.st_mtime_ns)
        with self._lock:
            known = self._hashes.get(key)
        if known is not None:
            return known
        digest = content_hash(path)
        with self._lock:
            if len(self._hashes) >= self.limit:
                self._hashes.clear()  # rare (a huge workspace); starting over is cheaper than bookkeeping
            self._hashes[key] = digest
        return digest


def media_status(service, args: dict) -> dict:
    return service.media.status(check_hash(args.get("hash")))


def media_upload(service, args: dict) -> dict:
    """{hash, name, size, offset, data} -> the media.status map after the chunk."""
    data = args.get("data")
    if not isinstance(data, (bytes, bytearray)):
        raise EngineError("bad_request", "argument 'data' must be bytes")
    name = arg(args, "name", str, "", optional=True)
    return service.media.append(check_hash(args.get("hash")), name, arg(args, "size", int),
                                  arg(args, "offset", int), bytes(data) if isinstance(data, bytearray) else data)


def _relative(service, path: Path) -> str:
    try:
        return path.relative_to(service.workspace.root).as_posix() or "."
    except ValueError:  # a local engine's handler called directly with an outside path
        return str(path)


def files_manifest(service, args: dict) -> dict:
    """{path} -> {root, files: [{path, size, hash}]}: a folder's regular files (recursive, sorted,
    symlinks left out), or one file; `root` is workspace-relative, each file's path relative to it."""
    path, ws = Path(arg(args, "path", str)), service.workspace.root
    if path.is_file():
        root, found = path.parent, [path]
    elif path.is_dir():
        root, found = path, []
        for folder, dirs, files in os.walk(path):  # does not follow linked folders
            # .partial uploads are not results; the engine's own files (TLS key, catalog) are not served
            dirs[:] = sorted(d for d in dirs if not d.startswith(".") and not is_private(ws, Path(folder) / d))
            for name in sorted(files):
                file = Path(folder) / name
                if not name.startswith(".") and not file.is_symlink() and not is_private(ws, file):
                    found.append(file)
            if len(found) > MANIFEST_MAX:
                raise EngineError("bad_request", f"{_relative(service, path)} holds more than {MANIFEST_MAX} "
                                                 "files; ask for one of its folders")
    else:
        raise EngineError("not_found", f"{_relative(service, path)} is not in the workspace")
    cache, listed = service.hashes, []
    for file in found:
        try:
            st = file.stat()
            listed.append({"path": file.relative_to(root).as_posix(), "size": st.st_size, "hash": cache.hash(file, st)})
        except FileNotFoundError:
            continue  # deleted while listed (a job cleaning up): not a result, and not an `internal` error
    return {"root": _relative(service, root), "files": listed}


def files_read(service, args: dict) -> dict:
    """{path, offset, size} -> {data, size}: up to `size` bytes (at most 8 MiB) from `offset`, and the
    file's whole size."""
    path = Path(arg(args, "path", str))
    offset = arg(args, "offset", int, 0, optional=True)
    size = arg(args, "size", int, READ_MAX, optional=True)
    if offset < 0 or not 0 <= size <= READ_MAX:
        raise EngineError("bad_request", f"'offset' must be >= 0 and 'size' between 0 and {READ_MAX} bytes")
    if not path.is_file():
        raise EngineError("not_found", f"{_relative(service, path)} is not a file in the workspace")
    try:
        with open(path, "rb") as f:
            total = os.fstat(f.fileno()).st_size
            f.seek(offset)
            data = f.read(size)
    except OSError as exc:
        raise EngineError("io_error", f"could not read {_relative(service, path)}: {exc.strerror or exc}") from None
    return {"data": data, "size": total}


FILE_OPS: dict = {"media.status": media_status, "media.upload": media_upload,
                  "files.manifest": files_manifest, "files.read": files_read}
