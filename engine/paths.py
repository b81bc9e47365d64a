"""Shared piece: where a client's paths may point (confinement of op arguments and job params).

A client names files by path: the video to extract, the folder a merge writes, the faceset folder
to import. A remote engine (one listening beyond loopback, or `serve --confine`) is a service on a
network, so every such path must resolve inside its workspace; a local engine keeps accepting the
absolute paths of the user's own files. Relative paths are workspace-relative on both, never
relative to the engine's working folder.

The tables below name every path argument of every operation and job kind in one place; the
service applies them before dispatching (EngineService.handle), and a test checks that every op
and job kind has an entry, so a new one cannot forget to say which of its arguments are paths.
"""

from __future__ import annotations

from pathlib import Path

from .errors import EngineError

# op -> {argument: base folder of a relative path, inside the workspace ("" = the workspace root)}
OP_PATHS: dict[str, dict[str, str]] = {
    "engine.info": {}, "job.start": {}, "job.get": {}, "job.list": {}, "job.cancel": {},  # job.start: JOB_PATHS
    "faceset.list": {}, "faceset.faces": {}, "faceset.tracks": {}, "faceset.choose": {}, "faceset.delete": {},
    "faceset.best": {}, "faceset.outliers": {},
    "mask.labels": {}, "mask.label.get": {}, "mask.label.set": {}, "mask.frame": {}, "mask.preview": {},
    "mask.remove": {},
    "job.control": {}, "train.images": {}, "train.presets": {},
    "merge.preview": {"video": ""},
    "media.status": {}, "media.upload": {},  # by content hash: the store picks the file name
    "files.manifest": {"path": ""}, "files.read": {"path": ""},
    "bundle.pack": {"video": ""}, "bundle.unpack": {"path": ""},
}
# ops that reach files by path on every engine, local or not: they serve or unpack workspace files only
ALWAYS_CONFINED = frozenset({"files.manifest", "files.read", "bundle.unpack"})

NAME = None  # in JOB_PATHS: a param that names a folder of the workspace and must be a plain name

# job kind -> {param: base folder of a relative path, or NAME}; the other names (faceset, model) are
# checked as plain names by the recipes themselves
JOB_PATHS: dict[str, dict[str, str | None]] = {
    "extract": {"video": ""},
    "merge": {"video": "", "output": "", "model": NAME},  # the merge reads models/<model> unchecked
    "mask_matte": {"video": "", "output": ""},
    "import_faceset": {"folder": ""},
    "export_faceset": {"output": ""},
    "export_dfm": {"output": "exports"},  # a bare file name lands in <workspace>/exports
    "train": {}, "pretrain": {}, "mask_train": {}, "mask_apply": {},
    # the report reads models/<model> and the source faceset by name (checked by its recipe)
    "evaluate": {"source_video": "", "destination": "", "result": "", "output": "", "model": NAME},
}


# the engine's own files in the workspace: no client path may name them, whatever the op (the TLS
# private key must not be read, the catalog must not be overwritten by an export)
PRIVATE = frozenset({"tls", "jobs.lock", "catalog.sqlite", "catalog.sqlite-wal", "catalog.sqlite-shm",
                     "catalog.sqlite-journal"})


def is_private(root: Path, path: Path) -> bool:
    """Whether `path` (absolute, resolved) is one of the engine's own files or inside one's folder."""
    try:
        parts = path.relative_to(root).parts
    except ValueError:
        return False
    # case-insensitive, trailing dots and spaces dropped: "TLS/..." or "tls./..." is the key folder on
    # a macOS or Windows disk, and resolve() does not give back the stored spelling there
    return bool(parts) and parts[0].rstrip(". ").lower() in PRIVATE


MAX_NAME, MAX_PATH = 255, 4096  # bytes: the limits of Linux, macOS and Windows file systems


def client_path(root: Path, value: str, *, confine: bool, base: str = "", what: str = "path") -> Path:
    """The absolute path a client's `value` names: relative ones under root/base; with `confine`,
    resolved (symlinks followed) and refused with `forbidden_path` unless inside `root` and clear
    of the engine's own files (PRIVATE)."""
    if not isinstance(value, str) or not value or "\0" in value:
        raise EngineError("bad_request", f"{what!r} must be a non-empty path")
    # Refused here, not by the OS later: stat() on such a path raises ENAMETOOLONG wherever it is used.
    if len(value.encode(errors="replace")) > MAX_PATH or any(
            len(part.encode(errors="replace")) > MAX_NAME for part in Path(value).parts):
        raise EngineError("bad_request", f"{what!r} is longer than a path may be ({MAX_NAME} bytes a name, "
                                         f"{MAX_PATH} in all)")
    path = Path(value)
    if not path.is_absolute():
        path = root / base / path
    if not confine:
        return path
    root = root.resolve()
    try:
        resolved = path.resolve()  # follows symlinks: a link inside that points out is caught here
    except (OSError, RuntimeError) as exc:  # a symlink loop
        raise EngineError("forbidden_path", f"{what!r} cannot be resolved: {value!r} ({exc})") from None
    if not resolved.is_relative_to(root):
        raise EngineError("forbidden_path", f"{what!r} must be inside this engine's workspace; {value!r} "
                                            "is outside it (upload the file by content hash instead)")
    if is_private(root, resolved):
        raise EngineError("forbidden_path", f"{what!r} names the engine's own files ({value!r}); choose another path")
    return resolved


def check_plain_name(value: str, what: str) -> str:
    """A name that becomes one folder of the workspace: never a path (the rule training names obey)."""
    if not value.strip() or value in (".", "..") or any(c in value for c in "/\\\0"):
        raise EngineError("bad_request", f"{what!r} must be a plain name, not a path: {value!r}")
    return value


def confine_paths(root: Path, values: dict, keys: dict[str, str | None], *, confine: bool) -> dict:
    """A copy of `values` with each path named in `keys` made absolute (and checked with `confine`),
    and each NAME checked as a plain name on every engine.

    Missing or nil values stay as they are (an optional output folder); a value of the wrong type is
    left for the op or recipe to refuse with its own message.
    """
    out = dict(values)
    for key, base in keys.items():
        value = out.get(key)
        if isinstance(value, str):
            if base is NAME:
                check_plain_name(value, key)
            else:
                out[key] = str(client_path(root, value, confine=confine, base=base, what=key))
    return out
