"""Blender layer: strip roles, the source frames a strip shows, and placing merge results.

A movie strip's source frame for timeline frame F is `F - strip.frame_start`, so the frames a strip
shows (its in/out points, trims included) are `[frame_final_start - frame_start,
frame_final_end - frame_start)`. A merge result covers exactly those frames, so it is placed at
`frame_final_start` and lines up frame for frame.
"""

from __future__ import annotations

import os
import shutil
import struct
import zlib

import bpy

from . import preferences

MAX_CHANNEL = 128
# Copied from the destination so the result sits exactly on top of it.
_TRANSFORM_ATTRS = ("offset_x", "offset_y", "scale_x", "scale_y", "rotation", "origin", "filter")
_CROP_ATTRS = ("min_x", "max_x", "min_y", "max_y")


class NotOnThisMachine(ValueError):
    """A merge result in a folder this machine does not have (a remote engine wrote it)."""


def results_folder(job_id: str) -> str:
    """Where a remote engine's result of `job_id` is downloaded: `<blend>_swapline/results/<job id>`
    next to the .blend (under the temp folder for an unsaved file), so it travels with the project."""
    return os.path.join(preferences.workspace_dir(None), "results", job_id)


def sequencer_scene(context):
    """The scene the Video Sequencer shows (5.0: the workspace's sequencer scene)."""
    return getattr(context, "sequencer_scene", None) or context.scene


def active_strip(scene):
    editor = scene.sequence_editor if scene is not None else None
    return editor.active_strip if editor is not None else None


def all_strips(scene):
    editor = scene.sequence_editor if scene is not None else None
    return list(editor.strips_all) if editor is not None else []


def find_role(scene, role: str):
    """The strip marked with `role`, or None (roles are exclusive within a scene)."""
    for strip in all_strips(scene):
        if strip.swapline_role == role:
            return strip
    return None


def set_role(scene, strip, role: str) -> None:
    if role != "NONE":
        for other in all_strips(scene):
            if other != strip and other.swapline_role == role:
                other.swapline_role = "NONE"
    strip.swapline_role = role


def video_path(strip) -> str:
    return os.path.normpath(os.path.abspath(bpy.path.abspath(strip.filepath)))


def source_range(strip) -> tuple[int, int]:
    """Source frames `[start, end)` that the strip shows on the timeline."""
    offset = round(strip.frame_start)  # a float in 5.0; movie strips sit on whole frames
    return strip.frame_final_start - offset, strip.frame_final_end - offset


def _overlaps(strip, start: int, end: int) -> bool:
    return strip.frame_final_start < end and start < strip.frame_final_end


def free_channel_above(scene, strip, start: int, end: int, ignore=()) -> int:
    """The first channel above `strip` with nothing in `[start, end)` (top-level strips only)."""
    taken = [s for s in scene.sequence_editor.strips if s != strip and s not in ignore and _overlaps(s, start, end)]
    for channel in range(strip.channel + 1, MAX_CHANNEL + 1):
        if not any(s.channel == channel for s in taken):
            return channel
    raise RuntimeError(f"No free channel above {strip.name!r}")


def results_of(scene, destination) -> list:
    return [s for s in scene.sequence_editor.strips if s.swapline_result_for == destination.name]


def place_result(scene, destination, result: dict, job_id: str = ""):
    """Place a merge job's result over `destination`, replacing an earlier one; returns the face strip.

    `result` (engine/merge/shot.py): {directory, first_frame, count, layer: {directory, pattern} | None,
    matte: {...} | None, frames: {...} | None}, files named by source frame. The face layer (RGBA,
    transparent outside the face) goes over the destination with Alpha Over, so the original stays
    untouched below; without a layer, the full merged frames do. The matte lands as the shot's
    muted Non-Color matte strip (matte.py), where the face grade finds it. An older result without
    these keys ({directory, pattern, ...}) is placed as full frames.
    """
    from . import matte  # matte.py builds on this module

    first, count = int(result["first_frame"]), int(result["count"])
    layer = result.get("layer")
    frames = layer or result.get("frames")
    if frames is None and "layer" not in result and "frames" not in result:
        frames = {"directory": result["directory"], "pattern": result.get("pattern") or "frame_%06d.png"}
    if frames is None:
        raise ValueError("The merge wrote neither a face layer nor full frames")
    if not os.path.isdir(frames["directory"]):
        # bpy 5.0.1 crashes rendering image elements whose files it never read (see fill_missing)
        raise NotOnThisMachine(f"{frames['directory']} is not on this machine")
    strip = place_frames(scene, destination, frames["directory"], frames["pattern"], first, count, job_id,
                         blend="ALPHA_OVER" if layer else None)
    if result.get("matte"):
        matte.place(scene, destination, {"directory": result["matte"]["directory"],
                                         "pattern": result["matte"]["pattern"], "first_frame": first,
                                         "count": count}, job_id=job_id)
    return strip


def place_frames(scene, destination, directory: str, pattern: str, first: int, count: int, job_id: str = "",
                 blend: str | None = None):
    """An image strip of the files `pattern % source frame` in `directory` over `destination`, for the
    source frames it shows within [first, first + count); replaces an earlier result strip. Files
    need not exist yet (the live preview fills them in): a missing one is given a transparent blank.
    The folder must be on this machine (NotOnThisMachine otherwise)."""
    if not os.path.isdir(directory):
        raise NotOnThisMachine(f"{directory} is not on this machine")
    src_start, src_end = source_range(destination)
    frames = range(max(first, src_start), min(first + count, src_end))
    if len(frames) == 0:
        raise ValueError(f"The merge result (frames {first}-{first + count - 1}) does not cover "
                         f"what {destination.name!r} shows (source frames {src_start}-{src_end - 1})")
    editor = scene.sequence_editor
    for old in results_of(scene, destination):
        editor.strips.remove(old)
    start = round(destination.frame_start) + frames[0]
    channel = free_channel_above(scene, destination, start, start + len(frames))
    files = [pattern % frame for frame in frames]
    strip = editor.strips.new_image(name=f"{destination.name} swap", filepath=os.path.join(directory, files[0]),
                                    channel=channel, frame_start=start)
    for name in files[1:]:
        strip.elements.append(name)
    strip.swapline_result_for = destination.name
    strip.swapline_job = job_id
    if blend:
        strip.blend_type = blend
    _copy_placement(destination, strip)
    fill_missing(strip, *frame_size(scene, destination))
    return strip


def frame_size(scene, strip) -> tuple[int, int]:
    """A movie strip's frame size (its element holds it), else the scene's render size."""
    element = strip.elements[0] if len(getattr(strip, "elements", ())) else None
    if element is not None and element.orig_width > 0 and element.orig_height > 0:
        return element.orig_width, element.orig_height
    return scene.render.resolution_x, scene.render.resolution_y


def fill_missing(strip, width: int, height: int) -> int:
    """Give every frame of an image strip that has no file a transparent one; returns how many.

    A missing file must not break the strip, and in bpy 5.0.1 it does: `elements.append` leaves an
    element's size uninitialised until its file is read, and rendering a missing one allocates an
    image of that garbage size (seen as "Calloc returns null" and a crash). One blank PNG is made
    and hard-linked (copied where links fail) under each missing name; the preview and the merge
    job replace them file by file (os.replace: the link goes, the blank stays for the others)."""
    directory = os.path.abspath(bpy.path.abspath(strip.directory))
    missing = [os.path.join(directory, e.filename) for e in strip.elements
               if not os.path.exists(os.path.join(directory, e.filename))]
    if not missing:
        return 0
    blank = os.path.join(directory, f".blank_{width}x{height}.png")
    if not os.path.exists(blank):
        temporary = f"{blank}.{os.getpid()}.tmp"
        with open(temporary, "wb") as f:
            f.write(blank_png(width, height))
        os.replace(temporary, blank)
    for path in missing:
        try:
            os.link(blank, path)
        except OSError:
            shutil.copyfile(blank, path)
    return len(missing)


def blank_png(width: int, height: int) -> bytes:
    """A fully transparent RGBA PNG (8 bits) of this size, written without an image library."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    row = b"\x00" * (1 + 4 * width)  # filter byte "none", then zero RGBA
    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(row * height, 9)) + \
        chunk(b"IEND", b"")


def frame_file(strip, timeline_frame: int) -> str | None:
    """The file an image strip shows at a timeline frame; None outside the strip."""
    if not strip.frame_final_start <= timeline_frame < strip.frame_final_end:
        return None
    element = strip.strip_elem_from_frame(timeline_frame)
    if element is None:
        return None
    return os.path.join(os.path.abspath(bpy.path.abspath(strip.directory)), element.filename)


def _copy_placement(source, target) -> None:
    # The merged frames have the destination's resolution, so the same transform lines them up.
    for group, attrs in (("transform", _TRANSFORM_ATTRS), ("crop", _CROP_ATTRS)):
        src, dst = getattr(source, group, None), getattr(target, group, None)
        if src is None or dst is None:
            continue
        for attr in attrs:
            if hasattr(src, attr):
                try:
                    setattr(dst, attr, getattr(src, attr))
                except (AttributeError, TypeError, ValueError):
                    pass
