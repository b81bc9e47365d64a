"""Blender layer: the drain, the only code that writes what the engine reports into Blender properties.

A persistent `bpy.app.timers` callback runs `drain()` every 0.1 s on the main thread; it applies the
link's messages within a small time budget and tags the sequencer for redraw. Timers never fire in
background runs, so headless drivers and tests call `drain()` themselves, or `wait_for_jobs()`.

With a remote engine, a finished merge or matte a scene asked for is first downloaded next to the
.blend, then placed from there like a local result (remote_results.py).
"""

from __future__ import annotations

import queue
import time

import bpy

from . import faceset_view, live_preview, mask_view, matte, mirror, remote_results, strips, thumbnails, train_view
from .engine_link import (CONNECTED, CONNECTING, Connection, EngineLink, JobList, JobUpdate, LinkError, Reply,
                          RequestFailed, Transfer)

INTERVAL = 0.1
BUDGET = 0.02  # seconds of main-thread time per timer tick
_RANK = {"queued": 0, "running": 1, "paused": 1, "done": 2, "failed": 2, "cancelled": 2}

_link: EngineLink | None = None
_jobs: dict[str, dict] = {}  # latest engine dict per job id: params and result, which props don't hold
_ours: list[str] = []  # ids of jobs started from this session, oldest first
_returned: set[str] = set()  # ids that wait_for_jobs() already handed back
_announced: set[str] = set()  # ids of our failed jobs already reported
_failures: list[dict] = []  # requests the engine (or the connection) refused
_failures_seen = 0


class JobError(RuntimeError):
    """Raised by wait_for_jobs(check=True) when a job or its start request failed."""


def link() -> EngineLink:
    if _link is None:
        raise RuntimeError("Swapline is not registered")
    return _link


def status(context=None):
    return (context or bpy.context).window_manager.swapline


def jobs(kind: str | None = None) -> list[dict]:
    """Every job the engine reported, newest first (plain dicts as on the wire)."""
    found = [dict(j) for j in _jobs.values() if kind is None or j.get("kind") == kind]
    return sorted(found, key=lambda j: j.get("created") or 0.0, reverse=True)


# The drain ---------------------------------------------------------------------------------------

def drain(budget: float | None = BUDGET) -> int:
    """Apply queued engine messages to Blender properties; returns how many were applied.

    `budget` bounds the time spent (None: until the queue is empty). Main thread only.
    """
    if _link is None:
        return 0
    deadline = None if budget is None else time.monotonic() + budget
    count = 0
    while deadline is None or time.monotonic() < deadline:
        try:
            message = _link.inbox.get_nowait()
        except queue.Empty:
            break
        try:
            apply(message)
        except Exception as exc:  # a bad message must not stop the drain for good
            _report("ERROR", f"Swapline could not apply an engine message: {exc}")
        count += 1
    count += faceset_view.load_thumbnails(status().faceset, deadline)
    count += mask_view.load_previews(status().masks, deadline)
    if count:
        _tag_redraw()
    return count


def send(requests) -> None:
    """Queue requests the drain itself calls for (follow-ups, refreshes); nothing when the link is gone."""
    for op, args, tag in requests:
        try:
            link().request(op, args, tag)
        except LinkError:
            return


def drain_timer() -> float:
    # An exception would unregister the timer for good; the drain must outlive any one bad tick.
    try:
        drain()
    except Exception as exc:
        print(f"Swapline: drain failed: {exc}")
    return INTERVAL


def apply(message) -> None:
    """Apply one message from the link (see engine_link for the kinds)."""
    if isinstance(message, Connection):
        _apply_connection(message)
    elif isinstance(message, JobUpdate):
        _apply_job(message.job, message.tag)
    elif isinstance(message, JobList):
        for job in sorted(message.jobs, key=lambda j: j.get("created") or 0.0):
            _apply_job(job, None)
    elif isinstance(message, Transfer):
        job, problem = remote_results.apply_transfer(status(), message)
        if problem:
            _set_error(problem)
        if job is not None:
            _settle(job)
    elif isinstance(message, RequestFailed):
        if faceset_view.apply_failure(status().faceset, message.op, message.code, message.message, message.tag):
            return
        if mask_view.apply_failure(status(), message.op, message.code, message.message, message.tag):
            return
        if train_view.apply_failure(status(), message.op, message.code, message.message, message.tag):
            return
        if live_preview.apply_failure(status(), message.op, message.code, message.message, message.tag):
            return
        label = (message.tag or {}).get("label") or message.op
        _failures.append({"op": message.op, "code": message.code, "message": message.message,
                          "kind": (message.tag or {}).get("kind"), "label": label})
        _set_error(f"{label} failed: {message.message}")
    elif isinstance(message, Reply) and message.op == "engine.info" and isinstance(message.result, dict):
        mirror.write_engine_info(status(), message.result)
    elif isinstance(message, Reply) and faceset_view.owns(message.tag):
        send(faceset_view.apply_reply(status().faceset, message.op, message.result, message.tag))
        send(mask_view.follow_faceset(status(), message.op, message.tag))
    elif isinstance(message, Reply) and mask_view.owns(message.tag):
        send(mask_view.apply_reply(status(), message.op, message.result, message.tag))
    elif isinstance(message, Reply) and train_view.owns(message.tag):
        send(train_view.apply_reply(status(), message.op, message.result, message.tag))
    elif isinstance(message, Reply) and live_preview.owns(message.tag):
        send(live_preview.apply_reply(message.op, message.result, message.tag))


def _apply_connection(message: Connection) -> None:
    st = status()
    st.connection = message.state
    st.connection_message = message.message
    if message.engine is not None:
        mirror.write_engine_info(st, message.engine)
    if message.state == "FAILED":
        _set_error(message.message)
    elif message.state == "CONNECTED":
        st.last_error = ""
        _refresh_faceset()
    if message.state != "CONNECTED":
        # The engine owns job state; until it is reached again these jobs are of unknown fate
        # (while reconnecting too: the re-attach brings their state back).
        mirror.mark_unreachable(st)


def _apply_job(job: dict, tag: dict | None) -> None:
    job_id = str(job.get("id", ""))
    if not job_id:
        return
    old = _jobs.get(job_id)
    stale = old is not None and _RANK.get(old.get("state"), 0) > _RANK.get(job.get("state"), 0)
    # done just now (not a finished job mirrored again on attach): an extraction refreshes the faceset view
    finished = not stale and job.get("state") == "done" and (old.get("state") != "done" if old else bool(tag))
    if not stale:
        _jobs[job_id] = dict(job)
        mirror.write_job(status(), job, ours=job_id in _ours)
    if tag:
        _adopt(job_id, tag)
    current = _jobs[job_id]
    if job_id in _ours and current.get("state") == "failed" and job_id not in _announced:
        _announced.add(job_id)
        error = current.get("error") or {}
        _set_error(f"{mirror.job_label(current)} failed: {error.get('message') or error.get('code') or 'unknown error'}")
    here = remote_results.result_here(current, link())
    if here is not None:
        _settle(here)
    send(train_view.follow_job(status(), current))
    if finished:
        send(mask_view.follow_job(status(), current))
    if finished and current.get("kind") == "extract":
        _refresh_faceset(str((current.get("params") or {}).get("faceset") or ""))


def _settle(job: dict) -> None:
    """Place what a finished job made for a scene (a merge's face layer, a matte)."""
    _settle_merge(job)
    for problem in matte.settle(job):
        _set_error(problem)


def _refresh_faceset(extracted: str | None = None) -> None:
    """Reload the faceset browser: on connecting, and when an extraction into the faceset on show
    (or the one it is set to browse) is done."""
    view = status().faceset
    scene = strips.sequencer_scene(bpy.context)
    name = faceset_view.faceset_name(view, scene.swapline) if scene is not None else ""
    if name and link().state == CONNECTED and (extracted is None or extracted in (name, view.faceset)):
        send(faceset_view.show(view, name, auto=True))


def _adopt(job_id: str, tag: dict) -> None:
    """The answer to our own job.start: remember the job, and where a merge result must go."""
    if job_id not in _ours:
        _ours.append(job_id)
        mirror.mark_ours(status(), job_id)
    matte.adopt(job_id, tag)
    remote_results.adopt(job_id, tag)
    if tag.get("purpose") == "merge":
        live_preview.merge_started(tag)  # the job's own state holds the shot's live preview off from now on
    if tag.get("purpose") == "merge" and tag.get("scene") in bpy.data.scenes:
        request = bpy.data.scenes[tag["scene"]].swapline.merges.add()
        request.job_id = job_id
        request.destination = tag.get("destination", "")


def _settle_merge(job: dict) -> None:
    """Place a finished merge that a scene asked for; forget requests whose job ended otherwise."""
    if job.get("kind") != "merge" or job.get("state") in mirror.ACTIVE:
        return
    job_id = str(job["id"])
    for scene in bpy.data.scenes:
        merges = scene.swapline.merges
        for index in reversed(range(len(merges))):
            if merges[index].job_id != job_id:
                continue
            destination_name = merges[index].destination
            merges.remove(index)
            if job.get("state") == "done":
                _place(scene, destination_name, job)


def _place(scene, destination_name: str, job: dict) -> None:
    editor = scene.sequence_editor
    destination = editor.strips_all.get(destination_name) if editor else None
    if destination is None:
        destination = strips.find_role(scene, "DESTINATION")
    if destination is None:
        _set_error(f"Merge done, but the destination strip {destination_name!r} is gone")
        return
    try:
        strips.place_result(scene, destination, job.get("result") or {}, job_id=str(job["id"]))
    except strips.NotOnThisMachine as exc:  # a remote engine's files: a strip of them would crash a render
        _report("WARNING", f"Merge done on the engine's machine; no strip placed: {exc}")
    except (KeyError, ValueError, RuntimeError, TypeError) as exc:
        _set_error(f"Could not add the merge result: {exc}")


def _set_error(text: str) -> None:
    status().last_error = text
    _report("ERROR", text)


def _report(level: str, text: str) -> None:
    print(f"Swapline: {text}")
    if bpy.app.background:
        return
    try:
        wm = bpy.context.window_manager
        window = bpy.context.window or (wm.windows[0] if wm.windows else None)
        if window is not None:
            with bpy.context.temp_override(window=window):
                bpy.ops.swapline.report("EXEC_DEFAULT", level=level, message=text)
    except Exception:  # reporting is a courtesy; the panel shows last_error anyway
        pass


def _tag_redraw() -> None:
    wm = bpy.context.window_manager
    for window in wm.windows if wm else ():
        for area in window.screen.areas:
            if area.type == "SEQUENCE_EDITOR":
                area.tag_redraw()


# Headless helpers --------------------------------------------------------------------------------

def wait_for_connection(timeout: float = 180.0) -> dict:
    """Block (headless only) until connected and the engine's jobs are mirrored.

    Returns the engine info; raises JobError when the connection failed, TimeoutError after `timeout`.
    """
    deadline = time.monotonic() + timeout
    while True:
        drain(budget=None)
        state = link().state
        attaching = any(tag.get("purpose") == "attach" for tag in link().pending_tags())
        if state == CONNECTED and status().connection == "CONNECTED" and not attaching:
            return dict(link().engine or {})
        if state not in (CONNECTING, CONNECTED):
            drain(budget=None)
            raise JobError(status().connection_message or "not connected")
        if time.monotonic() > deadline:
            raise TimeoutError(f"Swapline: no connection after {timeout:.0f} s")
        time.sleep(0.05)


def wait_for_jobs(kind: str | None = None, timeout: float = 600.0, check: bool = True) -> list[dict]:
    """Block, draining messages, until no job of `kind` (None: any) is queued, running or requested.

    For headless drivers and tests only: it blocks the calling thread, which in an interactive
    Blender would freeze the UI. Returns this session's jobs of that kind that no earlier call
    returned (plain dicts, newest first). With `check`, raises JobError when one of them failed or
    was cancelled, or when a start request was refused; raises TimeoutError after `timeout` s.
    """
    global _failures_seen
    deadline = time.monotonic() + timeout
    while True:
        drain(budget=None)
        if not _busy(kind):
            break
        if time.monotonic() > deadline:
            raise TimeoutError(f"Swapline: {kind or 'jobs'} still running after {timeout:.0f} s")
        time.sleep(0.05)
    finished = [dict(_jobs[i]) for i in reversed(_ours)
                if i not in _returned and (kind is None or _jobs[i].get("kind") == kind)]
    _returned.update(j["id"] for j in finished)
    refused = [f for f in _failures[_failures_seen:] if kind is None or f["kind"] in (kind, None)]
    _failures_seen = len(_failures)
    if check:
        problems = [f"{f['label']}: {f['message']}" for f in refused]
        problems += [f"{mirror.job_label(j)} {j['state']}: {(j.get('error') or {}).get('message', '')}".rstrip(": ")
                     for j in finished if j.get("state") != "done"]
        if problems:
            raise JobError("; ".join(problems))
    return finished


def _busy(kind: str | None) -> bool:
    current = link()
    if any(kind is None or tag.get("kind") in (kind, None) for tag in current.pending_tags()):
        return True
    if remote_results.busy(kind):
        return True
    if current.state == CONNECTING:
        return True
    if current.state != CONNECTED:  # nothing will change any more: report what the mirror holds
        return False
    return any(j.get("state") in mirror.ACTIVE and (kind is None or j.get("kind") == kind) for j in _jobs.values())


# Lifecycle ---------------------------------------------------------------------------------------

@bpy.app.handlers.persistent
def _on_load_post(*_args) -> None:
    # A loaded file brings its own scenes; ask for the jobs again so the mirror is complete.
    if _link is not None and _link.state == CONNECTED:
        _link.request("job.list")
        _refresh_faceset()


def register() -> None:
    global _link, _failures_seen
    _link = EngineLink()
    _jobs.clear()
    _ours.clear()
    _returned.clear()
    _announced.clear()
    _failures.clear()
    _failures_seen = 0
    remote_results.reset()
    bpy.app.timers.register(drain_timer, first_interval=INTERVAL, persistent=True)
    bpy.app.handlers.load_post.append(_on_load_post)


def unregister() -> None:
    global _link
    if bpy.app.timers.is_registered(drain_timer):
        bpy.app.timers.unregister(drain_timer)
    if _on_load_post in bpy.app.handlers.load_post:
        bpy.app.handlers.load_post.remove(_on_load_post)
    if _link is not None:
        _link.disconnect()
        _link = None
    thumbnails.unregister()
    train_view.unregister()
