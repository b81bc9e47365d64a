"""Against an in-process fake engine (the extension's own bridge server): token, re-attach, events,
stop, a refused request, the engine going away and coming back by itself (reconnect, queued
requests, a refused token on the way back)."""

import importlib
import sys
import threading
import time

import bpy

import _blender

clip = sys.argv[1]
sync = _blender.enable()
bridge = importlib.import_module(f"{_blender.MODULE}.bridge")
prefs = _blender.preferences()
scene = _blender.new_scene()
st = bpy.context.window_manager.swapline
editor = scene.sequence_editor
src = editor.strips.new_movie(name="Src", filepath=clip, channel=1, frame_start=1)
dst = editor.strips.new_movie(name="Dst", filepath=clip, channel=2, frame_start=100)
src.frame_offset_start = 4
dst.frame_offset_end = 10
src.swapline_role, dst.swapline_role = "SOURCE", "DESTINATION"


def job(job_id, kind, state, created, **extra):
    return {"id": job_id, "kind": kind, "state": state, "progress": 0.0, "message": "", "eta": None, "stats": {},
            "result": None, "error": None, "params": {}, "created": created, **extra}


JOBS = {
    "old-extract": job("old-extract", "extract", "done", 1.0, progress=1.0, params={"faceset": "source"}),
    "old-merge": job("old-merge", "merge", "failed", 2.0, error={"code": "no_faces", "message": "old failure"}),
    "old-train": job("old-train", "train", "running", 3.0, progress=0.2, params={"model": "model"},
                     stats={"iteration": 120, "loss": 0.0456}),
}
received, cancelled, infos = [], [], []
servers = []


def broadcast(j):
    for server in servers:
        server.broadcast({"event": "job", "job": dict(j)})


def run(j):
    for state, progress in (("running", 0.5), ("done", 1.0)):
        time.sleep(0.05)
        j.update(state=state, progress=progress)
        if state == "done":
            j["result"] = {"faceset": j["params"]["faceset"], "frames": 3, "faces": 3}
        broadcast(j)


def handler(op, args, session):
    if op == "media.status":  # the clip is on the "engine" already: no upload, its path there is sent
        return {"hash": args["hash"], "present": True, "received": 0, "path": f"media/{args['hash']}.mp4"}
    if op == "engine.info":
        infos.append(time.monotonic())
        return {"name": "fake@test", "version": "0", "device": "cpu", "workspace": "/nowhere"}
    if op == "job.list":
        return {"jobs": sorted((dict(j) for j in JOBS.values()), key=lambda j: -j["created"])}
    if op == "job.start":
        received.append(args)
        if args["params"].get("resolution") == 33:
            raise bridge.BridgeError("bad_request", "resolution must be a multiple of 16")
        j = job(f"job{len(JOBS)}", args["kind"], "queued", time.time(), params=args["params"])
        JOBS[j["id"]] = j
        broadcast(j)
        threading.Thread(target=run, args=(j,), daemon=True).start()
        return dict(j)
    if op == "job.cancel":
        j = JOBS[args["id"]]
        cancelled.append(args["id"])
        threading.Timer(0.05, lambda: (j.update(state="cancelled"), broadcast(j))).start()
        return dict(j, message="stopping…")
    raise bridge.BridgeError("unknown_op", op)


def start_server(port=0, token="right"):
    server = bridge.BridgeServer(handler, port=port, token=token,
                                 engine_info={"name": "fake@test", "version": "0", "device": "cpu",
                                              "workspace": "/nowhere"})
    servers[:] = [server]
    return server.start()


out = {"seconds": []}


def op(operator, **kwargs):
    result, error = _blender.call(operator, **kwargs)
    out["seconds"].append(_blender.call.last_seconds)
    return error or sorted(result)


port = start_server()
prefs.engine_mode, prefs.port, prefs.token = "REMOTE", port, "wrong"
op(bpy.ops.swapline.connect)
_blender.drain_until(sync, lambda: st.connection == "FAILED", 10)
out["wrong_token"] = [st.connection, st.connection_message]

prefs.token = "right"
op(bpy.ops.swapline.connect)
out["engine"] = sync.wait_for_connection(10)
sync.drain(budget=None)
out["status"] = [st.connection, st.engine_name, st.engine_device, st.engine_workspace, st.last_error]
out["mirror"] = sorted([j.job_id, j.kind, j.state, j.ours, j.iteration, round(j.loss, 4), j.label] for j in st.jobs)

out["stop"] = op(bpy.ops.swapline.train_stop)
_blender.drain_until(sync, lambda: any(j.job_id == "old-train" and j.state == "cancelled" for j in st.jobs), 10)
out["cancelled"] = cancelled

out["extract"] = op(bpy.ops.swapline.extract)
done = sync.wait_for_jobs("extract", timeout=20)
out["extract_jobs"] = [[j["state"], j["result"]["faceset"]] for j in done]
out["extract_params"] = [r["params"] for r in received]
out["wait_again"] = sync.wait_for_jobs("extract", timeout=5)  # nothing new since the last wait

scene.swapline.resolution = 33
out["train"] = op(bpy.ops.swapline.train)
try:
    sync.wait_for_jobs("train", timeout=20)
    out["train_error"] = "none"
except sync.JobError as exc:
    out["train_error"] = str(exc)
out["last_error"] = st.last_error

# the engine goes away: the link says so and keeps trying; a request made meanwhile waits
servers[0].stop()
_blender.drain_until(sync, lambda: "reconnecting" in st.connection_message, 10)
out["closed"] = [st.connection, st.connection_message]
# a request the engine does not come back for in time fails with a clear message (bound shortened here)
engine_link = _blender.submodule("engine_link")
engine_link.QUEUE_LIMIT = 0.3
sync.link().request("engine.info", {}, {"purpose": "doomed", "label": "Doomed request"})
_blender.drain_until(sync, lambda: "was not sent" in st.last_error, 10)
out["expired"] = st.last_error
engine_link.QUEUE_LIMIT = 60.0
sync.link().request("engine.info", {}, {"purpose": "probe"})
drains = []
gone_until = time.monotonic() + 1.5
while time.monotonic() < gone_until:  # Blender's timer keeps draining: every call must stay quick
    t = time.perf_counter()
    sync.drain()
    drains.append(time.perf_counter() - t)
    time.sleep(0.02)
out["drain_max_s"] = max(drains)
out["queued"] = [t.get("purpose") for t in sync.link().pending_tags()]
out["infos_while_gone"] = len(infos)

# it comes back (same port) with a job that finished meanwhile: the link reconnects by itself,
# re-attach mirrors the job, the queued request goes out
JOBS["old-merge"].update(state="done", progress=1.0, error=None)
start_server(port)
_blender.drain_until(sync, lambda: any(j.job_id == "old-merge" and j.state == "done" for j in st.jobs), 30)
out["reconnected"] = [st.connection, st.connection_message]
_blender.drain_until(sync, lambda: not sync.link().pending_tags(), 10)
out["reattached"] = sorted([j.job_id, j.state] for j in st.jobs)
out["infos_after"] = len(infos)

# back with another token: FAILED at once, no retrying in a loop
servers[0].stop()
start_server(port, token="other")
_blender.drain_until(sync, lambda: st.connection == "FAILED", 30)
out["refused"] = [st.connection, st.connection_message]
time.sleep(1.5)
sync.drain(budget=None)
out["after_refusal"] = st.connection
servers[0].stop()
_blender.disable()
_blender.emit(**out)
