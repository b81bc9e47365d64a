"""Blender layer: the live merge preview. Scrubbing the timeline (or changing a merge option) with a
shot's face layer strip or its destination active re-merges that one frame in the engine
(`merge.preview`) and shows it in the face layer strip.

Never blocking: a frame change only queues a request through the link. One request is in flight at
a time; frame changes meanwhile are coalesced into the latest one, sent when the answer arrives.
The drain (sync.py) hands the answer here: the PNG bytes (a full-size RGBA face layer) are written
atomically (temporary file + os.replace) as the strip's file for that frame, and the strip's cache
is invalidated so the sequencer reads it again. When the shot has no face layer strip yet, one is
made first over the destination, Alpha Over, its files missing until a preview or Merge Shot
writes them (a missing file shows as nothing).

Where the files go (`merge_folder`): with a local engine, `<engine workspace>/merges/<scene>_<shot>`,
the same folder Merge Shot sends as the job's output, so the job and the preview share files (the
job's layer files are `layer/frame_%06d.png` by source frame). With a remote engine the job writes on
the engine's machine, so the preview writes to a folder of its own beside the .blend
(`<blend name>_swapline_preview/<scene>_<shot>`, a temp folder for an unsaved file).

Latency is measured from the frame change (or option change) to the file written and the cache
invalidated; the last 50 are kept and the panel shows their median.
"""

from __future__ import annotations

import os
import re
import statistics
import tempfile
import time
from collections import deque

import bpy

from . import matte, preferences, strips

KIND = "merge_preview"  # tag purpose and kind of the requests made here
LAYER_PATTERN = "frame_%06d.png"  # the merge job's layer files (engine/merge/shot.py)
KEEP = 50
STALE_SECONDS = 15.0  # an answer this late is given up on, so the preview does not stall for good
POLL = 0.005  # seconds between drains while an answer is awaited (the drain timer's 0.1 s would add ~50 ms)

_latencies: deque = deque(maxlen=KEEP)
_engine_ms: deque = deque(maxlen=KEEP)  # the engine's own time for the same previews (from its answers)
_in_flight: dict | None = None  # the tag of the request the engine is working on
_pending: tuple[dict, dict] | None = None  # (args, tag) of the latest frame asked for meanwhile


def owns(tag: dict | None) -> bool:
    return bool(tag) and tag.get("purpose") == KIND


def state(context=None):
    return (context or bpy.context).window_manager.swapline_live


def latencies() -> list[float]:
    """The last (at most 50) latencies in seconds, oldest first."""
    return list(_latencies)


def engine_times() -> list[float]:
    """The engine's milliseconds for the same previews (merge.preview's "ms"; 0 when cached)."""
    return list(_engine_ms)


# Where and what --------------------------------------------------------------------------------

def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "shot"


def is_local(context=None) -> bool:
    return preferences.get_preferences(context).engine_mode == "LOCAL"


def merge_folder(scene, destination, context=None) -> str:
    """The folder this shot's merge output and preview frames share (see the module docstring)."""
    shot = f"{_safe(scene.name)}_{_safe(destination.name)}"
    if is_local(context):
        status = (context or bpy.context).window_manager.swapline
        workspace = status.engine_workspace or preferences.workspace_dir(scene)
        return os.path.join(workspace, "merges", shot)
    if bpy.data.filepath:
        base = os.path.splitext(bpy.data.filepath)[0] + "_swapline_preview"
    else:
        base = os.path.join(tempfile.gettempdir(), f"swapline-preview-{os.getpid()}")
    return os.path.join(base, shot)


def destination_of(scene, strip):
    """The destination shot a strip belongs to: itself when it is the marked destination or has merge
    results, the shot of a face layer or matte strip; None for anything else."""
    if strip is None:
        return None
    owner = matte.owner_name(strip)
    editor = scene.sequence_editor
    shot = editor.strips_all.get(owner) if editor is not None else None
    if shot is None or shot.type != "MOVIE":
        return None
    if shot != strip or strip.swapline_role == "DESTINATION" or strips.results_of(scene, strip):
        return shot
    return None


def target(scene):
    """The destination whose settings the Merge panel edits: the active strip's shot, else the
    strip marked Destination."""
    return destination_of(scene, strips.active_strip(scene)) or strips.find_role(scene, "DESTINATION")


def layer_strip(scene, destination):
    """The shot's face layer strip (the merge result strip), or None."""
    found = strips.results_of(scene, destination)
    return found[0] if found else None


def ensure_layer_strip(scene, destination, context=None):
    """The face layer strip, made over the destination (Alpha Over) when missing, its frames not
    merged yet a transparent frame (strips.fill_missing)."""
    strip = layer_strip(scene, destination)
    if strip is not None:
        return strip
    start, end = strips.source_range(destination)
    directory = os.path.join(merge_folder(scene, destination, context), "layer")
    os.makedirs(directory, exist_ok=True)  # place_frames fills a folder that exists here
    return strips.place_frames(scene, destination, directory, LAYER_PATTERN, start, end - start, blend="ALPHA_OVER")


# Requests --------------------------------------------------------------------------------------

def build_request(context, scene, started: float | None = None) -> tuple[dict, dict] | None:
    """(args, tag) of a merge.preview for the current frame of the active shot; None when there is
    nothing to preview (writes why into the live state's message)."""
    from . import merge_settings

    live = state(context)
    destination = destination_of(scene, strips.active_strip(scene))
    if destination is None:
        live.message = "Select the face layer strip or its destination to preview"
        return None
    settings = scene.swapline
    model, faceset = settings.model.strip(), settings.destination_faceset.strip()
    if not model or not faceset:
        live.message = "Set the model and the destination faceset first"
        return None
    timeline = scene.frame_current
    if not destination.frame_final_start <= timeline < destination.frame_final_end:
        live.message = f"Frame {timeline} is outside '{destination.name}'"
        return None
    frame = timeline - round(destination.frame_start)
    values = merge_settings.values_of(destination)  # the options as evaluated at this frame
    values["keys"] = {}
    args = {"model": model, "video": strips.video_path(destination), "faceset": faceset, "frame": frame,
            "settings": values}
    tag = {"purpose": KIND, "kind": KIND, "label": "Live preview", "scene": scene.name,
           "destination": destination.name, "frame": frame, "timeline": timeline,
           "started": time.perf_counter() if started is None else started}
    return args, tag


def request(context=None, scene=None, started: float | None = None) -> bool:
    """Ask for the current frame (coalesced while one is in flight); True when queued or sent."""
    global _pending
    context = context or bpy.context
    scene = scene or strips.sequencer_scene(context)
    if scene is None or not state(context).enabled:
        return False
    built = build_request(context, scene, started)
    if built is None:
        return False
    if _in_flight is not None and time.perf_counter() - _in_flight["sent"] < STALE_SECONDS:
        _pending = built
        return True
    return _send(*built)


def _send(args: dict, tag: dict) -> bool:
    global _in_flight
    from . import sync
    from .engine_link import CONNECTED, LinkError

    live = state()
    try:
        link = sync.link()
        if link.state != CONNECTED:
            raise LinkError("The engine is not connected")
        tag = dict(tag, sent=time.perf_counter())
        link.request("merge.preview", args, tag)
    except (LinkError, RuntimeError) as exc:
        live.message = f"{exc}: connect it to preview"
        _in_flight = None
        return False
    _in_flight = tag
    if not bpy.app.timers.is_registered(_poll):
        bpy.app.timers.register(_poll, first_interval=POLL)
    return True


def _poll() -> float | None:
    """Drain often while a preview is awaited, so its answer shows as soon as it arrives."""
    from . import sync

    try:
        sync.drain()
    except Exception as exc:  # the timer must not die with a bad message; the main drain reports it
        print(f"Swapline: live preview drain failed: {exc}")
    return POLL if _in_flight is not None else None


def _next() -> list:
    """Send the frame asked for while the last one was in flight (unless another one is)."""
    global _pending
    if _pending is not None and _in_flight is None:
        args, tag = _pending
        _pending = None
        _send(args, tag)
    return []


# Answers (drain only) --------------------------------------------------------------------------

def apply_reply(op: str, result, tag: dict) -> list:
    global _in_flight
    if _in_flight is not None and _in_flight.get("sent") == tag.get("sent"):
        _in_flight = None
    live = state()
    data = result.get("layer") if isinstance(result, dict) else None
    scene = bpy.data.scenes.get(tag.get("scene", ""))
    editor = scene.sequence_editor if scene is not None else None
    destination = editor.strips_all.get(tag.get("destination", "")) if editor is not None else None
    if not isinstance(data, (bytes, bytearray)) or destination is None:
        live.message = "The preview came back empty" if destination is not None else "The shot is gone"
        return _next()
    try:
        show(scene, destination, int(tag["timeline"]), bytes(data))
    except (OSError, ValueError, RuntimeError) as exc:
        live.message = f"Could not show the preview: {exc}"
        return _next()
    seconds = time.perf_counter() - float(tag["started"])
    _latencies.append(seconds)
    _engine_ms.append(float(result.get("ms") or 0.0))
    live.last_ms = seconds * 1000.0
    live.median_ms = statistics.median(_latencies) * 1000.0
    live.count += 1
    live.frame = int(tag["frame"])
    engine_ms = result.get("ms")
    live.message = f"Frame {tag['frame']}" + (" (cached)" if result.get("cached") else
                                                f" merged in {engine_ms:.0f} ms" if engine_ms is not None else "")
    return _next()


def apply_failure(status, op: str, code: str, message: str, tag: dict | None) -> bool:
    """A refused preview: shown in the panel, not as an error pop-up on every frame; True when ours."""
    global _in_flight
    if not owns(tag):
        return False
    if _in_flight is not None and _in_flight.get("sent") == tag.get("sent"):
        _in_flight = None
    state().message = f"Preview failed: {message}"
    if code not in ("unreachable", "unknown_op"):
        _next()
    return True


def show(scene, destination, timeline: int, data: bytes) -> str:
    """Write one preview frame as the face layer strip's file for `timeline` and make Blender re-read it."""
    strip = ensure_layer_strip(scene, destination)
    path = strips.frame_file(strip, timeline)
    if path is None:
        raise ValueError(f"the face layer strip does not cover frame {timeline}")
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    _forget_resume(os.path.dirname(folder))
    temporary = f"{path}.{os.getpid()}.tmp"
    with open(temporary, "wb") as f:
        f.write(data)
    os.replace(temporary, path)  # a reader sees the old file or the new one, never half of one
    strip.invalidate_cache("RAW")
    return path


def _forget_resume(job_folder: str) -> None:
    """The merge job resumes by skipping frames its record (merge.json) says are done with the same
    settings; a preview frame written there (maybe with other options) makes that record stale, so
    it goes and the next job redoes every frame. Checked on every write: a job may have written a
    new record since the last one."""
    try:
        os.remove(os.path.join(job_folder, "merge.json"))
    except OSError:
        pass


# Triggers --------------------------------------------------------------------------------------

def _rendering() -> bool:
    """A render steps through frames too: those frame changes are not scrubbing."""
    try:
        return bpy.app.is_job_running("RENDER")
    except (AttributeError, TypeError, ValueError):
        return False


@bpy.app.handlers.persistent
def on_frame_change(scene, *_args) -> None:
    started = time.perf_counter()
    try:
        if state().enabled and not _rendering():
            request(scene=scene, started=started)
    except Exception as exc:  # a handler that raises would spoil every frame change
        print(f"Swapline: live preview failed: {exc}")


def on_settings_changed(context) -> None:
    """A merge option changed: re-merge the frame on show with it."""
    if context is not None and context.window_manager is not None and state(context).enabled:
        request(context)


def on_toggle(context) -> None:
    global _in_flight, _pending
    live = state(context)
    _in_flight, _pending = None, None
    _latencies.clear()
    _engine_ms.clear()
    live.count, live.median_ms, live.last_ms = 0, -1.0, -1.0
    live.message = ""
    if live.enabled:
        request(context)


def register() -> None:
    global _in_flight, _pending
    _in_flight, _pending = None, None
    _latencies.clear()
    bpy.app.handlers.frame_change_post.append(on_frame_change)


def unregister() -> None:
    if bpy.app.timers.is_registered(_poll):
        bpy.app.timers.unregister(_poll)
    if on_frame_change in bpy.app.handlers.frame_change_post:
        bpy.app.handlers.frame_change_post.remove(on_frame_change)
