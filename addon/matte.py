"""Blender layer: a shot's face matte on the timeline and the face grade that uses it.

A `mask_matte` job renders one 8-bit grey PNG per source frame (white = the faceset's person). The
matte strip covers exactly the frames its shot strip shows (DESIGN.md: a movie strip's source
frame for timeline frame F is F - strip.frame_start), in a free channel above it, Non-Color, and
muted: a strip modifier's STRIP mask still reads a muted strip (checked on bpy 5.0.1 by a render),
so the matte drives the grade without covering the picture. The mask is read in the output canvas,
so the matte carries the shot's transform and crop.
"""

from __future__ import annotations

import os

import bpy

from . import strips

GRADE_NAME = "Face Grade"
# The face grading stack, in the order Blender applies it: balance (lift/gamma/gain), then curves,
# then hue/saturation/value by hue. Each one reads the face matte as its mask, so only the face changes.
GRADE_STACK = ((GRADE_NAME, "COLOR_BALANCE"), ("Face Curves", "CURVES"), ("Face Hue", "HUE_CORRECT"))
SUFFIX = " face matte"


def owner_name(strip) -> str:
    """The shot a strip's face belongs to: a merge result's destination, a matte's shot, or itself."""
    return strip.swapline_matte_for or strip.swapline_result_for or strip.name


def matte_of(scene, name: str):
    for strip in strips.all_strips(scene):
        if strip.swapline_matte_for == name:
            return strip
    return None


def adopt(job_id: str, tag: dict) -> None:
    """The answer to our own mask_matte job.start: remember where its matte must go."""
    if tag.get("purpose") != "matte" or tag.get("scene") not in bpy.data.scenes:
        return
    mattes = bpy.data.scenes[tag["scene"]].swapline.mattes
    if any(request.job_id == job_id for request in mattes):
        return
    request = mattes.add()
    request.job_id, request.strip, request.grade = job_id, tag.get("strip", ""), bool(tag.get("grade"))
    if tag.get("grade_on"):  # grade a strip other than the shot (its merge result) once the matte lands
        request["grade_on"] = tag["grade_on"]


def settle(job: dict) -> list[str]:
    """Place a finished matte a scene asked for (and its grade); returns error texts."""
    if job.get("kind") != "mask_matte" or job.get("state") in ("queued", "running"):
        return []
    errors = []
    for scene in bpy.data.scenes:
        mattes = scene.swapline.mattes
        for index in reversed(range(len(mattes))):
            if mattes[index].job_id != str(job.get("id")):
                continue
            name, grade = mattes[index].strip, mattes[index].grade
            grade_on = mattes[index].get("grade_on") or name
            mattes.remove(index)
            if job.get("state") != "done":
                continue
            shot = scene.sequence_editor.strips_all.get(name) if scene.sequence_editor else None
            if shot is None:
                errors.append(f"Matte done, but the strip {name!r} is gone")
                continue
            try:
                strip = place(scene, shot, job.get("result") or {}, job_id=str(job.get("id")))
                if grade:
                    add_grade(scene.sequence_editor.strips_all.get(grade_on) or shot, strip)
            except (KeyError, ValueError, RuntimeError, TypeError) as exc:
                errors.append(f"Could not add the face matte: {exc}")
    return errors


def place(scene, shot, result: dict, job_id: str = ""):
    """Add the matte frames as a muted Non-Color image strip over `shot`, replacing an older matte."""
    directory = result["directory"]
    pattern = result.get("pattern") or "matte_%06d.png"
    first, count = int(result["first_frame"]), int(result["count"])
    src_start, src_end = strips.source_range(shot)
    frames = range(max(first, src_start), min(first + count, src_end))
    if len(frames) == 0:
        raise ValueError(f"The matte (frames {first}-{first + count - 1}) does not cover what {shot.name!r} "
                         f"shows (source frames {src_start}-{src_end - 1})")
    editor = scene.sequence_editor
    old = matte_of(scene, shot.name)
    users = _grades_using(scene, old) if old is not None else []
    if old is not None:
        editor.strips.remove(old)
    start = round(shot.frame_start) + frames[0]
    channel = strips.free_channel_above(scene, shot, start, start + len(frames))
    files = [pattern % frame for frame in frames]
    strip = editor.strips.new_image(name=f"{shot.name}{SUFFIX}", filepath=os.path.join(directory, files[0]),
                                    channel=channel, frame_start=start)
    for name in files[1:]:
        strip.elements.append(name)
    strip.colorspace_settings.name = "Non-Color"  # a matte is data: no view transform on its values
    strip.mute = True
    strip.color_tag = "COLOR_05"
    strip.swapline_matte_for = shot.name
    strip.swapline_job = job_id
    _copy_placement(shot, strip)
    for modifier in users:  # a re-made matte keeps feeding the grades made from the old one
        modifier.input_mask_strip = strip
    return strip


def _copy_placement(shot, strip) -> None:
    """Give the matte the shot's transform and crop. A modifier's STRIP mask is read in the output
    canvas (bpy 5.0.1, checked by a render), so a moved or scaled shot needs its matte moved alike."""
    for group, attrs in (("transform", ("offset_x", "offset_y", "scale_x", "scale_y", "rotation", "origin",
                                        "filter")),
                         ("crop", ("min_x", "max_x", "min_y", "max_y"))):
        source, target = getattr(shot, group, None), getattr(strip, group, None)
        for attr in attrs if source is not None and target is not None else ():
            if hasattr(source, attr):
                setattr(target, attr, getattr(source, attr))


def _grades_using(scene, matte) -> list:
    return [m for s in strips.all_strips(scene) for m in s.modifiers
            if getattr(m, "input_mask_type", "") == "STRIP" and m.input_mask_strip == matte]


def _grade_modifier(strip, name: str, kind: str):
    """Our modifier `name` of type `kind` on `strip`: the one named so, or, where the user has another
    kind of modifier under that name, the one Blender named `name.001`... when it was made."""
    exact = strip.modifiers.get(name)
    if exact is not None and exact.type == kind:
        return exact
    return next((m for m in strip.modifiers if m.type == kind and m.name.startswith(f"{name}.")
                 and m.name[len(name) + 1:].isdigit()), None)


def add_grade(strip, matte):
    """The face grading stack on `strip`, every modifier masked by `matte`; modifiers already there
    (by name and type) are reused and keep their settings. Returns the Color Balance modifier."""
    found = {}
    for name, kind in GRADE_STACK:
        modifier = _grade_modifier(strip, name, kind) or strip.modifiers.new(name=name, type=kind)
        modifier.input_mask_type = "STRIP"
        modifier.input_mask_strip = matte
        found[kind] = modifier
    return found["COLOR_BALANCE"]
