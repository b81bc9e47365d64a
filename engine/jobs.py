"""Service layer: long work as jobs, run one at a time on a worker thread, persisted in the workspace.

A job's stage function gets a `JobContext` (report progress, ask whether to stop, take the commands
a client sent it, say it is paused) and never sees the socket. Jobs outlive the client that started
them; an exception in a stage fails that job only.

Jobs outlive the engine too: when it starts, the jobs it finds queued are queued again in their
order, and a job that was running when the engine stopped (killed, crashed, power cut) is queued
again under the same id if its kind carries on where it stopped (`resumes_after_restart`), at most
MAX_RESTARTS times; otherwise it fails as `interrupted`. Only the runner holding the workspace's
jobs.lock does this, so a second process opening the same workspace never runs a live engine's job.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
import traceback
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable

from .errors import Cancelled, EngineError
from .files import try_lock
from .workspace import Workspace

log = logging.getLogger("swapline.engine.jobs")

ACTIVE = ("queued", "running", "paused")  # paused: a running job that waits for "resume"
EVENT_INTERVAL = 0.2  # progress events per job at most ~5 a second: Blender redraws on each
MAX_RESTARTS = 3  # a job that takes the engine down with it every time is not restarted for ever
RESUMED = "resumed after the engine stopped"

StageFn = Callable[[Workspace, dict, "JobContext"], dict]


@dataclass
class JobContext:
    """What a running stage may do with its job: report progress, check for cancellation, take the
    commands sent to it (`JobRunner.control`) and say whether it is paused."""

    job_id: str
    _runner: "JobRunner"
    _cancel: threading.Event = field(default_factory=threading.Event)
    _commands: queue.SimpleQueue = field(default_factory=queue.SimpleQueue)

    def commands(self) -> list[dict]:
        """The commands sent since the last call, oldest first (the stage polls this every step)."""
        out = []
        while True:
            try:
                out.append(self._commands.get_nowait())
            except queue.Empty:
                return out

    def set_paused(self, paused: bool) -> None:
        """The stage stopped (or went on) working while keeping its job: state "paused" <-> "running"."""
        self._runner._set_paused(self.job_id, paused)

    def report(self, progress: float, message: str = "", stats: dict | None = None) -> None:
        self._runner._progress(self.job_id, progress, message, stats)

    def should_stop(self) -> bool:
        return self._cancel.is_set()

    def check(self) -> None:
        if self._cancel.is_set():
            raise Cancelled()


class JobRunner:
    """Queue of jobs with one worker thread; `on_change(job)` is called on every visible change."""

    def __init__(self, workspace: Workspace, stages: dict[str, StageFn], on_change: Callable[[dict], None] | None = None,
                 recover: bool = True):
        self.workspace = workspace
        self.stages = dict(stages)  # its own table: adding a kind to one runner changes no other
        self.on_change = on_change or (lambda job: None)
        self._jobs: dict[str, dict] = {}
        self._contexts: dict[str, JobContext] = {}
        self._started: dict[str, float] = {}
        self._last_event: dict[str, float] = {}
        self._paused_at: dict[str, float] = {}
        self._lock = threading.RLock()
        self._queue: queue.Queue[str | None] = queue.Queue()
        # held for the runner's life: the jobs left active in the catalog are this runner's to recover
        # only when no live runner holds it (a CLI run beside a serving engine must not touch them,
        # nor an engine started beside a CLI run); `recover=False`: a one-job runner such as the
        # command line's leaves them to the next engine
        self._owner = try_lock(workspace.root / "jobs.lock")
        for job in workspace.load_jobs():  # oldest first: queued again in their order
            self._jobs[job["id"]] = job
            if job["state"] in ACTIVE and recover and self._owner is not None and self._recover(job):
                self._contexts[job["id"]] = JobContext(job["id"], self)
                self._queue.put(job["id"])
        self._worker = threading.Thread(target=self._work, name="swapline-jobs", daemon=True)
        self._worker.start()

    def _recover(self, job: dict) -> bool:
        """A job the last engine left active: queue it again (True) or fail it as interrupted."""
        job["eta"] = None
        if job["state"] == "queued":  # it never started: nothing of it is half done
            job["message"] = "waiting for earlier jobs (queued before the engine stopped)"
        elif not resumes_after_restart(job):
            job["state"] = "failed"
            job["error"] = {"code": "interrupted", "message": "the engine stopped while this job ran; start it again"}
            job["message"] = job["error"]["message"]
        elif job.get("restarts", 0) >= MAX_RESTARTS:
            job["state"] = "failed"
            job["error"] = {"code": "interrupted", "message": (
                f"the engine stopped while this job ran, {job.get('restarts', 0) + 1} times in a row; it is not "
                "restarted again: look at the engine's log, then start it again yourself")}
            job["message"] = job["error"]["message"]
        else:
            job["restarts"] = job.get("restarts", 0) + 1
            job["state"], job["error"] = "queued", None
            job["message"] = f"{RESUMED} (restart {job['restarts']} of at most {MAX_RESTARTS})"
        self._save(job)
        return job["state"] == "queued"

    # Public ------------------------------------------------------------------------------------

    def submit(self, kind: str, params: dict) -> dict:
        if kind not in self.stages:
            raise EngineError("bad_request", f"unknown job kind {kind!r}; expected one of {', '.join(self.stages)}")
        if not isinstance(params, dict):
            raise EngineError("bad_request", "job params must be a map")
        try:  # the catalog keeps params as JSON: msgpack's bytes (or a NaN) cannot be stored or resumed
            json.dumps(params, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise EngineError("bad_request", f"job params must be plain data (text, numbers, lists, maps): {exc}") from None
        job = {
            "id": uuid.uuid4().hex[:12], "kind": kind, "state": "queued", "params": params, "progress": 0.0,
            "message": "waiting for earlier jobs", "eta": None, "stats": {}, "result": None, "error": None,
            "created": time.time(), "restarts": 0,
        }
        with self._lock:
            self.workspace.save_job(job)  # a job the catalog cannot hold (disk full) is refused here
            self._jobs[job["id"]] = job
            self._contexts[job["id"]] = JobContext(job["id"], self)
        self._emit(job)
        self._queue.put(job["id"])
        return dict(job)

    def get(self, job_id: str) -> dict:
        with self._lock:
            if job_id not in self._jobs:
                raise EngineError("not_found", f"no job {job_id!r}")
            return dict(self._jobs[job_id])

    def list(self) -> list[dict]:
        with self._lock:
            return [dict(j) for j in sorted(self._jobs.values(), key=lambda j: j["created"], reverse=True)]

    def count(self, *states: str) -> int:
        """How many jobs are in one of `states` (no copy of the job list: engine.info asks on every call)."""
        with self._lock:
            return sum(j["state"] in states for j in self._jobs.values())

    def cancel(self, job_id: str) -> dict:
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None:
                raise EngineError("not_found", f"no job {job_id!r}")
            if job["state"] == "queued":
                self._finish(job, "cancelled", message="cancelled before it started")
            elif job["state"] in ("running", "paused"):
                self._contexts[job_id]._cancel.set()
                job["message"] = "stopping…"
                self._emit(job)
            return dict(job)

    def control(self, job_id: str, command: dict) -> dict:
        """Queue `command` ({"command": name, ...}) for a queued, running or paused job's stage.

        What the names mean is the stage's business; the runner only delivers them in order.
        """
        if not isinstance(command, dict) or not isinstance(command.get("command"), str) or not command["command"]:
            raise EngineError("bad_request", "a job command is a map with a 'command' name")
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None:
                raise EngineError("not_found", f"no job {job_id!r}")
            if job["state"] not in ACTIVE:
                raise EngineError("bad_request", f"job {job_id} is {job['state']}; only a live job takes commands")
            self._contexts[job_id]._commands.put(dict(command))
            return dict(job)

    def wait(self, job_id: str, timeout: float | None = None) -> dict:
        """Block until the job leaves the queue (for the CLI and tests, never for the server loop)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            job = self.get(job_id)
            if job["state"] not in ACTIVE:
                return job
            if deadline is not None and time.monotonic() > deadline:
                raise EngineError("timeout", f"job {job_id} still {job['state']} after {timeout} s")
            time.sleep(0.05)

    def shutdown(self) -> None:
        with self._lock:
            for ctx in self._contexts.values():
                ctx._cancel.set()
        self._queue.put(None)
        self._worker.join(timeout=30)
        if self._owner is not None:
            self._owner.close()  # the next runner on this workspace may recover what is left
            self._owner = None

    # Worker ------------------------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            job_id = self._queue.get()
            if job_id is None:
                return
            with self._lock:
                job = self._jobs[job_id]
                if job["state"] != "queued":
                    continue
                job["state"] = "running"
                job["message"] = f"starting: {RESUMED}" if job.get("restarts") else "starting"
                self._started[job_id] = time.monotonic()
                self._save(job)
                ctx = self._contexts[job_id]
            self._emit(job)
            try:
                result = self.stages[job["kind"]](self.workspace, job["params"], ctx)
            except Cancelled as exc:
                self._finish(job, "cancelled", message=exc.message)
            except EngineError as exc:
                self._finish(job, "failed", error={"code": exc.code, "message": exc.message})
            except MemoryError:
                self._finish(job, "failed", error={"code": "out_of_memory", "message": "the engine ran out of memory"})
            except Exception as exc:  # a bug in a stage fails its job, never the engine
                log.error("job %s (%s) crashed:\n%s", job_id, job["kind"], traceback.format_exc())
                self._finish(job, "failed", error={"code": "internal", "message": f"{type(exc).__name__}: {exc}"})
            else:
                self._finish(job, "done", result=result, message="done")

    def _finish(self, job: dict, state: str, *, result: Any = None, error: dict | None = None, message: str = "") -> None:
        with self._lock:
            job["state"], job["eta"] = state, None
            job["result"], job["error"] = result, error
            job["message"] = message or (error or {}).get("message", state)
            if state == "done":
                job["progress"] = 1.0
            self._save(job)
            for per_job in (self._contexts, self._started, self._last_event, self._paused_at):
                per_job.pop(job["id"], None)
        self._emit(job)

    def _progress(self, job_id: str, progress: float, message: str, stats: dict | None) -> None:
        with self._lock:
            job = self._jobs[job_id]
            job["progress"] = max(0.0, min(1.0, float(progress)))
            if message:
                job["message"] = message
            if stats:
                job["stats"] = {**job["stats"], **stats}
            elapsed = time.monotonic() - self._started.get(job_id, time.monotonic())
            if job["state"] == "paused":
                job["eta"] = None  # nothing is moving towards the end
            elif stats and "eta_s" in stats:
                job["eta"] = stats["eta_s"]  # the stage knows better (training resumed at 90% is not 90% done in no time)
            else:
                job["eta"] = elapsed * (1 - job["progress"]) / job["progress"] if job["progress"] > 0.01 else None
            now = time.monotonic()
            if now - self._last_event.get(job_id, 0.0) < EVENT_INTERVAL:
                return
            self._last_event[job_id] = now
            self._save(job)
        self._emit(job)

    def _set_paused(self, job_id: str, paused: bool) -> None:
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None or job["state"] not in ("running", "paused") or (job["state"] == "paused") == paused:
                return
            now = time.monotonic()
            if paused:
                job["state"], job["message"], job["eta"] = "paused", "paused", None
                self._paused_at[job_id] = now
            else:
                job["state"], job["message"] = "running", "resumed"
                # time spent paused is not time spent working: the ETA must not count it
                since = self._paused_at.pop(job_id, now)
                if job_id in self._started:
                    self._started[job_id] += now - since
            self._last_event[job_id] = now
            self._save(job)
        self._emit(job)  # a state change is never rate-limited

    def _save(self, job: dict) -> None:
        """Persist a job's change; when the catalog cannot take it (disk full) the job goes on in
        memory and the engine keeps working: the worker thread must never die of a write."""
        try:
            self.workspace.save_job(job)
        except EngineError as exc:
            log.error("job %s: its state could not be saved: %s", job["id"], exc)

    def _emit(self, job: dict) -> None:
        try:
            self.on_change(dict(job))
        except Exception:
            log.exception("job event listener failed")


def resumes_after_restart(job: dict) -> bool:
    """Whether running a job again with the same id and params carries on where it stopped, rather
    than starting over or doing anything twice: training from its checkpoint (iterations are an
    absolute target), a merge from merge.json in its folder (renders/<job id> or its output), an
    extraction from the catalog's record of how far it got, mask training from its checkpoint
    (not "more": that counts from whatever the model has when the job starts)."""
    if job["kind"] == "mask_train":
        return "more" not in job["params"]
    return job["kind"] in ("train", "pretrain", "merge", "extract")
