"""Shared piece: a bundle, one zip holding what another engine needs to merge a shot: a trained
model's files, the destination faceset's faces of one video (bundle_faces.py) and a manifest.

`pack_bundle` writes `bundles/<sha256>.zip` in the workspace (deterministic: packing the same model
and faces again gives the same file). `unpack_bundle` reads one that came over the network, so it
trusts nothing: every member is named in the manifest with its size and hash, names are plain
(`model/x.safetensors`, `faceset/000001.jpg`, no folders, no `..`), sizes are bounded while reading,
and nothing is unpickled (weights are safetensors). The model lands in `models/<name>/` by one
rename; the faces are tied to the video by its content hash. Unpacking twice changes nothing: a
model or faceset already holding the same bytes is reused, and a different one of the same name is
left alone (the bundle's goes beside it, named `<name>-<hash prefix>`).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import zipfile
from pathlib import Path

from . import bundle_faces
from .errors import EngineError
from .files import atomic_write, content_hash, sync_folder_of
from .workspace import Workspace

FORMAT, VERSION = "swapline.bundle", 1
MANIFEST = "manifest.json"
_MEMBER = re.compile(r"((mask_)?model/[A-Za-z0-9_][A-Za-z0-9_.-]*\.(safetensors|json)"
                     r"|faceset/[A-Za-z0-9_][A-Za-z0-9_.-]*\.(json|png|jpg))")
_FACE_FILE = re.compile(r"faceset/\d{6}(_mask|_learned)?\.(png|jpg)")
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_. -]{0,99}")
MAX_MEMBERS = 200_000
MAX_SIZE = {".safetensors": 16 << 30, ".json": 256 << 20, ".png": 64 << 20, ".jpg": 64 << 20}
MAX_TOTAL = 64 << 30
_STAMP = (1980, 1, 1, 0, 0, 0)  # fixed member times: the same content packs to the same bytes


def _plain(name, what: str) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name) or ".." in name:
        raise EngineError("bad_request", f"{what} name {name!r} must be a plain name")
    return name


def _mask_model_dir(ws: Workspace, name: str) -> Path:
    from .models.segmenter import mask_model_dir  # loads torch: only a bundle with a mask model needs it

    return mask_model_dir(ws, name)


# the folders a bundle carries whole: member prefix -> (where a workspace keeps one by name, what it is)
_FOLDERS = {"model": (Workspace.model_dir, "trained model"), "mask_model": (_mask_model_dir, "mask model")}


def _model_files(ws: Workspace, prefix: str, name: str) -> dict[str, Path]:
    """A model's own files (weights and JSON) as bundle members; backups and previews stay home."""
    where, what = _FOLDERS[prefix]
    folder = where(ws, name)
    files = {f"{prefix}/{p.name}": p for p in sorted(folder.glob("*")) if p.is_file()
             and p.suffix in (".safetensors", ".json") and _MEMBER.fullmatch(f"{prefix}/{p.name}")}
    if f"{prefix}/model.safetensors" not in files:
        raise EngineError("not_found", f"no {what} {name!r} in this workspace; train it first")
    return files


def pack_bundle(ws: Workspace, model: str, faceset: str, video: Path, mask_model: str | None = None) -> Path:
    """Write the bundle of `model`, `faceset`'s faces of `video` and, when the merge's mask uses one,
    the mask model `mask_model`; returns its path in bundles/."""
    model, faceset = _plain(model, "model"), _plain(faceset, "faceset")
    files = _model_files(ws, "model", model)
    if mask_model:
        files.update(_model_files(ws, "mask_model", _plain(mask_model, "mask model")))
    media = bundle_faces.media_row(ws, Path(video))
    if not media["hash"]:
        media["hash"] = content_hash(Path(video))
    doc, face_files = bundle_faces.describe(ws, faceset, media["id"])
    if not doc["faces"] or not doc["people"]:
        raise EngineError("no_faces", f"faceset {faceset!r} has no faces of its person in {Path(video).name}")
    files.update(face_files)
    row = ws._q("SELECT source, destination, iterations, loss FROM models WHERE name=?", (model,))
    faces_bytes = json.dumps(doc, sort_keys=True).encode()
    listing = {name: {"size": path.stat().st_size, "sha256": content_hash(path)} for name, path in files.items()}
    listing[bundle_faces.FACES_DOC] = {"size": len(faces_bytes), "sha256": hashlib.sha256(faces_bytes).hexdigest()}
    manifest = {
        "format": FORMAT, "version": VERSION, "model": model, "faceset": faceset, "mask_model": mask_model or None,
        "catalog": dict(row[0]) if row else None, "files": listing,
        "media": {k: media[k] for k in ("hash", "width", "height", "fps", "frames")} | {"name": Path(video).name},
    }
    out = ws.root / "bundles"
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f".pack.{os.getpid()}.{id(manifest)}.zip"
    try:
        with zipfile.ZipFile(tmp, "w", allowZip64=True) as zf:
            _add(zf, MANIFEST, json.dumps(manifest, sort_keys=True, indent=1).encode())
            _add(zf, bundle_faces.FACES_DOC, faces_bytes)
            for name in sorted(files):
                info = zipfile.ZipInfo(name, _STAMP)
                info.external_attr = 0o644 << 16
                with open(files[name], "rb") as src, zf.open(info, "w", force_zip64=True) as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        final = out / f"{content_hash(tmp)}.zip"
        os.replace(tmp, final)
    except OSError as exc:
        raise EngineError("io_error", f"could not write the bundle in {out}: {exc.strerror or exc}") from exc
    finally:
        tmp.unlink(missing_ok=True)
    sync_folder_of(final)
    return final


def _add(zf: zipfile.ZipFile, name: str, data: bytes) -> None:
    info = zipfile.ZipInfo(name, _STAMP)
    info.external_attr = 0o644 << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    zf.writestr(info, data)


def _read(zf: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int) -> bytes:
    """A member's bytes, never more than `limit` whatever its header claims."""
    buf = io.BytesIO()
    with zf.open(info) as src:
        while block := src.read(min(1 << 20, limit + 1 - buf.tell())):
            buf.write(block)
            if buf.tell() > limit:
                raise EngineError("bad_bundle", f"bundle member {info.filename} is larger than it says")
    return buf.getvalue()


def _open(path: Path) -> tuple[zipfile.ZipFile, dict, dict[str, zipfile.ZipInfo]]:
    """The zip, its checked manifest and its members by name; anything unexpected is refused."""
    try:
        zf = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as exc:
        raise EngineError("bad_bundle", f"{Path(path).name} is not a readable zip: {exc}") from None
    try:
        infos = zf.infolist()
        if len(infos) > MAX_MEMBERS:
            raise EngineError("bad_bundle", f"the bundle has {len(infos)} members; at most {MAX_MEMBERS}")
        members: dict[str, zipfile.ZipInfo] = {}
        for info in infos:
            name = info.filename
            if name in members or not (name == MANIFEST or _MEMBER.fullmatch(name)) or ".." in name:
                raise EngineError("bad_bundle", f"the bundle holds an unexpected member {name!r}")
            if info.flag_bits & 0x1 or info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                raise EngineError("bad_bundle", f"bundle member {name} is encrypted or oddly compressed")
            members[name] = info
        if MANIFEST not in members:
            raise EngineError("bad_bundle", "the bundle has no manifest.json")
        manifest = json.loads(_read(zf, members[MANIFEST], MAX_SIZE[".json"]))
        _check_manifest(manifest, members)
        return zf, manifest, members
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        zf.close()
        raise EngineError("bad_bundle", f"the bundle's manifest is malformed: {exc}") from None
    except BaseException:
        zf.close()
        raise


def _check_manifest(m: dict, members: dict[str, zipfile.ZipInfo]) -> None:
    if m.get("format") != FORMAT or not isinstance(m.get("version"), int) or m["version"] > VERSION:
        raise EngineError("bad_bundle", f"not a bundle this engine reads ({m.get('format')!r} v{m.get('version')!r})")
    _plain(m["model"], "model")
    _plain(m["faceset"], "faceset")
    if m.get("mask_model") is not None:
        _plain(m["mask_model"], "mask model")
    if (m.get("mask_model") is not None) != ("mask_model/model.safetensors" in m["files"]):
        raise EngineError("bad_bundle", "the bundle's mask model and its files disagree")
    listing = m["files"]
    if set(listing) != set(members) - {MANIFEST}:
        raise EngineError("bad_bundle", "the bundle's members and its manifest's file list differ")
    total = 0
    for name, entry in listing.items():
        size, digest = entry["size"], entry["sha256"]
        if not isinstance(size, int) or not 0 <= size <= MAX_SIZE[Path(name).suffix] \
                or members[name].file_size != size or not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise EngineError("bad_bundle", f"bundle member {name} has a bad or too large size")
        total += size
    if total > MAX_TOTAL or "model/model.safetensors" not in listing or bundle_faces.FACES_DOC not in listing:
        raise EngineError("bad_bundle", "the bundle is too large or lacks its model or faces")
    media = m["media"]
    if not re.fullmatch(r"[0-9a-f]{64}", media["hash"]):
        raise EngineError("bad_bundle", "the bundle's video hash is malformed")
    for key, kind in (("width", int), ("height", int), ("frames", int), ("fps", float)):
        kind(media[key])  # a ValueError or TypeError here is a malformed manifest


def _extract(zf: zipfile.ZipFile, manifest: dict, info: zipfile.ZipInfo, dest: Path) -> None:
    """One member to `dest`, its hash checked before the file appears."""
    data = _read(zf, info, manifest["files"][info.filename]["size"])
    if hashlib.sha256(data).hexdigest() != manifest["files"][info.filename]["sha256"]:
        raise EngineError("bad_bundle", f"bundle member {info.filename} does not match its hash")
    atomic_write(dest, data, sync_folder=False)


def _free_name(name: str, digest: str, same) -> tuple[str, bool]:
    """(the name to use, whether it already holds the bundle's content): the bundle's own name
    unless another thing has it, then `<name>-<digest prefix>`."""
    for candidate in (name, f"{name}-{digest[:10]}"):
        state = same(candidate)
        if state is not False:
            return candidate, bool(state)
    raise EngineError("conflict", f"both {name!r} and {name}-{digest[:10]!r} hold something else here")


def unpack_bundle(ws: Workspace, path: Path) -> dict:
    """Import a bundle: {"model", "faceset", "faces", "media"}: the names to merge with here (usually
    the bundle's own) and the video's content hash."""
    zf, manifest, members = _open(Path(path))
    with zf:
        doc, doc_bytes = _faces_doc(zf, manifest, members)  # everything is checked before anything is placed
        model = _unpack_model(ws, zf, manifest, members, "model")
        mask_model = _unpack_model(ws, zf, manifest, members, "mask_model") if manifest.get("mask_model") else None
        media_id = bundle_faces.media_by_hash(ws, manifest["media"]["hash"], manifest["media"])
        faces_digest = hashlib.sha256(doc_bytes).hexdigest()

        def same_faceset(name: str):
            if ws.facesets.find(name) is None:
                return None
            return bundle_faces.same_faces(ws, name, doc, media_id)

        faceset, present = _free_name(manifest["faceset"], faces_digest, same_faceset)
        if not present:
            _place_faces(ws, zf, manifest, members, doc, faceset, media_id, faces_digest)
    return {"model": model, "faceset": faceset, "faces": len(doc["faces"]), "media": manifest["media"]["hash"],
            "mask_model": mask_model}


def _unpack_model(ws: Workspace, zf: zipfile.ZipFile, manifest: dict, members: dict, prefix: str) -> str:
    """Place the bundle's model (or mask model) unless the workspace has it; returns its name here."""
    files = {n[len(prefix) + 1:]: e["sha256"] for n, e in manifest["files"].items() if n.startswith(f"{prefix}/")}
    digest = hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()
    where = _FOLDERS[prefix][0]

    def same(name: str):  # None: free; True: holds these files; False: holds others
        folder = where(ws, name)
        if not folder.exists():
            return None
        return all((folder / n).is_file() and content_hash(folder / n) == h for n, h in files.items())

    name, present = _free_name(manifest[prefix], digest, same)
    if not present:
        _place_model(ws, zf, manifest, members, prefix, name)
    return name


def _faces_doc(zf: zipfile.ZipFile, manifest: dict, members: dict) -> tuple[dict, bytes]:
    """The bundle's faces document, checked, with its bytes."""
    entry = members[bundle_faces.FACES_DOC]
    doc_bytes = _read(zf, entry, manifest["files"][entry.filename]["size"])
    if hashlib.sha256(doc_bytes).hexdigest() != manifest["files"][entry.filename]["sha256"]:
        raise EngineError("bad_bundle", "the bundle's faces document does not match its hash")
    try:
        doc = json.loads(doc_bytes)
    except ValueError as exc:
        raise EngineError("bad_bundle", f"the bundle's faces document is not JSON: {exc}") from None
    bundle_faces.check_doc(doc)
    for e in doc["faces"]:
        if not all(_FACE_FILE.fullmatch(n) and n in members and manifest["files"][n]["sha256"] == h
                   for n, h in e["files"].items()):
            raise EngineError("bad_bundle", "the bundle's faces name files it does not hold")
    return doc, doc_bytes


def _place_faces(ws: Workspace, zf: zipfile.ZipFile, manifest: dict, members: dict, doc: dict, faceset: str,
                 media_id: int, digest: str) -> None:
    """Extract the faces' files into the faceset's folder and store their rows; all or nothing."""
    folder = ws.faceset_dir(faceset)
    placed: dict[str, Path] = {}
    try:
        for name in sorted({n for e in doc["faces"] for n in e["files"]}):
            placed[name] = folder / f"b{digest[:8]}_{Path(name).name}"
            _extract(zf, manifest, members[name], placed[name])
        sync_folder_of(folder / "x")
        bundle_faces.store(ws, faceset, doc, media_id, placed)
    except BaseException:
        for file in placed.values():
            file.unlink(missing_ok=True)
        raise


def _place_model(ws: Workspace, zf: zipfile.ZipFile, manifest: dict, members: dict, prefix: str, model: str) -> None:
    """Extract a model's files into a hidden folder, then rename it into models/<name>/ (or
    mask_models/<name>/) at once."""
    final = _FOLDERS[prefix][0](ws, model)
    tmp = final.with_name(f".{model}.{os.getpid()}.unpack")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        for name in sorted(n for n in members if n.startswith(f"{prefix}/")):
            _extract(zf, manifest, members[name], tmp / name[len(prefix) + 1:])
        sync_folder_of(tmp / "x")
        os.replace(tmp, final)
    except OSError as exc:
        raise EngineError("io_error", f"could not place model {model!r}: {exc.strerror or exc}") from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    sync_folder_of(final)
    if prefix != "model":
        return  # mask models have no catalog row
    cat = manifest.get("catalog") if isinstance(manifest.get("catalog"), dict) else {}
    try:
        ws.record_model(model, str(cat.get("source") or ""), str(cat.get("destination") or ""),
                        int(cat.get("iterations") or 0), float(cat["loss"]) if cat.get("loss") is not None else None)
    except (TypeError, ValueError):
        ws.record_model(model, "", "", 0, None)  # the catalog row is informative only
