import threading
import time

import pytest

from engine.errors import Cancelled, EngineError
from engine.jobs import JobRunner
from engine.workspace import Workspace


def _slow(ws, params, ctx):
    for i in range(200):
        ctx.check()
        ctx.report(i / 200, f"step {i}", {"iteration": i})
        time.sleep(0.01)
    return {"steps": 200}


def _boom(ws, params, ctx):
    raise RuntimeError("stage bug")


def _no_faces(ws, params, ctx):
    raise EngineError("no_faces", "nothing there")


def _quick(ws, params, ctx):
    ctx.report(0.5, "half")
    return {"echo": params["x"]}


@pytest.fixture
def runner(tmp_path):
    events = []
    r = JobRunner(Workspace(tmp_path), {"slow": _slow, "boom": _boom, "nf": _no_faces, "quick": _quick}, events.append)
    r.events = events
    yield r
    r.shutdown()


def test_job_runs_and_reports(runner):
    job = runner.submit("quick", {"x": 3})
    done = runner.wait(job["id"], timeout=10)
    assert done["state"] == "done" and done["result"] == {"echo": 3} and done["progress"] == 1.0
    states = [e["state"] for e in runner.events if e["id"] == job["id"]]
    assert states[0] == "queued" and "running" in states and states[-1] == "done"


def test_failures_stay_in_their_job(runner):
    a = runner.submit("boom", {})
    b = runner.submit("nf", {})
    c = runner.submit("quick", {"x": 1})
    assert runner.wait(a["id"], 10)["error"]["code"] == "internal"
    assert runner.wait(b["id"], 10)["error"] == {"code": "no_faces", "message": "nothing there"}
    assert runner.wait(c["id"], 10)["state"] == "done"


def test_cancel_running_and_queued(runner):
    a = runner.submit("slow", {})
    b = runner.submit("quick", {"x": 1})
    while runner.get(a["id"])["state"] != "running":
        time.sleep(0.01)
    assert runner.cancel(b["id"])["state"] == "cancelled"
    runner.cancel(a["id"])
    assert runner.wait(a["id"], 10)["state"] == "cancelled"
    assert runner.get(b["id"])["state"] == "cancelled"


def test_progress_events_are_rate_limited(runner):
    start = time.monotonic()
    job = runner.submit("slow", {})
    runner.wait(job["id"], 20)
    elapsed = time.monotonic() - start
    progress_events = [e for e in runner.events if e["id"] == job["id"] and e["state"] == "running"]
    # 200 reports over >= 2 s: at most ~5 a second get through, plus the state changes
    assert 3 <= len(progress_events) <= elapsed / 0.2 + 3 < 200
    assert any(e["eta"] is not None for e in progress_events)


def test_unknown_kind_and_missing_job(runner):
    with pytest.raises(EngineError) as err:
        runner.submit("paint", {})
    assert err.value.code == "bad_request"
    with pytest.raises(EngineError):
        runner.get("nope")


def _left(ws, job_id, kind, state, created, params=None, restarts=0):
    """A job row as an engine killed under it left it in the catalog."""
    ws.save_job({"id": job_id, "kind": kind, "state": state, "params": params or {"x": job_id}, "progress": 0.3,
                 "message": "", "stats": {}, "result": None, "error": None, "created": created,
                 "restarts": restarts})


def _order_stage(ws, params, ctx):
    ws.order = getattr(ws, "order", []) + [ctx.job_id]
    return {"echo": params["x"]}


def test_jobs_that_resume_are_queued_again_on_restart_in_their_order(tmp_path):
    ws = Workspace(tmp_path)
    _left(ws, "later", "extract", "queued", 3.0)
    _left(ws, "first", "train", "running", 1.0)
    _left(ws, "merge", "merge", "paused", 2.0)
    _left(ws, "export", "export_faceset", "running", 0.5)  # cannot resume: starts over from nothing
    stages = {k: _order_stage for k in ("train", "merge", "extract", "export_faceset")}
    r = JobRunner(ws, stages)
    try:
        jobs = {j: r.wait(j, timeout=10) for j in ("first", "merge", "later")}
        assert ws.order == ["first", "merge", "later"]
        assert all(j["state"] == "done" for j in jobs.values()), jobs
        assert jobs["first"]["result"] == {"echo": "first"}  # the same id with the same params
        assert jobs["first"]["restarts"] == jobs["merge"]["restarts"] == 1
        assert jobs["later"]["restarts"] == 0  # it never started: it never took the engine down
        export = r.get("export")
        assert export["state"] == "failed" and export["error"]["code"] == "interrupted"
    finally:
        r.shutdown()
    again = {j["id"]: j for j in Workspace(tmp_path).load_jobs()}
    assert again["first"]["restarts"] == 1 and again["first"]["state"] == "done"


def test_a_resumed_job_says_so_while_it_waits_and_when_it_starts(tmp_path):
    ws = Workspace(tmp_path)
    _left(ws, "first", "train", "running", 1.0)
    _left(ws, "t", "train", "running", 2.0)
    events = []
    gate = threading.Event()

    def held(ws_, params, ctx):
        gate.wait(10)
        return {}

    r = JobRunner(ws, {"train": held}, events.append)
    try:
        waiting = r.get("t")  # behind "first", which holds the worker until the gate opens
        assert waiting["state"] == "queued" and waiting["restarts"] == 1
        assert waiting["message"] == "resumed after the engine stopped (restart 1 of at most 3)"
        gate.set()
        assert r.wait("t", timeout=10)["state"] == "done"
        running = [e for e in events if e["state"] == "running"]
        assert [e["id"] for e in running] == ["first", "t"]
        assert all(e["message"] == "starting: resumed after the engine stopped" for e in running)
    finally:
        gate.set()
        r.shutdown()


def test_a_job_that_keeps_stopping_the_engine_is_given_up(tmp_path):
    from engine.jobs import MAX_RESTARTS

    ws = Workspace(tmp_path)
    _left(ws, "loop", "train", "running", 1.0, restarts=MAX_RESTARTS)
    r = JobRunner(ws, {"train": _quick})
    try:
        job = r.get("loop")
        assert job["state"] == "failed" and job["error"]["code"] == "interrupted"
        assert f"{MAX_RESTARTS + 1} times" in job["error"]["message"] and "not restarted" in job["error"]["message"]
    finally:
        r.shutdown()


def test_mask_training_for_more_steps_is_not_run_twice(tmp_path):
    ws = Workspace(tmp_path)
    _left(ws, "more", "mask_train", "running", 1.0, params={"x": 1, "more": 100})
    _left(ws, "upto", "mask_train", "running", 2.0, params={"x": 2, "iterations": 100})
    r = JobRunner(ws, {"mask_train": _quick})
    try:
        assert r.get("more")["error"]["code"] == "interrupted"
        assert r.wait("upto", timeout=10)["state"] == "done"
    finally:
        r.shutdown()


def test_a_second_runner_on_a_live_engines_workspace_leaves_its_jobs_alone(tmp_path):
    """A CLI run beside a serving engine: the engine's running job is neither failed nor run twice."""
    first = JobRunner(Workspace(tmp_path), {"slow": _slow})
    try:
        job = first.submit("slow", {})
        _until(first, job["id"], "running")
        second = JobRunner(Workspace(tmp_path), {"slow": _slow})
        try:
            assert second.get(job["id"])["state"] == "running"
        finally:
            second.shutdown()
        assert first.get(job["id"])["state"] == "running"
    finally:
        first.shutdown()


def test_a_catalog_that_cannot_be_written_does_not_stop_the_worker(tmp_path, monkeypatch):
    ws = Workspace(tmp_path)
    r = JobRunner(ws, {"quick": _quick})
    try:
        job = r.submit("quick", {"x": 1})
        r.wait(job["id"], timeout=10)

        def full(job):
            raise EngineError("disk_full", "the disk holding x is full")

        monkeypatch.setattr(ws, "save_job", full)
        with pytest.raises(EngineError) as err:  # a new job is refused: it could not outlive the engine
            r.submit("quick", {"x": 2})
        assert err.value.code == "disk_full"
        monkeypatch.undo()
        assert r.wait(r.submit("quick", {"x": 3})["id"], timeout=10)["result"] == {"echo": 3}
    finally:
        r.shutdown()


def test_engine_errors_survive_pickling():
    """An error raised in a worker process reaches the job whole."""
    import pickle

    from engine.errors import Cancelled, EngineError

    err = pickle.loads(pickle.dumps(EngineError("io_error", "disk full")))
    assert (type(err), err.code, err.message) == (EngineError, "io_error", "disk full")
    cancelled = pickle.loads(pickle.dumps(Cancelled()))
    assert isinstance(cancelled, Cancelled) and cancelled.code == "cancelled"


@pytest.fixture
def obedient(tmp_path, obedient_stage):
    events = []
    r = JobRunner(Workspace(tmp_path), {"obey": obedient_stage, "quick": _quick}, events.append)
    r.events = events
    yield r
    r.shutdown()


def _until(runner, job_id, state):
    deadline = time.monotonic() + 10
    while runner.get(job_id)["state"] != state:
        assert time.monotonic() < deadline, f"job never became {state}"
        time.sleep(0.01)
    return runner.get(job_id)


def test_commands_reach_the_stage_in_order_and_pause_shows(obedient):
    r = obedient
    job = r.submit("obey", {})
    r.control(job["id"], {"command": "set", "options": {"x": 1}})  # queued jobs take commands too
    running = _until(r, job["id"], "running")
    assert running["eta"] == 12.0 or running["eta"] is None  # the stage's own ETA wins
    r.control(job["id"], {"command": "pause"})
    paused = _until(r, job["id"], "paused")
    assert paused["eta"] is None and paused["message"] == "paused"
    assert any(e["id"] == job["id"] and e["state"] == "paused" for e in r.events)
    r.control(job["id"], {"command": "resume"})
    _until(r, job["id"], "running")
    r.control(job["id"], {"command": "finish"})
    done = r.wait(job["id"], 10)
    assert [c["command"] for c in done["result"]["seen"]] == ["set", "pause", "resume", "finish"]
    assert done["result"]["seen"][0]["options"] == {"x": 1}
    states = [e["state"] for e in r.events if e["id"] == job["id"]]
    assert states.index("paused") < len(states) - 1 - states[::-1].index("running")


def test_a_paused_job_can_be_cancelled_and_finished_jobs_take_no_commands(obedient):
    r = obedient
    job = r.submit("obey", {})
    _until(r, job["id"], "running")
    r.control(job["id"], {"command": "pause"})
    _until(r, job["id"], "paused")
    r.cancel(job["id"])
    assert r.wait(job["id"], 10)["state"] == "cancelled"
    for bad, code in (({"command": "save"}, "bad_request"), ({"nothing": 1}, "bad_request")):
        with pytest.raises(EngineError) as err:
            r.control(job["id"], bad)
        assert err.value.code == code
    with pytest.raises(EngineError) as err:
        r.control("nope", {"command": "save"})
    assert err.value.code == "not_found"


def test_paused_jobs_that_cannot_resume_are_interrupted_on_restart(tmp_path):
    ws = Workspace(tmp_path)
    ws.save_job({"id": "p", "kind": "obey", "state": "paused", "params": {}, "progress": 0.3, "message": "",
                 "stats": {}, "result": None, "error": None, "created": 1.0})
    r = JobRunner(ws, {"obey": _quick})
    try:
        assert r.get("p")["error"]["code"] == "interrupted"
    finally:
        r.shutdown()


def test_a_runner_that_does_not_recover_leaves_the_jobs_for_the_next_engine(tmp_path):
    ws = Workspace(tmp_path)
    _left(ws, "t", "train", "running", 1.0)
    one_job = JobRunner(ws, {"train": _quick, "quick": _quick}, recover=False)
    try:
        assert one_job.wait(one_job.submit("quick", {"x": 1})["id"], timeout=10)["state"] == "done"
        assert one_job.get("t")["state"] == "running" and one_job.get("t")["restarts"] == 0
        # while it runs, no engine beside it takes the job over either
        beside = JobRunner(Workspace(tmp_path), {"train": _quick})
        assert beside.get("t")["state"] == "running"
        beside.shutdown()
    finally:
        one_job.shutdown()
    engine = JobRunner(Workspace(tmp_path), {"train": _quick})
    try:
        assert engine.wait("t", timeout=10)["state"] == "done"
    finally:
        engine.shutdown()
