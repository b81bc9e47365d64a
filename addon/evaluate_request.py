"""Blender layer, what Evaluate asks the engine for: which merge of a shot, and the `evaluate` job's
params (engine/recipes_evaluate.py) built from that merge job as the engine reported it.

The merge job's own params and result are used rather than the .blend's paths: they are the paths
the engine knows (a remote engine's uploads too). Reads the mirrored jobs (sync.jobs) only.
"""

from __future__ import annotations

import uuid

from . import live_preview, strips, sync

KIND = "evaluate"


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)[:40] or "shot"


def output_folder(scene, shot) -> str:
    """A new output folder for the job, relative to the engine's workspace. Its name is how a job in
    the engine's list is known to be this shot's evaluation, also after Blender was restarted."""
    return f"reports/{_safe(scene.name)}_{_safe(shot.name)}_{uuid.uuid4().hex[:8]}"


def same_output(value, token: str) -> bool:
    """Does a job's output param (made absolute by the engine) name the folder we asked for?"""
    return isinstance(value, str) and value.replace("\\", "/").rstrip("/").endswith(token)


def merges_asked(scene, shot) -> list[str]:
    """Ids of the shot's merges this scene still waits for, oldest first."""
    return [r.job_id for r in scene.swapline.merges if r.destination == shot.name]


def merge_of(scene, shot, job_id: str = "") -> dict | None:
    """The merge job to evaluate (as the engine reported it): `job_id`; else the shot's merge that a
    scene still waits for; else the one whose face layer is on the shot; else the newest finished
    merge of the shot's video."""
    merges = sync.jobs("merge")  # newest first
    by_id = {str(j.get("id")): j for j in merges}
    layer = live_preview.layer_strip(scene, shot)
    for wanted in (job_id, *reversed(merges_asked(scene, shot)), layer.swapline_job if layer is not None else ""):
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
    """The evaluate job's params from a finished merge job: its video, output folder and model (whose
    held-back faces, if it was trained with any, give the reconstruction SSIM)."""
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
