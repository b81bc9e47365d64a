"""Blender layer: one Render Edit, set up and finished: the scene's render settings for the chosen format,
and what each rendered file says about itself.

The render settings of the scene are set for the chosen format (H.264 MP4 or ProRes MOV with the
edit's audio as AAC, or a PNG/EXR sequence), with Blender's stamp Note saying that the file contains
synthetic faces made with Swapline (version, date). Blender writes the Note into PNG text chunks and
EXR headers; FFmpeg's MP4/MOV muxer drops it, so movies are tagged after the render (provenance.py).
Every render also gets a JSON sidecar. The user's render settings are put back afterwards.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import bpy

from . import provenance, strips
from .render_settings import FORMAT_ITEMS

# format -> how Blender writes it
FORMATS = {
    "H264": {"movie": True, "ext": ".mp4", "container": "MPEG4", "codec": "H264"},
    "PRORES": {"movie": True, "ext": ".mov", "container": "QUICKTIME", "codec": "PRORES"},
    "PNG": {"movie": False, "ext": ".png", "file_format": "PNG"},
    "EXR": {"movie": False, "ext": ".exr", "file_format": "OPEN_EXR"},
}
FORMAT_NAMES = {key: name for key, name, _ in FORMAT_ITEMS}
# Render settings this module changes and restores, in the order they are restored: Blender checks
# each against the ones before (file_format against media_type, the codec against the container,
# color_mode/color_depth against the format and codec), and may quietly change a later one when an
# earlier one is set, so the output format goes first and what depends on it after.
_ORDER = (
    ("image_settings", ("media_type", "file_format")),
    ("ffmpeg", ("format", "codec", "audio_codec", "audio_channels", "audio_mixrate", "audio_bitrate",
                "constant_rate_factor", "ffmpeg_preset", "ffmpeg_prores_profile", "use_autosplit")),
    ("image_settings", ("color_mode", "color_depth", "exr_codec")),
    ("render", ("filepath", "use_file_extension", "use_sequencer", "use_overwrite", "use_placeholder",
                "metadata_input")),
)


@dataclass
class RenderJob:
    scene: str
    format: str
    output: str            # the movie file, or the folder of the sequence
    rendered: str          # the movie file Blender writes (it names it after the frame range); moved to output
    saved: list = field(default_factory=list)   # [(owner path, attribute, value)] to restore
    files: list = field(default_factory=list)   # a sequence's file names, frame by frame
    info: dict = field(default_factory=dict)    # the sidecar
    started: float = 0.0   # time.time() when prepared: files older than this are not this render's
    restored: bool = False  # the user's settings are back (a file loaded over the scene: never touch it again)


def _stamp_attrs() -> tuple[str, ...]:
    return tuple(p.identifier for p in bpy.types.RenderSettings.bl_rna.properties
                 if "stamp" in p.identifier and not p.is_readonly)


def _stamp_fields() -> tuple[str, ...]:
    """The stamp fields burned with the label, all turned off but the Note so that the label is the one
    line drawn: every use_stamp_* switch this Blender has but the stamp itself and the Note."""
    return tuple(p.identifier for p in bpy.types.RenderSettings.bl_rna.properties
                 if p.identifier.startswith("use_stamp_") and p.identifier != "use_stamp_note"
                 and p.type == "BOOLEAN" and not p.is_readonly)


def _owners(scene) -> list:
    render = scene.render
    owners = {"image_settings": render.image_settings, "ffmpeg": render.ffmpeg, "render": render}
    order = [(name, owners[name], attrs) for name, attrs in _ORDER]
    return order + [("render", render, _stamp_attrs())]


def _value(value):
    return tuple(value) if hasattr(value, "__len__") and not isinstance(value, str) else value


def _snapshot(scene) -> list:
    return [(name, attr, _value(getattr(owner, attr))) for name, owner, attrs in _owners(scene) for attr in attrs]


def restore(scene, saved: list) -> list[str]:
    """Put `saved` back, in its order; returns the settings that could not be restored (also printed).
    Setting one may be refused until a later one is back, or may change one set before it (a format
    change resets the colour depth), so it runs again until every value reads back as saved."""
    owners = {name: owner for name, owner, _ in _owners(scene)}
    left = list(saved)
    for _ in range(3):
        for name, attr, value in left:
            try:
                setattr(owners[name], attr, value)
            except (AttributeError, TypeError, ValueError):  # refused for now: the next pass tries again
                pass
        left = [(name, attr, value) for name, attr, value in left
                if _value(getattr(owners[name], attr)) != value]
        if not left:
            return []
    missed = [f"{name}.{attr}" for name, attr, _ in left]
    print(f"Swapline: could not restore the render settings {', '.join(missed)}")
    return missed


def output_path(scene, settings) -> str:
    """The movie file or sequence folder to write: the setting, or next to the .blend, named after it."""
    fmt = FORMATS[settings.format]
    raw = settings.output.strip()
    if not raw:
        if not bpy.data.filepath:
            raise ValueError("Save the .blend first, or set the render output")
        raw = os.path.join(os.path.dirname(bpy.data.filepath),
                           f"{os.path.splitext(os.path.basename(bpy.data.filepath))[0]}_swapline")
    elif raw.startswith("//") and not bpy.data.filepath:
        raise ValueError("The output is relative to the .blend, which is not saved yet")
    path = os.path.normpath(os.path.abspath(bpy.path.abspath(raw)))
    base, ext = os.path.splitext(path)
    if fmt["movie"]:
        return (base if ext.lower() in (".mp4", ".mov", ".mkv", ".avi") else path) + fmt["ext"]
    return path


def _strip_file(strip) -> str:
    for attr in ("filepath", "directory"):
        if getattr(strip, attr, ""):
            return os.path.normpath(os.path.abspath(bpy.path.abspath(getattr(strip, attr))))
    sound = getattr(strip, "sound", None)
    return os.path.normpath(os.path.abspath(bpy.path.abspath(sound.filepath))) if sound is not None else ""


def sources(scene) -> list[dict]:
    """The strips that go into the render: unmuted, inside the scene's frame range."""
    start, end = scene.frame_start, scene.frame_end + 1
    used = []
    for strip in strips.all_strips(scene):
        if strip.mute or strip.frame_final_end <= start or strip.frame_final_start >= end:
            continue
        entry = {"name": strip.name, "type": strip.type, "channel": strip.channel,
                 "frames": [strip.frame_final_start, strip.frame_final_end - 1], "file": _strip_file(strip)}
        if strip.swapline_role != "NONE":
            entry["role"] = strip.swapline_role
        if strip.swapline_result_for:
            entry["merge_result_for"] = strip.swapline_result_for
        if strip.swapline_role == "SOURCE":
            entry["likeness_confirmed"] = bool(strip.swapline_likeness_confirmed)
        used.append(entry)
    return used


def _models(scene, used: list[dict]) -> list[dict]:
    """The models behind the merge results in the render (the scene's model: merges use it)."""
    settings = scene.swapline
    if not any("merge_result_for" in entry for entry in used) or not settings.model.strip():
        return []
    return [{"name": settings.model.strip(), "workspace": settings.workspace}]


def prepare(scene, settings, when: str | None = None) -> RenderJob:
    """Set the scene up for the render (remembering what it had); raises ValueError for a bad output."""
    fmt = FORMATS[settings.format]
    output = output_path(scene, settings)
    when = when or provenance.now()
    statement = provenance.statement(when)
    job = RenderJob(scene=scene.name, format=settings.format, output=output, rendered=output,
                    saved=_snapshot(scene), started=time.time())
    try:
        _set_up(scene, settings, job, fmt, statement)
    except BaseException:  # the user's settings come back whatever failed
        restore(scene, job.saved)
        raise
    used = sources(scene)
    job.info = {
        "what": provenance.WHAT, "synthetic_faces": True, "tool": provenance.TOOL,
        "version": provenance.version(), "date": when, "output": output, "format": FORMAT_NAMES[settings.format],
        "frames": [scene.frame_start, scene.frame_end], "fps": scene.render.fps / scene.render.fps_base,
        "label": _label(settings) if settings.label else None, "metadata": scene.render.stamp_note_text,
        "strips": used, "models": _models(scene, used), "blender": bpy.app.version_string,
    }
    return job


def _label(settings) -> str:
    return settings.label_text.strip() or "Synthetic face"


def _set_up(scene, settings, job: RenderJob, fmt: dict, statement: str) -> None:
    output = job.output
    render, image = scene.render, scene.render.image_settings
    os.makedirs(output if not fmt["movie"] else os.path.dirname(output), exist_ok=True)
    render.use_sequencer = True
    render.use_file_extension = True
    # Every frame written now (no frames kept from an earlier render, no empty placeholders), with the
    # scene's metadata (the Note), not the strips'.
    render.use_overwrite = True
    render.use_placeholder = False
    render.metadata_input = "SCENE"
    if fmt["movie"]:
        image.media_type = "VIDEO"  # before file_format (DESIGN.md)
        image.file_format = "FFMPEG"
        render.ffmpeg.format = fmt["container"]
        render.ffmpeg.codec = fmt["codec"]
        render.ffmpeg.use_autosplit = False
        render.ffmpeg.audio_codec = "AAC"
        render.ffmpeg.audio_channels = "STEREO"
        if settings.format == "H264":
            render.ffmpeg.constant_rate_factor, render.ffmpeg.ffmpeg_preset = "HIGH", "GOOD"
        else:
            render.ffmpeg.ffmpeg_prores_profile = "422_HQ"
        render.filepath = os.path.splitext(output)[0]
        job.rendered = render.frame_path(frame=scene.frame_start)  # Blender adds the frame range
    else:
        image.media_type = "IMAGE"
        image.file_format = fmt["file_format"]
        image.color_mode = "RGB"
        image.color_depth = "16" if settings.format == "EXR" else "8"
        render.filepath = os.path.join(output, f"{os.path.basename(output)}_")
        frames = range(scene.frame_start, scene.frame_end + 1)
        job.files = [os.path.basename(render.frame_path(frame=f)) for f in frames]
    # The Note goes into the files' metadata (PNG, EXR); with the label it is also burned in, alone. The
    # Note is the one line the files carry, so it always holds the full statement (Swapline, version, date).
    render.use_stamp_note = True
    render.stamp_note_text = statement
    render.use_stamp = bool(settings.label)
    if settings.label:
        render.stamp_note_text = f"{_label(settings)} | {statement}"
        for attr in _stamp_fields():
            setattr(render, attr, False)
        height = render.resolution_y * render.resolution_percentage // 100
        render.stamp_font_size = max(12, height // 36)


def _fresh(path: str, job: RenderJob) -> bool:
    """A file this render wrote (not one an earlier render left under the same name)."""
    try:
        return os.path.getmtime(path) >= job.started - 1.0  # file times may lag the clock a little
    except OSError:
        return False


def wrote_something(job: RenderJob) -> bool:
    if FORMATS[job.format]["movie"]:
        return _fresh(job.rendered, job) or (job.rendered != job.output and _fresh(job.output, job))
    return any(_fresh(os.path.join(job.output, name), job) for name in job.files)


def finish(job: RenderJob, cancelled: bool = False) -> list[str]:
    """Put the user's settings back; name, tag and describe the output (a cancelled movie: tag what it
    left, where it is). Returns problems for the user."""
    problems = []
    scene = None if job.restored else bpy.data.scenes.get(job.scene)
    if scene is not None:
        missed = restore(scene, job.saved)
        if missed:
            problems.append(f"Could not restore the render settings {', '.join(missed)}")
    job.restored = True
    movie = FORMATS[job.format]["movie"]
    if cancelled:
        # a cancelled movie render leaves a shorter, playable movie (Blender closes it): tagged all the same
        if movie and _fresh(job.rendered, job):
            job.info.update(output=job.rendered, cancelled=True)
            problems += _tag(job, job.rendered)
            if job.info["container_tags"]:
                problems.append(f"Render cancelled: the partial file {job.rendered} is tagged as containing "
                                f"synthetic faces")
        return problems
    if movie:
        if job.rendered != job.output and _fresh(job.rendered, job):
            try:
                os.replace(job.rendered, job.output)
            except OSError as exc:
                problems.append(f"Could not name the render {job.output}: {exc}")
                job.info["output"] = job.output = job.rendered
        if not _fresh(job.output, job):
            return problems + [f"The render wrote no file at {job.output}"]
        return problems + _tag(job, job.output)
    # only this render's frames: the folder may hold an earlier, longer render's too
    job.info["files"] = [name for name in job.files if _fresh(os.path.join(job.output, name), job)]
    return problems + _sidecar(job, job.output)


def _tag(job: RenderJob, path: str) -> list[str]:
    """Container tags and sidecar of a movie; returns problems."""
    problems = []
    try:
        provenance.tag_movie(path, provenance.tags(job.info["date"]))
        job.info["container_tags"] = True
    except (OSError, ValueError) as exc:
        job.info["container_tags"] = False
        problems.append(f"Could not tag {os.path.basename(path)}: {exc}")
    return problems + _sidecar(job, path)


def _sidecar(job: RenderJob, path: str) -> list[str]:
    try:
        provenance.write_sidecar(path, job.info)
        return []
    except OSError as exc:
        return [f"Could not write {provenance.sidecar_path(path)}: {exc}"]


def render(context, scene, settings) -> tuple[RenderJob, list[str]]:
    """Render now, blocking (background and tests): Blender's sequencer render, then finish()."""
    job = prepare(scene, settings)
    try:
        with context.temp_override(scene=scene):
            bpy.ops.render.render(animation=True, scene=scene.name)
    except BaseException:
        finish(job, cancelled=True)
        raise
    return job, finish(job)
