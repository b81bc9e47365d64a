"""Blender layer: Evaluate, the quality report of a merged shot, and its outcome brought into Blender.

Evaluate asks the engine for an `evaluate` job on the shot's merge (engine/recipes_evaluate.py): the
model's source faceset, the shot's video and the merge's output folder as the engine knows them
(the merge job's own params and result, so a remote engine's upload paths too), and the model for
its held-back reconstruction SSIM. The job writes report.json and summary.png into an output folder
named here (`reports/<scene>_<shot>_<token>` in the engine's workspace), which is how a job found in the
engine's job list is known to be this shot's evaluation, also after Blender was restarted.

What the shot's evaluation is and what came of it lives on the shot strip (`strip.swapline_evaluation`,
saved with the .blend). Nothing here waits: the operator marks the shot WAITING and `drain()`, run by
a main-thread timer while an evaluation is under way (and by headless drivers, whose timers never
fire), sends the job once the engine's jobs are mirrored (sync.py), follows it, fetches a remote
engine's output folder into `<blend>_swapline/results/<job id>/` (transfers, on their own thread),
loads the sheet as an image and keeps the job's headline figures as JSON for the Quality panel.
"""

from __future__ import annotations

import json
import os
import time
import uuid

import bpy
from bpy.app.handlers import persistent
from bpy.props import EnumProperty, PointerProperty, StringProperty

from . import live_preview, mask_editor, mirror, remote_results, strips, sync
from .engine_link import CONNECTED, CONNECTING
from .operators import ensure_link
from .transfers import localize

KIND = "evaluate"
IMAGE_PREFIX = "Swapline evaluation "
INTERVAL = 0.25  # seconds between timer ticks while an evaluation is under way
GRACE = 3.0  # seconds a request may be unaccounted for (answer still in the inbox) before it is failed
STATE_ITEMS = [
    ("NONE", "None", "Never evaluated"),
    ("WAITING", "Waiting", "Asked for; sent once the engine and the merge are ready"),
    ("RUNNING", "Running", "The engine's evaluate job is queued or running"),
    ("FETCHING", "Fetching", "Done on a remote engine; its report is being downloaded"),
    ("DONE", "Done", "The sheet and the figures are here"),
    ("FAILED", "Failed", "The evaluation did not finish (see the message)"),
]
PENDING = ("WAITING", "RUNNING", "FETCHING")

_missing_since: dict[str, float] = {}  # output token -> when it was first found unaccounted for
_downloading: set[str] = set()  # job ids whose output this session asked the transfers to fetch


class SwaplineEvaluation(bpy.types.PropertyGroup):
    """A shot's quality report: the request, the engine's job and its outcome (written by drain())."""

    state: EnumProperty(items=STATE_ITEMS, default="NONE")
    merge_job: StringProperty(description="The merge job evaluated")
    job_id: StringProperty(description="The engine's evaluate job")
    output: StringProperty(description="The output folder named in the request (workspace-relative)")
    label: StringProperty()
    message: StringProperty()
    sheet: StringProperty(subtype="FILE_PATH", description="summary.png on this machine")
    report: StringProperty(subtype="FILE_PATH", description="report.json on this machine")
    image: StringProperty(description="The sheet's image datablock")
    headline: StringProperty(description="The report's headline figures (JSON)")


def headline(evaluation) -> dict:
    """The stored headline figures ({} when there are none)."""
    try:
        value = json.loads(evaluation.headline or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)[:40] or "shot"


def _same_output(value, token: str) -> bool:
    """Does a job's output param (made absolute by the engine) name the folder we asked for?"""
    return isinstance(value, str) and value.replace("\\", "/").rstrip("/").endswith(token)


# Which merge, with which params ------------------------------------------------------------------

def merge_of(scene, shot, job_id: str = "") -> dict | None:
    """The merge job to evaluate (as the engine reported it): `job_id`; else the shot's merge that a
    scene still waits for; else the one whose face layer is on the shot; else the newest finished
    merge of the shot's video."""
    merges = sync.jobs("merge")  # newest first
    by_id = {str(j.get("id")): j for j in merges}
    waiting = [r.job_id for r in scene.swapline.merges if r.destination == shot.name]
    layer = live_preview.layer_strip(scene, shot)
    for wanted in (job_id, *reversed(waiting), layer.swapline_job if layer is not None else ""):
        if wanted and wanted in by_id:
            return by_id[wanted]
    video = strips.video_path(shot)
    return next((j for j in merges if j.get("state") == "done" and (j.get("params") or {}).get("video") == video),
                None)


def source_faceset(scene, model: str) -> str:
    """The faceset the model was trained from: its newest training job's, else the scene's setting."""
    for job in sync.jobs():
        params = job.get("params") or {}
        if job.get("kind") in ("train", "pretrain") and params.get("model") == model and params.get("source"):
            return str(params["source"])
    return scene.swapline.source_faceset.strip()


def job_params(scene, merge: dict, output: str) -> dict:
    """The evaluate job's params from a finished merge job: its video, output folder and model."""
    params, result = merge.get("params") or {}, merge.get("result") or {}
    model = str(params.get("model") or "")
    out = {"destination": str(params.get("video") or ""), "result": str(result.get("directory") or ""),
           "output": output}
    if model:
        out["model"] = model
    source = source_faceset(scene, model)
    if source:
        out["source_faceset"] = source
    return out


# The drain: follow each shot's evaluation (main thread only) ---------------------------------------

def _pending():
    for scene in bpy.data.scenes:
        for strip in strips.all_strips(scene):
            if strip.type == "MOVIE" and strip.swapline_evaluation.state in PENDING:
                yield scene, strip


def drain() -> int:
    """Advance every evaluation under way by what the engine and the transfers reported; returns how
    many changed. Reads the mirrored jobs only: every request it makes is queued, never awaited."""
    changed = 0
    for scene, shot in list(_pending()):
        evaluation = shot.swapline_evaluation
        before = (evaluation.state, evaluation.message, evaluation.job_id)
        try:
            _advance(scene, shot, evaluation)
        except Exception as exc:  # noqa: BLE001 - one bad evaluation must not stop the others' drain
            _fail(evaluation, f"Evaluate '{shot.name}' failed here: {type(exc).__name__}: {exc}")
        if (evaluation.state, evaluation.message, evaluation.job_id) != before:
            changed += 1
    if changed:
        _tag_redraw()
    return changed


def _advance(scene, shot, evaluation) -> None:
    link = sync.link()
    if link.state not in (CONNECTING, CONNECTED):
        if evaluation.state == "WAITING":  # pressed, and the engine could not be reached
            _fail(evaluation, "The engine is not connected")
        else:  # the engine keeps the job: followed again once connected (a file loaded, say)
            _set(evaluation, message="Connect the engine to follow the evaluation")
        return
    if evaluation.state == "WAITING":
        _send(scene, shot, evaluation, link)
        return
    job = _job_of(evaluation)
    if job is None:
        asked = any(tag.get("output") == evaluation.output for tag in link.pending_tags())
        if asked or link.state == CONNECTING or (link.state == CONNECTED and _attaching(link)):
            _missing_since.pop(evaluation.output, None)
            return
        if time.monotonic() - _missing_since.setdefault(evaluation.output, time.monotonic()) > GRACE:
            error = sync.status().last_error
            _fail(evaluation, error if error.startswith(evaluation.label) else
                  f"{evaluation.label}: the engine has no such job (its request failed)")
        return
    _set(evaluation, job_id=str(job["id"]))
    state = job.get("state")
    if state in mirror.ACTIVE:
        _set(evaluation, state="RUNNING", message=str(job.get("message") or state))
    elif state != "done":
        error = job.get("error") or {}
        _fail(evaluation, str(error.get("message") or error.get("code") or state))
    elif evaluation.state != "FETCHING" and not link.remote:
        _finish(shot, evaluation, job.get("result") or {})
    else:
        _fetch(shot, evaluation, job, link)


def _attaching(link) -> bool:
    return sync.status().connection != "CONNECTED" or any(t.get("purpose") == "attach" for t in link.pending_tags())


def _send(scene, shot, evaluation, link) -> None:
    """WAITING: send the job once the engine's jobs are here and the merge is done."""
    key = f"{scene.name}/{shot.name}"
    if link.state != CONNECTED or _attaching(link):
        _set(evaluation, message="Waiting for the engine…")
        _missing_since.pop(key, None)
        return
    merge = merge_of(scene, shot, evaluation.merge_job)
    if merge is not None and merge.get("state") not in (*mirror.ACTIVE, "done"):
        _fail(evaluation, f"The merge {merge['id']} {merge.get('state')}: merge the shot again first")
        return
    if merge is None:
        if time.monotonic() - _missing_since.setdefault(key, time.monotonic()) > GRACE:
            _missing_since.pop(key, None)
            what = f"merge {evaluation.merge_job}" if evaluation.merge_job else f"finished merge of '{shot.name}'"
            _fail(evaluation, f"No {what} on this engine: press Merge Shot first")
        return
    _missing_since.pop(key, None)
    _set(evaluation, merge_job=str(merge["id"]))
    if merge.get("state") != "done":
        _set(evaluation, message="Waiting for the merge to finish…")
        return
    params = job_params(scene, merge, evaluation.output)
    tag = {"purpose": KIND, "kind": KIND, "label": evaluation.label, "scene": scene.name, "shot": shot.name,
           "output": evaluation.output}
    sync.send([("job.start", {"kind": KIND, "params": params}, tag)])
    evaluation.state, evaluation.message = "RUNNING", "Sent to the engine"


def _job_of(evaluation) -> dict | None:
    jobs = sync.jobs(KIND)
    if evaluation.job_id:
        found = next((j for j in jobs if str(j.get("id")) == evaluation.job_id), None)
        if found is not None:
            return found
    return next((j for j in jobs if _same_output((j.get("params") or {}).get("output"), evaluation.output)), None)


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
    if not remote or not link.download(job_id, KIND, evaluation.label, remote, local):
        _fail(evaluation, "The report is on the engine's machine and the engine is not connected")
        return
    _downloading.add(job_id)
    evaluation.state, evaluation.message = "FETCHING", "Downloading the report…"


def _finish(shot, evaluation, result: dict) -> None:
    sheet = str(result.get("sheet") or "")
    if not os.path.isfile(sheet):
        _fail(evaluation, f"The report's sheet is not on this machine: {sheet or '(none)'}")
        return
    image = _load_image(IMAGE_PREFIX + shot.name, sheet)
    evaluation.sheet, evaluation.report, evaluation.image = sheet, str(result.get("report") or ""), image.name
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


def _load_image(name: str, path: str):
    image = bpy.data.images.get(name)
    if image is None:
        image = bpy.data.images.load(path, check_existing=False)
        image.name = name
    else:
        image.filepath = path
        image.reload()
    image.preview_ensure()  # the panel's picture (template_icon); the Image Editor shows it full size
    return image


def _tag_redraw() -> None:
    wm = bpy.context.window_manager
    for window in wm.windows if wm else ():
        for area in window.screen.areas:
            if area.type == "SEQUENCE_EDITOR":
                area.tag_redraw()


def _timer() -> float | None:
    try:
        drain()
    except Exception as exc:  # noqa: BLE001 - an exception would drop the timer with evaluations under way
        print(f"Swapline: evaluation drain failed: {exc}")
    if not any(True for _ in _pending()):
        return None
    return INTERVAL if sync.link().state in (CONNECTING, CONNECTED) else 1.0


def start_timer() -> None:
    if not bpy.app.timers.is_registered(_timer):
        bpy.app.timers.register(_timer, first_interval=INTERVAL, persistent=True)


@persistent
def _on_load_post(*_args) -> None:
    # a file saved while an evaluation ran: follow it again (the engine keeps the job)
    if any(True for _ in _pending()):
        start_timer()
    for image in {s.swapline_evaluation.image for scene in bpy.data.scenes for s in strips.all_strips(scene)
                  if s.type == "MOVIE" and s.swapline_evaluation.image}:
        if image in bpy.data.images:
            bpy.data.images[image].preview_ensure()  # the panel's picture of the sheet


# Operators ---------------------------------------------------------------------------------------

class SWAPLINE_OT_evaluate(bpy.types.Operator):
    """Measure the shot's merge: is the face closer to the source person than to the destination, are
    the expression and head pose kept, does it flicker more than the shot, are there seams, and how well
    the model rebuilds faces it never trained on. Shows the summary sheet and the figures"""

    bl_idname = "swapline.evaluate"
    bl_label = "Evaluate"

    def execute(self, context):
        scene = strips.sequencer_scene(context)
        shot = live_preview.target(scene)
        if shot is None or shot.type != "MOVIE":
            self.report({"ERROR"}, "Select a merged shot (or its face layer) first")
            return {"CANCELLED"}
        evaluation = shot.swapline_evaluation
        if evaluation.state in PENDING:
            self.report({"ERROR"}, f"'{shot.name}' is being evaluated already")
            return {"CANCELLED"}
        layer = live_preview.layer_strip(scene, shot)
        merging = [r.job_id for r in scene.swapline.merges if r.destination == shot.name]
        if layer is None and not merging and (sync.link().state != CONNECTED or merge_of(scene, shot) is None):
            self.report({"ERROR"}, f"'{shot.name}' has no merge result: press Merge Shot first")
            return {"CANCELLED"}
        if not ensure_link(self, context):
            return {"CANCELLED"}
        evaluation.state, evaluation.job_id, evaluation.message = "WAITING", "", "Waiting for the engine…"
        # a merge of the shot still running is the one to evaluate (once done), else the one on show
        evaluation.merge_job = merging[-1] if merging else layer.swapline_job if layer is not None else ""
        evaluation.output = f"reports/{_safe(scene.name)}_{_safe(shot.name)}_{uuid.uuid4().hex[:8]}"
        evaluation.label = f"Evaluate {shot.name}"
        drain()  # sends at once when the engine is connected and the merge done
        start_timer()
        self.report({"INFO"}, f"Evaluating '{shot.name}'")
        return {"FINISHED"}


class SWAPLINE_OT_evaluate_open(bpy.types.Operator):
    """Open the shot's summary sheet in an Image Editor (a new window), to read it full size"""

    bl_idname = "swapline.evaluate_open"
    bl_label = "Open Sheet"

    def execute(self, context):
        scene = strips.sequencer_scene(context)
        shot = live_preview.target(scene)
        image = bpy.data.images.get(shot.swapline_evaluation.image) if shot is not None else None
        if image is None:
            self.report({"ERROR"}, "No summary sheet yet: press Evaluate after a merge")
            return {"CANCELLED"}
        area = mask_editor.open_editor(context)
        if area is None:
            self.report({"ERROR"}, "No window to open an Image Editor in")
            return {"CANCELLED"}
        area.spaces.active.image = image
        area.tag_redraw()
        return {"FINISHED"}


classes = (SWAPLINE_OT_evaluate, SWAPLINE_OT_evaluate_open)


def register() -> None:
    """The evaluation's home on movie strips (operators and panels are registered with the others)."""
    bpy.utils.register_class(SwaplineEvaluation)
    bpy.types.Strip.swapline_evaluation = PointerProperty(type=SwaplineEvaluation)
    if _on_load_post not in bpy.app.handlers.load_post:
        bpy.app.handlers.load_post.append(_on_load_post)


def unregister() -> None:
    if bpy.app.timers.is_registered(_timer):
        bpy.app.timers.unregister(_timer)
    if _on_load_post in bpy.app.handlers.load_post:
        bpy.app.handlers.load_post.remove(_on_load_post)
    _missing_since.clear()
    _downloading.clear()
    del bpy.types.Strip.swapline_evaluation
    bpy.utils.unregister_class(SwaplineEvaluation)
