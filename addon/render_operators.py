"""Blender layer: the Render Edit operator and its controls, and the render running as Blender's job.

In the UI the render is Blender's render job (INVOKE: Blender stays responsive, with its progress and
Esc). Its render_complete/render_cancel handlers may run outside the main thread, so they only post
to a queue; a timer on the main thread finishes the render (render_job.finish: restore settings, tag,
sidecar). A file loaded or the add-on disabled during a render gives the user's settings back at once;
the file the render leaves is still tagged (after the load, by the persistent timer, once no render
job runs).
"""

from __future__ import annotations

import queue

import bpy
from bpy.app.handlers import persistent

from . import strips, sync
from .render_job import RenderJob, finish, prepare, render, restore, wrote_something

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
