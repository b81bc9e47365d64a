"""Blender layer: following each shot's evaluation, on the main thread, without ever waiting.

Evaluate (evaluate_operators.py) marks the shot WAITING; from then on `drain()` moves it along:
it sends the `evaluate` job once the engine's jobs are mirrored (sync.py) and the merge is done,
follows the job through the mirrored job list, has a remote engine's output folder downloaded
into `<blend>_swapline/results/<job id>/` (transfers, on their own thread), then loads the sheet
as an image and keeps the headline figures on the shot. Every request is queued, never awaited.

`drain()` runs from a main-thread timer while an evaluation is under way, and from headless
drivers (timers never fire there). A .blend saved while one ran is followed again once loaded
and its engine connected (the engine keeps the job); a sheet image is loaded again if the file
lost it (Blender does not save an image nothing uses).
"""

from __future__ import annotations

import json
import os
import time

import bpy
from bpy.app.handlers import persistent

from . import mirror, remote_results, strips, sync, train_view
from .engine_link import CONNECTED, CONNECTING
from .evaluate_request import KIND, job_params, merge_of, same_output
from .evaluate_state import PENDING, evaluations
from .transfers import localize

IMAGE_PREFIX = "Swapline evaluation "
INTERVAL = 0.25  # seconds between timer ticks while an evaluation is under way
IDLE_INTERVAL = 1.0  # ... while the engine is not connected: nothing can change until it is
GRACE = 3.0  # seconds a request or merge may be unaccounted for (its answer still on the way) before failing

_missing_since: dict[str, float] = {}  # output folder -> when its merge or job was first found missing
_downloading: set[str] = set()  # job ids whose output this session asked the transfers to fetch


def pending():
    """(scene, shot) of every evaluation under way."""
    return ((scene, shot) for scene, shot in evaluations() if shot.swapline_evaluation.state in PENDING)


def drain() -> int:
    """Advance every evaluation under way by what the engine and the transfers reported; returns how
    many changed. Main thread only."""
    changed = 0
    for scene, shot in list(pending()):
        evaluation = shot.swapline_evaluation
        before = (evaluation.state, evaluation.message, evaluation.job_id)
        try:
            _advance(scene, shot, evaluation)
        except Exception as exc:  # noqa: BLE001 - one bad evaluation must not stop the others' drain
            _fail(evaluation, f"Evaluate '{shot.name}' failed here: {type(exc).__name__}: {exc}")
        if (evaluation.state, evaluation.message, evaluation.job_id) != before:
            changed += 1
    if changed:
        sync._tag_redraw()
    return changed


def _advance(scene, shot, evaluation) -> None:
    link = sync.link()
    if link.state not in (CONNECTING, CONNECTED):
        if evaluation.state == "WAITING":  # pressed, and the engine could not be reached
            _fail(evaluation, "The engine is not connected: connect it, then press Evaluate again")
        else:  # the engine keeps the job: followed again once connected (a file loaded, say)
            _set(evaluation, message="Connect the engine to follow the evaluation")
        return
    if evaluation.state == "WAITING":
        _send(scene, shot, evaluation, link)
        return
    job = _job_of(evaluation)
    if job is None:
        _missing_job(evaluation, link)
        return
    _missing_since.pop(evaluation.output, None)
    _set(evaluation, job_id=str(job["id"]))
    state = job.get("state")
    if state in mirror.ACTIVE:
        _set(evaluation, state="RUNNING", message=str(job.get("message") or state))
    elif state == "cancelled":
        _fail(evaluation, "The evaluation was cancelled")
    elif state != "done":
        error = job.get("error") or {}
        _fail(evaluation, f"The evaluation {state}: {error.get('message') or error.get('code') or 'no reason given'}")
    elif evaluation.state != "FETCHING" and not link.remote:
        _finish(shot, evaluation, job.get("result") or {})
    else:
        _fetch(shot, evaluation, job, link)


def _attaching(link) -> bool:
    """Is the engine's job list still on its way (until then a job not listed may yet be there)?"""
    return sync.status().connection != "CONNECTED" or any(t.get("purpose") == "attach" for t in link.pending_tags())


def _late(evaluation) -> bool:
    """Has what the evaluation waits for been missing longer than GRACE?"""
    return time.monotonic() - _missing_since.setdefault(evaluation.output, time.monotonic()) > GRACE


def _missing_job(evaluation, link) -> None:
    """RUNNING or FETCHING, and the engine lists no such job: its answer may be on the way; if not,
    the request failed, or the file was saved against another engine."""
    asked = any(tag.get("output") == evaluation.output for tag in link.pending_tags())
    if asked or link.state == CONNECTING or _attaching(link):
        _missing_since.pop(evaluation.output, None)
        return
    if not _late(evaluation):
        return
    if evaluation.job_id:
        _fail(evaluation, f"{evaluation.label}: this engine does not know job {evaluation.job_id} (it ran on "
                          "another engine, or its jobs were cleared): press Evaluate again")
        return
    error = sync.status().last_error
    _fail(evaluation, error if error.startswith(evaluation.label) else
          f"{evaluation.label}: the engine has no such job (its request failed)")


def _send(scene, shot, evaluation, link) -> None:
    """WAITING: send the job once the engine's jobs are here and the merge is done."""
    if link.state != CONNECTED or _attaching(link):
        _set(evaluation, message="Waiting for the engine…")
        _missing_since.pop(evaluation.output, None)
        return
    merge = merge_of(scene, shot, evaluation.merge_job)
    if merge is None:
        if _late(evaluation):
            what = f"merge {evaluation.merge_job}" if evaluation.merge_job else f"finished merge of '{shot.name}'"
            _fail(evaluation, f"No {what} on this engine: press Merge Shot first")
        return
    _missing_since.pop(evaluation.output, None)
    if merge.get("state") not in (*mirror.ACTIVE, "done"):
        _fail(evaluation, f"The merge {merge['id']} {merge.get('state')}: merge the shot again first")
        return
    _set(evaluation, merge_job=str(merge["id"]))
    if merge.get("state") != "done":
        _set(evaluation, message="Waiting for the merge to finish…")
        return
    tag = {"purpose": KIND, "kind": KIND, "label": evaluation.label, "scene": scene.name, "shot": shot.name,
           "output": evaluation.output}
    sync.send([("job.start", {"kind": KIND, "params": job_params(scene, merge, evaluation.output)}, tag)])
    evaluation.state, evaluation.message = "RUNNING", "Sent to the engine"


def _job_of(evaluation) -> dict | None:
    jobs = sync.jobs(KIND)
    if evaluation.job_id:
        found = next((j for j in jobs if str(j.get("id")) == evaluation.job_id), None)
        if found is not None:
            return found
    return next((j for j in jobs if same_output((j.get("params") or {}).get("output"), evaluation.output)), None)


def _fetch(shot, evaluation, job: dict, link) -> None:
    """A remote engine's report: download its output folder, then finish from the local copy."""
    job_id, result = str(job["id"]), job.get("result") or {}
    remote, local = str(result.get("output") or ""), strips.results_folder(job_id)
    ended = [t for t in remote_results.transfers() if t["key"] == f"download-{job_id}"]
    if ended and job_id in _downloading:
        _downloading.discard(job_id)
        if ended[-1]["state"] == "done":
            _finish(shot, evaluation, localize(result, remote, local))
        else:
            _fail(evaluation, f"Could not fetch the report: {ended[-1]['message']}")
        return
    if job_id in _downloading:
        return
    if not remote:
        _fail(evaluation, f"The engine's job {job_id} named no output folder to fetch")
        return
    if not link.download(job_id, KIND, evaluation.label, remote, local):  # the link is a local engine now
        _fail(evaluation, "The report is on a remote engine's machine: connect to that engine to fetch it")
        return
    _downloading.add(job_id)
    evaluation.state, evaluation.message = "FETCHING", "Downloading the report…"


def _finish(shot, evaluation, result: dict) -> None:
    sheet = str(result.get("sheet") or "")
    if not os.path.isfile(sheet):
        _fail(evaluation, f"The report's sheet is not on this machine: {sheet or '(none)'}")
        return
    evaluation.sheet, evaluation.report = sheet, str(result.get("report") or "")
    evaluation.image = _load_sheet(IMAGE_PREFIX + shot.name, sheet).name
    evaluation.headline = json.dumps(result.get("headline") or {})
    evaluation.state, evaluation.message = "DONE", ""
    sync._report("INFO", f"Evaluated '{shot.name}': {sheet}")


def _set(evaluation, **values) -> None:
    """Write only what changed: the drain runs often, and every write of a property redraws."""
    for name, value in values.items():
        if getattr(evaluation, name) != value:
            setattr(evaluation, name, value)


def _fail(evaluation, text: str) -> None:
    evaluation.state, evaluation.message = "FAILED", text
    _missing_since.pop(evaluation.output, None)


def _load_sheet(name: str, path: str):
    image = train_view.load_image(name, path)
    image.preview_ensure()  # the panel's picture (template_icon); the Image Editor shows it full size
    return image


def sheet_image(evaluation):
    """The shot's sheet as an image: the one loaded, or loaded again from the sheet file (a reloaded
    .blend lacks it unless something showed it); None when there is neither."""
    image = bpy.data.images.get(evaluation.image) if evaluation.image else None
    if image is None and evaluation.image and os.path.isfile(evaluation.sheet):
        image = _load_sheet(evaluation.image, evaluation.sheet)
    return image


def _timer() -> float | None:
    try:
        drain()
    except Exception as exc:  # noqa: BLE001 - an exception would drop the timer with evaluations under way
        print(f"Swapline: evaluation drain failed: {exc}")
    if not any(True for _ in pending()):
        return None
    return INTERVAL if sync.link().state in (CONNECTING, CONNECTED) else IDLE_INTERVAL


def start_timer() -> None:
    if not bpy.app.timers.is_registered(_timer):
        bpy.app.timers.register(_timer, first_interval=INTERVAL, persistent=True)


@persistent
def _on_load_post(*_args) -> None:
    _missing_since.clear()  # the loaded file's evaluations start their grace anew
    if any(True for _ in pending()):
        start_timer()
    for _scene, shot in evaluations():
        image = sheet_image(shot.swapline_evaluation)
        if image is not None:
            image.preview_ensure()  # previews are not saved: the panel's picture of the sheet


def register() -> None:
    if _on_load_post not in bpy.app.handlers.load_post:
        bpy.app.handlers.load_post.append(_on_load_post)


def unregister() -> None:
    if bpy.app.timers.is_registered(_timer):
        bpy.app.timers.unregister(_timer)
    if _on_load_post in bpy.app.handlers.load_post:
        bpy.app.handlers.load_post.remove(_on_load_post)
    _missing_since.clear()
    _downloading.clear()
