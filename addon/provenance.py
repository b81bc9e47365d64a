"""What a rendered file says about itself: a tag inside MP4/MOV containers and a JSON sidecar. No bpy.

Blender writes its stamp metadata (the Note field included) into PNG text chunks and EXR header
attributes, but FFmpeg's MP4/MOV muxer keeps only the keys it knows (Blender's "Note" is dropped; the
Date survives as ©day), checked on bpy 5.0.1. So a movie is tagged after the render by giving it a new
`moov` box. Blender's FFmpeg writes the `moov` last (after `mdat`), so a new one can go at the end
without moving any sample data (no chunk offset changes): milliseconds for any length of video, with
no FFmpeg needed inside Blender. The render is never rewritten in place: the new box is written and
synced before the old one is retired by a 4-byte type change (`moov` -> `free`; readers skip `free`,
and FFmpeg reads the first `moov` where there are two), so the file plays at every step.
"""

from __future__ import annotations

import datetime
import json
import os
import struct
import tempfile
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
    """`<output>.swapline.json`: what the file is, made by what, when, from which strips and models.
    Atomic: written to a temporary file beside it, synced, then renamed over it."""
    path = sidecar_path(output)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path) or ".", prefix=f".{os.path.basename(path)}.",
                               suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(info, handle, indent=2, sort_keys=False)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
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


def _top_level(handle, length: int) -> list[tuple[bytes, int, int, int]]:
    """(type, offset, size, header size) of the file's top-level boxes."""
    found, at = [], 0
    try:
        while at < length:
            handle.seek(at)
            size, kind = struct.unpack(">I4s", handle.read(8))
            header = 8
            if size == 1:
                size, header = struct.unpack(">Q", handle.read(8))[0], 16
            elif size == 0:
                size = length - at
            if size < header or at + size > length:
                raise ValueError(f"{kind!r} at {at} runs past the end of the file")
            found.append((kind, at, size, header))
            at += size
    except struct.error:  # fewer bytes than a box header needs: the file was cut off
        raise ValueError(f"the file is cut off inside a box header at {at}") from None
    return found


# Boxes that may sit between the samples and the end of the file: the header and what earlier tag runs
# left behind (retired headers, retyped `free`).
_TAIL = (b"moov", b"free", b"skip")


def _sync(handle) -> None:
    handle.flush()
    os.fsync(handle.fileno())


def _new_moov(handle, offset: int, size: int, header: int, values: dict[str, str]) -> bytes:
    handle.seek(offset + header)
    moov = _children(handle.read(size - header))
    if not any(kind == b"udta" for kind, _ in moov):
        moov.append((b"udta", b""))
    return _box(b"moov", _join((kind, _new_udta(inner, values) if kind == b"udta" else inner)
                               for kind, inner in moov))


def tag_movie(path: str, values: dict[str, str]) -> None:
    """Write `values` into an MP4/MOV's moov/udta/meta/ilst. The movie header must come after the
    samples (as Blender writes it): anything else would need the sample offsets moved.

    The file plays at every step, an interrupted run included:
    - room in the `free` space just before the header (left by an earlier run): the new header is
      written inside that free box, then its header turns it into the `moov` (size, then type; FFmpeg
      reads the first of two), and the file is cut after it, dropping the old header;
    - otherwise the new header is appended (cut back off if that fails), the old one is retyped `free`
      and merged with the free space before it, where the next run finds room.
    So repeated runs alternate between two sizes instead of growing."""
    length = os.path.getsize(path)
    name = os.path.basename(path)
    with open(path, "r+b") as handle:
        boxes = _top_level(handle, length)
        moovs = [i for i, box in enumerate(boxes) if box[0] == b"moov"]
        tail = len(boxes)
        while tail > 0 and boxes[tail - 1][0] in _TAIL:
            tail -= 1
        if len(moovs) != 1 or moovs[0] < tail:
            raise ValueError(f"{name}: the movie header is not at the end of the file")
        _, offset, size, header = boxes[moovs[0]]
        new = _new_moov(handle, offset, size, header, values)
        frees = boxes[tail:moovs[0]]  # free space right before the header
        start = boxes[tail][1] if tail < len(boxes) else length
        room = offset - start
        if frees and all(box[3] == 8 for box in frees) and (room == len(new) or room >= len(new) + 8):
            _write_into_free(handle, start, room, new)
            handle.truncate(start + room)  # the old header and anything after it
            _sync(handle)
            return
        try:
            handle.seek(length)
            handle.write(new)
            _sync(handle)
        except BaseException:
            handle.truncate(length)
            raise
        handle.seek(offset + 4)
        handle.write(b"free")  # the old header retired: one moov again
        _sync(handle)
        if frees and frees[0][3] == 8:  # one free box from the tail's start up to the new header
            handle.seek(start)
            handle.write(struct.pack(">I", length - start))
            _sync(handle)


def _write_into_free(handle, start: int, room: int, new: bytes) -> None:
    """Turn the free space [start, start + room) into `new` (a moov box) and a free box after it."""
    handle.seek(start)
    handle.write(struct.pack(">I4s", room, b"free"))  # one free box over the whole space
    _sync(handle)
    handle.seek(start + 8)
    handle.write(new[8:])  # inside the free box: nobody reads it yet
    if room > len(new):
        handle.write(struct.pack(">I4s", room - len(new), b"free"))
    _sync(handle)
    handle.seek(start)
    handle.write(new[:4])  # the free box shrinks to the new header's size (its rest is a free box)
    _sync(handle)
    handle.write(new[4:8])  # and becomes it: FFmpeg reads this moov, the first
    _sync(handle)
