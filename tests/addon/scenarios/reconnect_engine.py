"""An engine killed (SIGKILL) while it trains. LOCAL: the link says so, relaunches it on the same
workspace and re-attaches. REMOTE (loopback, TLS with the certificate pinned): the scenario starts
`python -m engine serve --tls` itself, kills it and starts it again a few seconds later; the link
keeps trying and re-attaches. Either
way the engine takes the job up again under its id, the mirror shows it, a request made while the
engine was gone is answered, and the drain stays quick throughout."""

import os
import signal
import sys
import time

import bpy

import _blender
from _serve import free_port, serve

workspace, mode = sys.argv[1], sys.argv[2]
sync = _blender.enable()
scene = _blender.new_scene()
scene.swapline.workspace = workspace
st = bpy.context.window_manager.swapline
out = {"states": []}
if mode == "REMOTE":
    port, token_file = free_port(), os.path.join(workspace, "..", "token")
    with open(token_file, "w") as f:
        f.write("remote-secret")
    first = serve(workspace, port, token_file, tls=True)
    prefs = _blender.preferences()
    prefs.engine_mode, prefs.host, prefs.port, prefs.token = "REMOTE", "127.0.0.1", port, "remote-secret"
    prefs.use_tls, prefs.tls_fingerprint = True, first.tls_fingerprint
    out["fingerprint"] = first.tls_fingerprint
bpy.ops.swapline.connect()
sync.wait_for_connection(timeout=180)
link = sync.link()
if mode == "LOCAL":
    first = link._local.process
current = [first]


def engine_process():
    return link._local.process if mode == "LOCAL" and link._local is not None else current[0]
TINY = {"resolution": 32, "ae_dims": 32, "e_dims": 8, "d_dims": 8, "d_mask_dims": 4, "batch_size": 4,
        "workers": 0, "iterations": 1_000_000}
link.request("job.start", {"kind": "train", "params": {"model": "m", "source": "src", "destination": "dst", **TINY}},
             {"purpose": "train", "kind": "train", "label": "Train m"})


def train_job():
    return next((j for j in st.jobs if j.kind == "train"), None)


_blender.check(_blender.drain_until(sync, lambda: train_job() is not None and train_job().iteration > 0, 180),
               f"training never ran: {st.last_error!r}")
job_id = train_job().job_id
out["before"] = [job_id, train_job().state]

os.kill(first.pid, signal.SIGKILL)
first.wait()
restart_at = time.monotonic() + 3.0  # REMOTE: the engine is down a while, then someone starts it again
drains, asked = [], False
deadline = time.monotonic() + 240
while time.monotonic() < deadline:
    t = time.perf_counter()
    sync.drain()  # what Blender's timer does every 0.1 s
    drains.append(time.perf_counter() - t)
    if not out["states"] or out["states"][-1] != [st.connection, st.connection_message]:
        out["states"].append([st.connection, st.connection_message])
    if st.connection == "CONNECTING" and not asked:  # a request while the engine is gone: it waits
        link.request("engine.info", {}, {"purpose": "probe"})
        asked = True
    if mode == "REMOTE" and current[0] is first and time.monotonic() > restart_at:
        current[0] = serve(workspace, port, token_file, tls=True)  # blocks while it starts; Blender would not: it is the user
    job = train_job()
    if engine_process() is not first and st.connection == "CONNECTED" and job is not None and job.job_id == job_id and job.state == "running" and job.iteration > 0:
        break
    time.sleep(0.02)
job = train_job()
out["after"] = [job.job_id, job.state, job.message] if job else None
out["relaunched"] = engine_process() is not first
out["engine_tls"] = (link.engine or {}).get("tls")
out["drains"] = len(drains)
out["drain_max_s"] = max(drains)
out["probe_pending"] = any(t.get("purpose") == "probe" for t in link.pending_tags())
_blender.drain_until(sync, lambda: not any(t.get("purpose") == "probe" for t in link.pending_tags()), 30)
out["probe_answered"] = not any(t.get("purpose") == "probe" for t in link.pending_tags())
out["last_error"] = st.last_error

bpy.ops.swapline.cancel_job(job_id=job_id, kind="train")
_blender.drain_until(sync, lambda: train_job().state not in ("queued", "running", "paused"), 120)
out["ended"] = train_job().state
bpy.ops.swapline.disconnect()
_blender.drain_until(sync, lambda: st.connection == "DISCONNECTED", 30)
out["final"] = st.connection
if mode == "REMOTE":
    current[0].terminate()
    current[0].wait(30)
_blender.emit(**out)
