"""Blender layer: how engine jobs and engine info are written into (and read from) `window_manager.swapline`.

The writers are called only from the drain in sync.py, which stays the one writer of live status.
"""

from __future__ import annotations

ACTIVE = ("queued", "running", "paused")
MAX_MIRRORED = 50  # the engine keeps every job; the panel needs the recent ones


def job_label(job: dict) -> str:
    params = job.get("params") or {}
    kind = job.get("kind") or "job"
    name = params.get("faceset") if kind == "extract" else params.get("model")
    return f"{kind.capitalize()} {name}" if name else kind.capitalize()


def find_job(status, job_id: str):
    for item in status.jobs:
        if item.job_id == job_id:
            return item
    return None


def active_jobs(status, *kinds: str) -> list:
    """The mirrored jobs of these kinds that are still queued, running or paused."""
    return [item for item in status.jobs if item.kind in kinds and item.state in ACTIVE]


def write_job(status, job: dict, ours: bool) -> None:
    job_id = str(job["id"])
    item = find_job(status, job_id)
    if item is None:
        item = status.jobs.add()
        item.job_id = job_id
        item.ours = ours
        _trim(status.jobs)
        item = find_job(status, job_id)  # removing items may move this one
    stats = job.get("stats") or {}
    error = job.get("error") or {}
    item.kind = str(job.get("kind") or "")
    item.label = job_label(job)
    item.state = str(job.get("state") or "")
    item.progress = min(max(float(job.get("progress") or 0.0), 0.0), 1.0)
    item.message = str(job.get("message") or "")
    item.eta = float(job["eta"]) if job.get("eta") is not None else -1.0
    item.iteration = int(stats["iteration"]) if stats.get("iteration") is not None else -1
    item.loss = float(stats["loss"]) if stats.get("loss") is not None else -1.0
    item.error_code = str(error.get("code") or "")
    item.error_message = str(error.get("message") or "")
    item.created = float(job.get("created") or 0.0)


def mark_ours(status, job_id: str) -> None:
    item = find_job(status, job_id)
    if item is not None:
        item.ours = True


def mark_unreachable(status) -> None:
    # The engine owns job state; until it is reached again, running jobs are of unknown fate.
    for item in status.jobs:
        if item.state in ACTIVE:
            item.message = "engine not connected"


def write_engine_info(status, engine: dict) -> None:
    status.engine_name = str(engine.get("name") or "")
    status.engine_version = str(engine.get("version") or "")
    status.engine_device = str(engine.get("device") or "")
    status.engine_workspace = str(engine.get("workspace") or "")


def _trim(items) -> None:
    while len(items) > MAX_MIRRORED:
        finished = [(item.created, index) for index, item in enumerate(items) if item.state not in ACTIVE]
        if not finished:
            return
        items.remove(min(finished)[1])
