"""Blender layer: what a remote engine's transfers look like here, and its results brought home.

Uploads and downloads (transfers.py) show as lines of their own in the job list of their kind while
they run (queued, with progress, a message and a cancel button). A finished merge or matte that a
scene waits for is, from a remote engine, first downloaded into `strips.results_folder` (next to
the .blend), and its result's paths are moved there, so it is placed like a local engine's result.
A file a job wrote for the user (an exported .dfm) is fetched to the path the user gave.
Called from the drain in sync.py only.
"""

from __future__ import annotations

import os
import time

import bpy

from . import mirror, strips
from .engine_link import EngineLink, Transfer
from .transfers import localize

RESULT_KINDS = ("merge", "mask_matte")  # jobs whose result folder a scene places as strips
_downloads: dict[str, dict] = {}  # job id -> the remote engine's job, while its result comes here
_fetched: dict[str, dict] = {}  # job id -> its result with the paths on this machine
_log: list[dict] = []  # every upload and download that ended in this session, oldest first
_started: dict[str, float] = {}  # key -> when it was first shown (its place in the job list)
_fetch_to: dict[str, str] = {}  # job id -> the local path its output file goes to (remote engine)


def reset() -> None:
    _downloads.clear()
    _fetched.clear()
    _log.clear()
    _started.clear()
    _fetch_to.clear()


def adopt(job_id: str, tag: dict) -> None:
    """The answer to our own job.start: remember where its output file goes (engine_link set it)."""
    if tag.get("fetch"):
        _fetch_to[job_id] = str(tag["fetch"])


def transfers() -> list[dict]:
    """Every upload and download that ended in this session, oldest first (plain dicts)."""
    return [dict(t) for t in _log]


def busy(kind: str | None) -> bool:
    """Is a result of this kind (None: any) still on its way here?"""
    return any(kind is None or job.get("kind") == kind for job in _downloads.values())


def _wanted(job: dict) -> bool:
    """Does a scene wait for this job's result to place it?"""
    job_id = str(job.get("id"))
    for scene in bpy.data.scenes:
        requests = scene.swapline.merges if job.get("kind") == "merge" else scene.swapline.mattes
        if any(request.job_id == job_id for request in requests):
            return True
    return False


def result_here(job: dict, link: EngineLink) -> dict | None:
    """The job with its result on this machine: as it is from a local engine; from a remote one, once
    its result folder is downloaded (None meanwhile: the download's end brings it, apply_transfer)."""
    job_id = str(job.get("id"))
    if job_id in _fetched:
        return dict(job, result=_fetched[job_id]) if job.get("state") == "done" else job
    if job.get("state") != "done" or not link.remote:
        return job
    result = job.get("result") or {}
    if job_id in _fetch_to and isinstance(result.get("output"), str):  # one file, to where the user asked
        remote, local = result["output"], os.path.dirname(_fetch_to[job_id])
    elif job.get("kind") in RESULT_KINDS and result.get("directory") and _wanted(job):
        remote, local = str(result["directory"]), strips.results_folder(job_id)
    else:
        return job
    if job_id not in _downloads and not link.download(job_id, str(job["kind"]), mirror.job_label(job), remote, local):
        return job
    _downloads[job_id] = job
    return None


def apply_transfer(status, message: Transfer) -> tuple[dict | None, str]:
    """Show a running transfer in the job list; when one ends, drop its line. Returns (a job whose
    result has just arrived, to settle; an error text for the user), either may be empty."""
    if message.state == "running":
        started = _started.setdefault(message.key, time.time())
        progress = message.done / message.total if message.total else 0.0
        mirror.write_job(status, {"id": message.key, "kind": message.kind, "state": "queued", "progress": progress,
                                  "message": message.message, "created": started}, ours=True)
        return None, ""
    _started.pop(message.key, None)
    for index, item in enumerate(status.jobs):
        if item.job_id == message.key:
            status.jobs.remove(index)
            break
    _log.append({"key": message.key, "kind": message.kind, "label": message.label, "state": message.state,
                 "total": message.total, "sent": message.sent, "message": message.message})
    if not message.key.startswith("download-"):
        return None, ""  # an upload's request reports its own failure
    job = _downloads.pop(message.key[len("download-"):], None)
    if job is None:
        return None, ""
    if message.state != "done":
        return None, f"Could not fetch the result of {mirror.job_label(job)}: {message.message}"
    remote, local = message.result["remote"], message.result["local"]
    if _fetch_to.pop(str(job["id"]), None) is not None:  # a file: it keeps its name in the folder
        local = os.path.join(local, os.path.basename(remote.replace("\\", "/")))
    result = _fetched[str(job["id"])] = localize(job.get("result") or {}, remote, local)
    return dict(job, result=result), ""
