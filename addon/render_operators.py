"""Blender layer: Render Edit, the edit rendered by Blender's own sequencer render, and what each
rendered file says about itself.

The render settings of the scene are set for the chosen format (H.264 MP4 or ProRes MOV with the
edit's audio as AAC, or a PNG/EXR sequence), with Blender's stamp Note saying that the file contains
synthetic faces made with Swapline (version, date). Blender writes the Note into PNG text chunks and
EXR headers; FFmpeg's MP4/MOV muxer drops it, so movies are tagged after the render (provenance.py).
Every render also gets a JSON sidecar. The user's render settings are put back afterwards.

In the UI the render is Blender's render job (INVOKE: Blender stays responsive, with its progress and
Esc). Its render_complete/render_cancel handlers may run outside the main thread, so they only post
to a queue; a timer on the main thread finishes the render (restore settings, tag, sidecar).
"""

from __future__ import annotations

import os
import queue
from dataclasses import dataclass, field

import bpy
from bpy.app.handlers import persistent

from . import provenance, strips, sync
from .render_settings import FORMAT_ITEMS

# format -> how Blender writes it
FORMATS = {
    "H264": {"movie": True, "ext": ".mp4", "container": "MPEG4", "codec": "H264"},
    "PRORES": {"movie": True, "ext": ".mov", "container": "QUICKTIME", "codec": "PRORES"},
    "PNG": {"movie": False, "ext": ".png", "file_format": "PNG"},
    "EXR": {"movie": False, "ext": ".exr", "file_format": "OPEN_EXR"},
}
FORMAT_NAMES = {key: name for key, name, _ in FORMAT_ITEMS}
# Render settings this module changes and restores. media_type before file_format, container before
# codec: Blender checks each against the one before.
_IMAGE_ATTRS = ("media_type", "file_format", "color_mode", "color_depth", "exr_codec")
_FFMPEG_ATTRS = ("format", "codec", "audio_codec", "audio_channels", "audio_mixrate", "audio_bitrate",
                 "constant_rate_factor", "ffmpeg_preset", "ffmpeg_prores_profile", "use_autosplit")
_RENDER_ATTRS = ("filepath", "use_file_extension", "use_sequencer")
# Stamp fields burned with the label: all off but the Note, so the label is the one line drawn.
_STAMP_FIELDS = ("use_stamp_date", "use_stamp_time", "use_stamp_render_time", "use_stamp_frame",
                 "use_stamp_frame_range", "use_stamp_memory", "use_stamp_hostname", "use_stamp_camera",
                 "use_stamp_lens", "use_stamp_scene", "use_stamp_marker", "use_stamp_filename",
                 "use_stamp_sequencer_strip", "use_stamp_labels")


@dataclass
class RenderJob:
    scene: str
    format: str
    output: str            # the movie file, or the folder of the sequence
    rendered: str          # the movie file Blender writes (it names it after the frame range); moved to output
    saved: list = field(default_factory=list)   # [(owner path, attribute, value)] to restore
    files: list = field(default_factory=list)   # a sequence's file names, frame by frame
    info: dict = field(default_factory=dict)    # the sidecar


def _stamp_attrs() -> tuple[str, ...]:
    return tuple(p.identifier for p in bpy.types.RenderSettings.bl_rna.properties
                 if "stamp" in p.identifier and not p.is_readonly)


def _owners(scene):
    render = scene.render
    return (("image_settings", render.image_settings, _IMAGE_ATTRS), ("ffmpeg", render.ffmpeg, _FFMPEG_ATTRS),
            ("render", render, _RENDER_ATTRS + _stamp_attrs()))


def _snapshot(scene) -> list:
    saved = []
    for name, owner, attrs in _owners(scene):
        for attr in attrs:
            value = getattr(owner, attr)
            saved.append((name, attr, tuple(value) if hasattr(value, "__len__") and not isinstance(value, str)
                          else value))
    return saved


def restore(scene, saved: list) -> None:
    owners = {name: owner for name, owner, _ in _owners(scene)}
    for name, attr, value in saved:
        try:
            setattr(owners[name], attr, value)
        except (AttributeError, TypeError, ValueError):  # a value the current format refuses: leave it
            pass


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
                    saved=_snapshot(scene))
    try:
        _set_up(scene, settings, job, fmt, statement, when)
    except BaseException:  # the user's settings come back whatever failed
        restore(scene, job.saved)
        raise
    used = sources(scene)
    job.info = {
        "what": provenance.WHAT, "synthetic_faces": True, "tool": provenance.TOOL,
        "version": provenance.version(), "date": when, "output": output, "format": FORMAT_NAMES[settings.format],
        "frames": [scene.frame_start, scene.frame_end], "fps": scene.render.fps / scene.render.fps_base,
        "label": scene.render.stamp_note_text if settings.label else None, "metadata": statement,
        "strips": used, "models": _models(scene, used), "blender": bpy.app.version_string,
    }
    return job


def _set_up(scene, settings, job: RenderJob, fmt: dict, statement: str, when: str) -> None:
    output = job.output
    render, image = scene.render, scene.render.image_settings
    os.makedirs(output if not fmt["movie"] else os.path.dirname(output), exist_ok=True)
    render.use_sequencer = True
    render.use_file_extension = True
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
    # The Note goes into the files' metadata (PNG, EXR); with the label it is also burned in, alone.
    render.use_stamp_note = True
    render.stamp_note_text = statement
    render.use_stamp = bool(settings.label)
    if settings.label:
        # short enough to read on the picture; the files' metadata carry the same line (and the sidecar all)
        render.stamp_note_text = (f"{settings.label_text.strip() or 'Synthetic face'}  |  "
                                  f"{provenance.TOOL} {provenance.version()}, {when[:10]}")
        for attr in _STAMP_FIELDS:
            setattr(render, attr, False)
        height = render.resolution_y * render.resolution_percentage // 100
        render.stamp_font_size = max(12, height // 36)


def finish(job: RenderJob, cancelled: bool = False) -> list[str]:
    """Put the user's settings back; unless cancelled, name, tag and describe the output. Returns problems."""
    scene = bpy.data.scenes.get(job.scene)
    if scene is not None:
        restore(scene, job.saved)
    if cancelled:
        return []
    problems = []
    if FORMATS[job.format]["movie"]:
        if job.rendered != job.output and os.path.isfile(job.rendered):
            os.replace(job.rendered, job.output)
        if not os.path.isfile(job.output):
            return [f"The render wrote no file at {job.output}"]
        try:
            provenance.tag_movie(job.output, provenance.tags(job.info["date"]))
            job.info["container_tags"] = True
        except (OSError, ValueError) as exc:
            job.info["container_tags"] = False
            problems.append(f"Could not tag {os.path.basename(job.output)}: {exc}")
    else:
        # only this render's frames: the folder may hold an earlier, longer render's too
        job.info["files"] = [name for name in job.files if os.path.isfile(os.path.join(job.output, name))]
    provenance.write_sidecar(job.output, job.info)
    return problems


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


# --- the UI path: Blender's render job, finished by a main-thread timer -------------------------------

_pending: dict[str, RenderJob] = {}
_ended: queue.SimpleQueue = queue.SimpleQueue()
_idle_polls = 0


@persistent
def _on_complete(scene, *_):
    _ended.put((scene.name, False))


@persistent
def _on_cancel(scene, *_):
    _ended.put((scene.name, True))


def _hook(on: bool) -> None:
    for handlers, fn in ((bpy.app.handlers.render_complete, _on_complete),
                         (bpy.app.handlers.render_cancel, _on_cancel)):
        if on and fn not in handlers:
            handlers.append(fn)
        elif not on and fn in handlers:
            handlers.remove(fn)


def drain() -> float | None:
    """Timer: finish renders that ended; runs until none is pending."""
    global _idle_polls
    # A render that failed (a file it cannot write) may end with neither handler: once no render job
    # runs for two polls in a row, whatever is still pending has ended, finished if it left its file.
    _idle_polls = 0 if bpy.app.is_job_running("RENDER") or not _pending else _idle_polls + 1
    if _idle_polls >= 2 and _ended.empty():
        for name, job in list(_pending.items()):
            _ended.put((name, not os.path.exists(job.rendered)))
    while True:
        try:
            name, cancelled = _ended.get_nowait()
        except queue.Empty:
            break
        job = _pending.pop(name, None)
        if job is None:
            continue
        for problem in finish(job, cancelled):
            sync._report("WARNING", problem)
        if not cancelled:
            sync._report("INFO", f"Rendered {job.output}")
    if _pending:
        return 0.25
    _hook(False)
    return None


class SWAPLINE_OT_render(bpy.types.Operator):
    """Render the edit (the scene's frame range) with Blender's sequencer render, tagged as containing
    synthetic faces made with Swapline, with a JSON sidecar"""

    bl_idname = "swapline.render"
    bl_label = "Render Edit"

    def _start(self, context):
        scene = strips.sequencer_scene(context)
        if scene is None or scene.sequence_editor is None or not strips.all_strips(scene):
            self.report({"ERROR"}, "Nothing to render: the sequencer has no strips")
            return None, None
        if scene.name in _pending:
            self.report({"ERROR"}, "This scene is already rendering")
            return None, None
        return scene, scene.swapline_render

    def invoke(self, context, event):
        scene, settings = self._start(context)
        if scene is None:
            return {"CANCELLED"}
        try:
            job = prepare(scene, settings)
        except (ValueError, OSError) as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        _pending[scene.name] = job
        _hook(True)
        with context.temp_override(scene=scene):
            started = bpy.ops.render.render("INVOKE_DEFAULT", animation=True, scene=scene.name)
        if "CANCELLED" in started:
            _pending.pop(scene.name, None)
            finish(job, cancelled=True)
            self.report({"ERROR"}, "Blender did not start the render")
            return {"CANCELLED"}
        if not bpy.app.timers.is_registered(drain):
            bpy.app.timers.register(drain, first_interval=0.25)
        return {"FINISHED"}

    def execute(self, context):
        scene, settings = self._start(context)
        if scene is None:
            return {"CANCELLED"}
        try:
            job, problems = render(context, scene, settings)
        except (ValueError, OSError, RuntimeError) as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        for problem in problems:
            self.report({"WARNING"}, problem)
        self.report({"INFO"}, f"Rendered {job.output}")
        return {"FINISHED"}


def draw_render(layout, context) -> None:
    """The grade and render controls, drawn at the end of the Merge panel (merge_panels.draw_merge)."""
    scene = strips.sequencer_scene(context)
    if scene is None:
        return
    settings = scene.swapline_render
    col = layout.box().column()
    col.label(text="Grade and Render", icon="RENDER_ANIMATION")
    col.operator("swapline.face_grade", icon="COLOR")
    col.separator()
    col.prop(settings, "format")
    col.prop(settings, "output", text="Output")
    row = col.row(align=True)
    row.prop(settings, "label")
    sub = row.row()
    sub.active = settings.label
    sub.prop(settings, "label_text", text="")
    col.label(text=f"Frames {scene.frame_start}-{scene.frame_end} (the scene's range)", icon="TIME")
    col.operator("swapline.render", icon="RENDER_ANIMATION")


classes = (SWAPLINE_OT_render,)
