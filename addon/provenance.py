"""What a rendered file says about itself: a tag inside MP4/MOV containers and a JSON sidecar. No bpy.

Blender writes its stamp metadata (the Note field included) into PNG text chunks and EXR header
attributes, but FFmpeg's MP4/MOV muxer keeps only the keys it knows (Blender's "Note" is dropped; the
Date survives as ©day), checked on bpy 5.0.1. So a movie is tagged after the render by editing its
metadata in place: Blender's FFmpeg writes the `moov` box last (after `mdat`), so the box can grow
without moving any sample data (no chunk offset changes) and the tag costs a rewrite of the file's
tail only, milliseconds for any length of video, with no FFmpeg needed inside Blender.
"""

from __future__ import annotations

import datetime
import json
import os
import struct
import tomllib
from pathlib import Path

TOOL = "Swapline"
WHAT = "Contains synthetic faces (face replacement) made with Swapline"
FREEFORM_MEAN = b"com.apple.iTunes"
# Where the tags go in the movie's udta/meta/ilst (FFmpeg reads them back as these keys).
_ILST_KEYS = {"comment": b"\xa9cmt", "description": b"desc"}
_MANIFEST = Path(__file__).resolve().parents[1] / "blender_manifest.toml"


def version() -> str:
    """The extension's version (blender_manifest.toml sits at the extension root, in the zip too)."""
    try:
        with open(_MANIFEST, "rb") as handle:
            return str(tomllib.load(handle)["version"])
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        return "unknown"


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat()


def statement(when: str | None = None) -> str:
    """The one line every rendered file carries."""
    return f"{WHAT} {version()}, {when or now()}"


def tags(when: str) -> dict[str, str]:
    """The container tags of a movie: FFmpeg reads them back as these metadata keys."""
    line = statement(when)
    return {"comment": line, "description": line, "synthetic_faces": "yes", "swapline_version": version(),
            "swapline_date": when}


def sidecar_path(output: str) -> str:
    return f"{output}.swapline.json"


def write_sidecar(output: str, info: dict) -> str:
    """`<output>.swapline.json` (atomic): what the file is, made by what, when, from which strips and models."""
    path = sidecar_path(output)
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(info, handle, indent=2, sort_keys=False)
        handle.write("\n")
    os.replace(tmp, path)
    return path


# --- MP4 / QuickTime metadata -------------------------------------------------------------------------

def _box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I4s", 8 + len(payload), kind) + payload


def _children(data: bytes) -> list[tuple[bytes, bytes]]:
    """(type, payload) of the boxes in `data` (32-bit sizes: boxes inside moov never need more)."""
    found, at = [], 0
    while at + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[at:at + 8])
        if size < 8 or at + size > len(data):
            raise ValueError(f"broken box {kind!r} at {at}")
        found.append((kind, data[at + 8:at + size]))
        at += size
    return found


def _join(boxes) -> bytes:
    return b"".join(_box(kind, payload) for kind, payload in boxes)


def _text_item(kind: bytes, text: str) -> tuple[bytes, bytes]:
    # data atom: type 1 (UTF-8), locale 0
    return kind, _box(b"data", struct.pack(">II", 1, 0) + text.encode("utf-8"))


def _freeform_item(name: str, text: str) -> tuple[bytes, bytes]:
    payload = (_box(b"mean", b"\0\0\0\0" + FREEFORM_MEAN) + _box(b"name", b"\0\0\0\0" + name.encode("ascii"))
               + _box(b"data", struct.pack(">II", 1, 0) + text.encode("utf-8")))
    return b"----", payload


def _freeform_name(payload: bytes) -> str | None:
    for kind, inner in _children(payload):
        if kind == b"name":
            return inner[4:].decode("utf-8", "replace")
    return None


def _new_ilst(old: bytes, values: dict[str, str]) -> bytes:
    """`old` ilst payload with our keys replaced (a second tag run does not pile up duplicates)."""
    ours = {_ILST_KEYS[k] for k in values if k in _ILST_KEYS}
    free = {k for k in values if k not in _ILST_KEYS}
    kept = [(kind, payload) for kind, payload in _children(old)
            if kind not in ours and not (kind == b"----" and _freeform_name(payload) in free)]
    added = [_text_item(_ILST_KEYS[k], v) if k in _ILST_KEYS else _freeform_item(k, v) for k, v in values.items()]
    return _join(kept + added)


def _new_meta(old: bytes | None, values: dict[str, str]) -> bytes:
    if old is None:  # a full box: version and flags, an iTunes-style handler, the item list
        hdlr = b"\0\0\0\0" + b"\0\0\0\0" + b"mdir" + b"appl" + b"\0" * 8 + b"\0"
        return b"\0\0\0\0" + _join([(b"hdlr", hdlr), (b"ilst", _new_ilst(b"", values))])
    head, boxes = old[:4], _children(old[4:])
    if not any(kind == b"ilst" for kind, _ in boxes):
        boxes.append((b"ilst", b""))
    return head + _join((kind, _new_ilst(payload, values) if kind == b"ilst" else payload) for kind, payload in boxes)


def _new_udta(old: bytes, values: dict[str, str]) -> bytes:
    boxes = _children(old)
    if not any(kind == b"meta" for kind, _ in boxes):
        boxes.append((b"meta", _new_meta(None, values)))
        return _join(boxes)
    return _join((kind, _new_meta(payload, values) if kind == b"meta" else payload) for kind, payload in boxes)


def _top_level(handle, length: int) -> list[tuple[bytes, int, int]]:
    """(type, offset, size) of the file's top-level boxes."""
    found, at = [], 0
    while at + 8 <= length:
        handle.seek(at)
        size, kind = struct.unpack(">I4s", handle.read(8))
        if size == 1:
            size = struct.unpack(">Q", handle.read(8))[0]
        elif size == 0:
            size = length - at
        if size < 8 or at + size > length:
            raise ValueError(f"{kind!r} at {at} runs past the end of the file")
        found.append((kind, at, size))
        at += size
    return found


def tag_movie(path: str, values: dict[str, str]) -> None:
    """Write `values` into an MP4/MOV's moov/udta/meta/ilst, in place. The moov box must be the file's
    last box (as Blender writes it): anything else would shift sample data and need its offsets moved."""
    length = os.path.getsize(path)
    with open(path, "r+b") as handle:
        boxes = _top_level(handle, length)
        moovs = [box for box in boxes if box[0] == b"moov"]
        if len(moovs) != 1 or boxes[-1][0] != b"moov":
            raise ValueError(f"{os.path.basename(path)}: the movie header is not at the end of the file")
        _, offset, size = moovs[0]
        handle.seek(offset)
        header = struct.unpack(">I", handle.read(4))[0]
        handle.seek(offset + (16 if header == 1 else 8))
        moov = _children(handle.read(size - (16 if header == 1 else 8)))
        if not any(kind == b"udta" for kind, _ in moov):
            moov.append((b"udta", b""))
        payload = _join((kind, _new_udta(inner, values) if kind == b"udta" else inner) for kind, inner in moov)
        handle.seek(offset)
        handle.write(_box(b"moov", payload))
        handle.truncate()
