"""Blender layer: the live merge preview. Scrubbing the timeline (or changing a merge option, its
keyframes, the model or the faceset) with a shot's face layer strip or its destination active
re-merges that one frame in the engine (`merge.preview`) and shows it in the face layer strip.

Never blocking: a frame change only queues a request through the link. One request is in flight at
a time; frame changes meanwhile are coalesced into the latest one, sent when the answer arrives.
Every request carries a digest of what decides its pixels (model, faceset, the options and their
F-curves); an answer whose digest is not the latest request's is dropped (the options changed while
it was being merged), and a depsgraph check re-asks when that digest changes by any route (an F-curve
edited in the Graph Editor, a key deleted, the model renamed).

The drain (sync.py) hands the answer here: the face layer (RGBA) and its matte (grey) PNG bytes are
written atomically (temporary file + os.replace) as `layer/` and `matte/` files named by SOURCE frame
(`frame_%06d.png`, like the merge job's), and the strips' caches are invalidated. The face layer
strip (and the matte strip) is made, or placed again, when it does not show exactly the destination's
source frames (a new, moved or re-trimmed shot); frames without a file show a transparent blank.

Where the files go (`merge_folder`): with a local engine, `<engine workspace>/merges/<scene>_<shot>`,
the same folder Merge Shot sends as the job's output, so the job and the preview share files. A
preview frame is merged with the options of that moment, so the frames written are listed in
`<folder>/previewed.json` ({"frames": [...]}); the next merge job reads it and merges those frames
again instead of resuming over them. While a merge job of the shot runs, the shot is not previewed
(its files are the job's). With a remote engine the job writes on the engine's machine (its strips
are not placed here), so the preview writes to a folder of its own beside the .blend
(`<blend name>_swapline_preview/<scene>_<shot>`, under Blender's temp folder for an unsaved file).

Latency is measured from the frame change (or option change) to the files written and the caches
invalidated; the last 50 are kept and the panel shows their median.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import statistics
import tempfile
import time
from collections import deque

import bpy

from . import matte, mirror, preferences, strips

KIND = "merge_preview"  # tag purpose and kind of the requests made here
LAYER_PATTERN = "frame_%06d.png"  # the merge job's layer and matte files (engine/merge/shot.py)
PREVIEWED = "previewed.json"  # the source frames the preview overwrote; the merge job redoes them
KEEP = 50
STALE_SECONDS = 15.0  # an answer this late is given up on, so the preview does not stall for good
START_SECONDS = 30.0  # a Merge Shot sent but not yet answered holds the preview off this long at most
POLL = 0.005  # seconds between drains while an answer is awaited (the drain timer's 0.1 s would add ~50 ms)

_latencies: deque = deque(maxlen=KEEP)
_engine_ms: deque = deque(maxlen=KEEP)  # the engine's own time for the same previews (from its answers)
_in_flight: dict | None = None  # the tag of the request the engine is working on
_pending: tuple[dict, dict] | None = None  # (args, tag) of the latest frame asked for meanwhile
_latest: dict | None = None  # the tag of the newest request (in flight or pending): its digest wins
_starting: dict[tuple[str, str], float] = {}  # (scene, shot) -> when Merge Shot was sent, until the job is known


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


def _say(live, text: str) -> None:
    if live.message != text:  # unchanged: no write (the depsgraph check runs this often)
        live.message = text


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
        base = os.path.join(bpy.app.tempdir or tempfile.gettempdir(), f"swapline-preview-{os.getpid()}")
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


def _directory(strip) -> str:
    return os.path.normpath(os.path.abspath(bpy.path.abspath(strip.directory)))


def _fits(strip, destination, directory: str | None = None) -> bool:
    """Does an image strip show exactly the destination's source frames, by source frame name, from
    a folder on this machine (`directory` when given)?"""
    start, _end = strips.source_range(destination)
    return (strip.frame_final_start == destination.frame_final_start
            and strip.frame_final_end == destination.frame_final_end
            and len(strip.elements) > 0 and strip.elements[0].filename == LAYER_PATTERN % start
            and os.path.isdir(_directory(strip))
            and (directory is None or _directory(strip) == os.path.normpath(directory)))


def ensure_layer_strip(scene, destination, context=None):
    """The face layer strip, (re)placed over the destination (Alpha Over) when missing, not lined up
    with the source frames the destination shows any more, or reading a folder that is not on this
    machine (a remote engine's); frames not merged yet show a transparent blank (strips.fill_missing)."""
    strip = layer_strip(scene, destination)
    if strip is not None and strip.blend_type == "ALPHA_OVER" and _fits(strip, destination):
        return strip
    job = strip.swapline_job if strip is not None else ""
    if strip is not None and strip.blend_type == "ALPHA_OVER" and os.path.isdir(_directory(strip)):
        directory = _directory(strip)  # moved or re-trimmed: the same files, placed again
    else:
        directory = os.path.join(merge_folder(scene, destination, context), "layer")
    os.makedirs(directory, exist_ok=True)  # place_frames fills a folder that exists here
    start, end = strips.source_range(destination)
    return strips.place_frames(scene, destination, directory, LAYER_PATTERN, start, end - start, job,
                               blend="ALPHA_OVER")


def ensure_matte_strip(scene, destination, directory: str):
    """The shot's matte strip reading `directory` (the face layer's sibling `matte/`), (re)placed
    like the face layer strip."""
    found = matte.matte_of(scene, destination.name)
    if found is not None and _fits(found, destination, directory):
        return found
    os.makedirs(directory, exist_ok=True)
    start, end = strips.source_range(destination)
    placed = matte.place(scene, destination, {"directory": directory, "pattern": LAYER_PATTERN,
                                              "first_frame": start, "count": end - start},
                         job_id=found.swapline_job if found is not None else "")
    strips.fill_missing(placed, *strips.frame_size(scene, destination))  # a missing file would crash a render
    return placed


# A merge job of the shot -----------------------------------------------------------------------

def merge_starting(scene, destination, done: bool = False) -> None:
    """Merge Shot was sent for this shot (done: its job is known now, or the request failed)."""
    key = (scene.name, destination.name) if destination is not None else None
    if done:
        _starting.pop(key, None)
    else:
        _starting[key] = time.monotonic()


def merge_started(tag: dict) -> None:
    """The engine answered a Merge Shot (sync.py): the job's own state holds the preview off now."""
    _starting.pop((tag.get("scene"), tag.get("destination")), None)


def merge_running(scene, destination, context=None) -> bool:
    """Is a merge job writing this shot's files (queued, running or paused), or about to?"""
    from . import sync

    started = _starting.get((scene.name, destination.name))
    if started is not None and time.monotonic() - started < START_SECONDS:
        return True
    video = strips.video_path(destination)
    folder = os.path.normpath(merge_folder(scene, destination, context))
    for job in sync.jobs("merge"):
        params = job.get("params") or {}
        if job.get("state") not in mirror.ACTIVE:
            continue
        output = params.get("output")
        if output and os.path.normpath(str(output)) == folder:
            return True
        if not output and os.path.normpath(str(params.get("video") or "")) == video:
            return True
    return False


def busy_message(destination) -> str:
    return (f"'{destination.name}' is being merged: Live Preview waits for Merge Shot to finish "
            "(a preview would write into the job's frames)")


# Requests --------------------------------------------------------------------------------------

def _curves_print(scene, destination) -> list:
    """What the options' F-curves say (keys, handles, interpolation): part of the digest, so editing
    a curve anywhere re-previews, while a frame change inside an animated stretch does not change it."""
    from . import merge_settings

    found = []
    for name, fcurve in sorted(merge_settings.fcurves_of(scene, destination).items()):
        points = [(tuple(p.co), tuple(p.handle_left), tuple(p.handle_right), p.interpolation, p.easing)
                  for p in fcurve.keyframe_points]
        found.append([name, fcurve.extrapolation, len(fcurve.modifiers), points])
    return found


def digest(scene, destination, model: str, faceset: str, values: dict) -> str:
    """A short digest of everything that decides a preview's pixels but the frame."""
    curves = _curves_print(scene, destination)
    animated = {name for name, *_ in curves}  # their curve stands for them: the value changes frame by frame
    plain = {k: v for k, v in values.items() if k != "keys" and k not in animated}
    text = json.dumps([model, faceset, strips.video_path(destination), plain, curves], sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def build_request(context, scene, started: float | None = None) -> tuple[dict, dict] | None:
    """(args, tag) of a merge.preview for the current frame of the active shot; None when there is
    nothing to preview (writes why into the live state's message)."""
    from . import merge_settings

    live = state(context)
    destination = destination_of(scene, strips.active_strip(scene))
    if destination is None:
        _say(live, "Select the face layer strip or its destination to preview")
        return None
    settings = scene.swapline
    model, faceset = settings.model.strip(), settings.destination_faceset.strip()
    if not model or not faceset:
        _say(live, "Set the model and the destination faceset first")
        return None
    timeline = scene.frame_current
    if not destination.frame_final_start <= timeline < destination.frame_final_end:
        _say(live, f"Frame {timeline} is outside '{destination.name}'")
        return None
    if merge_running(scene, destination, context):
        _say(live, busy_message(destination))
        return None
    try:
        values = merge_settings.values_of(destination)  # the options as evaluated at this frame
    except ValueError as exc:  # a Custom Mask the engine would refuse
        _say(live, str(exc))
        return None
    values["keys"] = {}
    frame = timeline - round(destination.frame_start)
    start, end = strips.source_range(destination)
    args = {"model": model, "video": strips.video_path(destination), "faceset": faceset, "frame": frame,
            "settings": values, "range": [start, end]}
    tag = {"purpose": KIND, "kind": KIND, "label": "Live preview", "scene": scene.name,
           "destination": destination.name, "frame": frame, "timeline": timeline,
           "digest": digest(scene, destination, model, faceset, values),
           "started": time.perf_counter() if started is None else started}
    return args, tag


def _key(tag: dict | None):
    return None if tag is None else (tag.get("scene"), tag.get("destination"), tag.get("frame"), tag.get("digest"))


def request(context=None, scene=None, started: float | None = None, only_if_changed: bool = False) -> bool:
    """Ask for the current frame (coalesced while one is in flight); True when queued or sent.
    only_if_changed: not when the newest request already asked for this frame with the same digest."""
    global _pending, _latest
    context = context or bpy.context
    scene = scene or strips.sequencer_scene(context)
    if scene is None or not state(context).enabled:
        return False
    built = build_request(context, scene, started)
    if built is None:
        return False
    if only_if_changed and _key(built[1]) == _key(_latest):
        return False
    _latest = built[1]
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
        _say(live, f"{exc}: connect it to preview")
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
    if _latest is not None and tag.get("digest") != _latest.get("digest"):
        return _next()  # merged with options (or a model) since changed: the newer request's answer shows
    data = result.get("layer") if isinstance(result, dict) else None
    matte_data = result.get("matte") if isinstance(result, dict) else None
    scene = bpy.data.scenes.get(tag.get("scene", ""))
    editor = scene.sequence_editor if scene is not None else None
    destination = editor.strips_all.get(tag.get("destination", "")) if editor is not None else None
    if not isinstance(data, (bytes, bytearray)) or destination is None:
        _say(live, "The preview came back empty" if destination is not None else "The shot is gone")
        return _next()
    if merge_running(scene, destination):  # Merge Shot was pressed while this frame was merged
        _say(live, busy_message(destination))
        return _next()
    try:
        show(scene, destination, int(tag["frame"]), bytes(data),
             bytes(matte_data) if isinstance(matte_data, (bytes, bytearray)) else None)
    except (OSError, ValueError, RuntimeError) as exc:
        _say(live, f"Could not show the preview: {exc}")
        return _next()
    seconds = time.perf_counter() - float(tag["started"])
    _latencies.append(seconds)
    _engine_ms.append(float(result.get("ms") or 0.0))
    live.last_ms = seconds * 1000.0
    live.median_ms = statistics.median(_latencies) * 1000.0
    live.count += 1
    live.frame = int(tag["frame"])
    engine_ms = result.get("ms")
    _say(live, f"Frame {tag['frame']}" + (" (cached)" if result.get("cached") else
                                           f" merged in {engine_ms:.0f} ms" if engine_ms is not None else ""))
    return _next()


def apply_failure(status, op: str, code: str, message: str, tag: dict | None) -> bool:
    """A refused preview: shown in the panel, not as an error pop-up on every frame; True when ours."""
    global _in_flight
    if not owns(tag):
        return False
    if _in_flight is not None and _in_flight.get("sent") == tag.get("sent"):
        _in_flight = None
    _say(state(), f"Preview failed: {message}")
    if code not in ("unreachable", "unknown_op"):
        _next()
    return True


def _write(path: str, data: bytes) -> None:
    temporary = f"{path}.{os.getpid()}.tmp"
    with open(temporary, "wb") as f:
        f.write(data)
    os.replace(temporary, path)  # a reader sees the old file or the new one, never half of one


def record_previewed(folder: str, frames) -> None:
    """Add source frames to `folder`/previewed.json (atomically): the merge job merges them again."""
    path = os.path.join(folder, PREVIEWED)
    known: set[int] = set()
    try:
        with open(path, encoding="utf-8") as f:
            known = {int(v) for v in json.load(f).get("frames", [])}
    except (OSError, ValueError, TypeError, AttributeError):
        pass  # none yet (or unreadable): start again from these frames
    known.update(int(v) for v in frames)
    _write(path, json.dumps({"frames": sorted(known)}).encode())


def show(scene, destination, frame: int, layer: bytes, matte_png: bytes | None = None) -> str:
    """Write one preview's face layer (and matte) as the files of source `frame` and make Blender
    re-read them; returns the face layer file."""
    strip = ensure_layer_strip(scene, destination)
    layer_dir = _directory(strip)
    folder = os.path.dirname(layer_dir)
    path = os.path.join(layer_dir, LAYER_PATTERN % frame)
    _write(path, layer)
    if matte_png is not None:
        matte_dir = os.path.join(folder, "matte")
        matte_strip = ensure_matte_strip(scene, destination, matte_dir)
        _write(os.path.join(matte_dir, LAYER_PATTERN % frame), matte_png)
        matte_strip.invalidate_cache("RAW")
    record_previewed(folder, [frame])
    strip.invalidate_cache("RAW")
    return path


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


@bpy.app.handlers.persistent
def on_depsgraph_update(scene, *_args) -> None:
    """Anything that changes what a preview would send (an F-curve edit or a deleted key, the model or
    faceset renamed, an option set from Python) re-asks; cheap (a few property reads and a hash) and
    only while Live Preview is on. A frame change has its own handler; the same frame with the same
    digest is never asked twice here."""
    try:
        window_manager = bpy.context.window_manager
        if window_manager is None or not state().enabled or _rendering():
            return
        request(scene=strips.sequencer_scene(bpy.context) or scene, only_if_changed=True)
    except Exception as exc:  # a handler that raises would spoil every update
        print(f"Swapline: live preview check failed: {exc}")


def on_toggle(context) -> None:
    global _in_flight, _pending, _latest
    live = state(context)
    _in_flight, _pending, _latest = None, None, None
    _latencies.clear()
    _engine_ms.clear()
    live.count, live.median_ms, live.last_ms = 0, -1.0, -1.0
    live.message = ""
    if live.enabled:
        request(context)


def register() -> None:
    global _in_flight, _pending, _latest
    _in_flight, _pending, _latest = None, None, None
    _starting.clear()
    _latencies.clear()
    bpy.app.handlers.frame_change_post.append(on_frame_change)
    bpy.app.handlers.depsgraph_update_post.append(on_depsgraph_update)


def unregister() -> None:
    if bpy.app.timers.is_registered(_poll):
        bpy.app.timers.unregister(_poll)
    if on_frame_change in bpy.app.handlers.frame_change_post:
        bpy.app.handlers.frame_change_post.remove(on_frame_change)
    if on_depsgraph_update in bpy.app.handlers.depsgraph_update_post:
        bpy.app.handlers.depsgraph_update_post.remove(on_depsgraph_update)
