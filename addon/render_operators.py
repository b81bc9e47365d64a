"""Blender layer: Render Edit, the edit rendered by Blender's own sequencer render, and what each
rendered file says about itself.

The render settings of the scene are set for the chosen format (H.264 MP4 or ProRes MOV with the
edit's audio as AAC, or a PNG/EXR sequence), with Blender's stamp Note saying that the file contains
synthetic faces made with Swapline (version, date). Blender writes the Note into PNG text chunks and
EXR headers; FFmpeg's MP4/MOV muxer drops it, so movies are tagged after the render (provenance.py).
Every render also gets a JSON sidecar. The user's render settings are put back afterwards.

In the UI the render is Blender's render job (INVOKE: Blender stays responsive, with its progress and
Esc). Its render_complete/render_cancel handlers may run outside the main thread, so they only post
to a queue; a timer on the main thread finishes the render (restore settings, tag, sidecar). A file
loaded or the add-on disabled during a render gives the user's settings back at once; the file the
render leaves is still tagged (after the load, by the persistent timer, once no render job runs).
"""

from __future__ import annotations

import os
import queue
import time
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


# --- the UI path: Blender's render job, finished by a main-thread timer -------------------------------

_pending: dict[str, RenderJob] = {}   # by scene name
_detached: list[RenderJob] = []       # settings already back (a file was loaded): only their files to finish
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


def _finish_reported(job: RenderJob, cancelled: bool) -> None:
    """finish() with its outcome told to the user; an error in it never stops the timer."""
    try:
        problems = finish(job, cancelled)
    except Exception as exc:  # noqa: BLE001 - the drain must go on for the other renders
        _error(f"Render Edit could not finish {job.output}: {exc}")
        return
    for problem in problems:
        sync._report("WARNING", problem)
    if not cancelled:
        sync._report("INFO", f"Rendered {job.output}")


def _error(text: str) -> None:
    try:
        sync._set_error(text)
    except Exception:  # noqa: BLE001 - no window manager (unregistering): the console has it
        print(f"Swapline: {text}")


def _ended_events() -> list[tuple[str, bool]]:
    events = []
    while True:
        try:
            events.append(_ended.get_nowait())
        except queue.Empty:
            return events


def drain() -> float | None:
    """Timer: finish renders that ended; runs until none is pending."""
    global _idle_polls
    # A render that failed (a file it cannot write) may end with neither handler: once no render job
    # runs for two polls in a row, whatever is still pending has ended, finished if it wrote its file.
    busy = bpy.app.is_job_running("RENDER")
    _idle_polls = 0 if busy or not (_pending or _detached) else _idle_polls + 1
    events = _ended_events()
    if _idle_polls >= 2 and not events:
        events = [(name, not wrote_something(job)) for name, job in _pending.items()]
        while _detached:  # cut short by the load: what they wrote is a partial render
            _finish_reported(_detached.pop(), cancelled=True)
    for name, cancelled in events:
        job = _pending.pop(name, None)
        if job is not None:
            _finish_reported(job, cancelled)
    if _pending or _detached:
        return 0.25
    _hook(False)
    return None


def _start_timer() -> None:
    if not bpy.app.timers.is_registered(drain):
        bpy.app.timers.register(drain, first_interval=0.25, persistent=True)  # survives a file load


@persistent
def _on_load_pre(*_args) -> None:
    """A file is loaded over the rendering scenes: finish what ended, give the rest their settings back
    now (the scenes are about to go; a scene of the new file may have the same name), and leave their
    files to the timer, which tags the partial movies where Blender left them once no render job runs."""
    for name, cancelled in _ended_events():
        job = _pending.pop(name, None)
        if job is not None:
            _finish_reported(job, cancelled)
    for job in _pending.values():
        scene = bpy.data.scenes.get(job.scene)
        if scene is not None:
            restore(scene, job.saved)
        job.restored = True
        _detached.append(job)
    _pending.clear()
    if _detached:
        _start_timer()


def register() -> None:
    if _on_load_pre not in bpy.app.handlers.load_pre:
        bpy.app.handlers.load_pre.append(_on_load_pre)


def unregister() -> None:
    """The add-on goes: every render it started is finished now (settings back, whatever movie exists
    tagged: one still being written has no movie header yet, which is reported)."""
    global _idle_polls
    if _on_load_pre in bpy.app.handlers.load_pre:
        bpy.app.handlers.load_pre.remove(_on_load_pre)
    if bpy.app.timers.is_registered(drain):
        bpy.app.timers.unregister(drain)
    ended = dict(_ended_events())
    running = bpy.app.is_job_running("RENDER")
    jobs = [(job, ended.get(name, running or not wrote_something(job))) for name, job in _pending.items()]
    jobs += [(job, True) for job in _detached]
    _pending.clear()
    _detached.clear()
    for job, cancelled in jobs:
        _finish_reported(job, cancelled)
    _hook(False)
    _idle_polls = 0


def start(context, scene, settings, report) -> bool:
    """Start Blender's render job on the edit (the UI path); `report(level, text)`. True if it runs."""
    global _idle_polls
    try:
        job = prepare(scene, settings)
    except (ValueError, OSError) as exc:
        report("ERROR", str(exc))
        return False
    _pending[scene.name] = job
    _idle_polls = 0
    _hook(True)
    try:
        with context.temp_override(scene=scene):
            started = bpy.ops.render.render("INVOKE_DEFAULT", animation=True, scene=scene.name)
        refused = "" if "CANCELLED" not in started else "Blender did not start the render"
    except RuntimeError as exc:
        refused = f"Blender did not start the render: {exc}"
    if refused:
        _pending.pop(scene.name, None)
        if not _pending and not _detached:
            _hook(False)
        for problem in finish(job, cancelled=True):
            report("WARNING", problem)
        report("ERROR", refused)
        return False
    _start_timer()
    return True


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
        if not start(context, scene, settings, lambda level, text: self.report({level}, text)):
            return {"CANCELLED"}
        return {"FINISHED"}

    def execute(self, context):
        if not bpy.app.background:
            # With a window the render is Blender's render job (responsive, Esc cancels), as from the button:
            # a blocking render would freeze Blender for the whole edit.
            return self.invoke(context, None)
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
