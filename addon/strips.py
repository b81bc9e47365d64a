"""Blender layer: strip roles, the source frames a strip shows, and placing merge results.

A movie strip's source frame for timeline frame F is `F - strip.frame_start`, so the frames a strip
shows (its in/out points, trims included) are `[frame_final_start - frame_start,
frame_final_end - frame_start)`. A merge result covers exactly those frames, so it is placed at
`frame_final_start` and lines up frame for frame.
"""

from __future__ import annotations

import os

import bpy

MAX_CHANNEL = 128
# Copied from the destination so the result sits exactly on top of it.
_TRANSFORM_ATTRS = ("offset_x", "offset_y", "scale_x", "scale_y", "rotation", "origin", "filter")
_CROP_ATTRS = ("min_x", "max_x", "min_y", "max_y")


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
    """Add the merged frames as an image strip over `destination`, replacing an earlier result.

    `result` is a merge job's result: {directory, pattern, first_frame, count}, files named by
    source frame. Only the frames the destination shows are used, so trims line up.
    """
    directory = result["directory"]
    pattern = result.get("pattern") or "frame_%06d.png"
    first, count = int(result["first_frame"]), int(result["count"])
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
    _copy_placement(destination, strip)
    return strip


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
