"""An upload that loses its connection half-way resumes from what the engine has: a fake engine
(the extension's own bridge server) keeps the chunks it got and drops the uploading connection
after the first one; the add-on uploads again on a new connection from there; the job goes out with the clip's path in the engine's workspace.
Then a .dfm export: the engine writes it in its workspace, the add-on fetches it to the asked path.
Last, a slow upload shows as a line in the job list and is cancelled from there."""

import hashlib
import importlib
import os
import sys
import time

import bpy

import _blender

clip, dfm = sys.argv[1:3]
DFM = b"onnx model bytes " * 1000
sync = _blender.enable()
bridge = importlib.import_module(f"{_blender.MODULE}.bridge")
results = _blender.submodule("remote_results")
prefs = _blender.preferences()
_blender.new_scene()
blobs, partial, accepted, started, servers, broken = set(), {}, [], [], [], set()
slow_digest = ""


def status(digest):
    present = digest in blobs
    return {"hash": digest, "present": present, "received": len(partial.get(digest, b"")),
            "path": f"media/{digest}.mp4" if present else None}


def handler(op, args, session):
    if op == "media.status":
        return status(args["hash"])
    if op == "media.upload":
        if session.id in broken:  # frames read before the break: never answered, never kept
            raise bridge.BridgeError("unreachable", "connection dropped")
        if args["hash"] == slow_digest:
            time.sleep(0.3)  # a slow line: time to see the upload in the job list and cancel it
        got = partial.setdefault(args["hash"], b"")
        if args["offset"] != len(got):
            raise bridge.BridgeError("bad_offset", f"expected offset {len(got)}")
        partial[args["hash"]] = got + args["data"]
        accepted.append((args["hash"], args["offset"], len(args["data"])))
        if len(accepted) == 1:  # the connection breaks after the first chunk
            broken.add(session.id)
            session.abort()
        if len(partial[args["hash"]]) == args["size"]:
            if hashlib.sha256(partial[args["hash"]]).hexdigest() != args["hash"]:
                raise bridge.BridgeError("hash_mismatch", "not the file announced")
            blobs.add(args["hash"])
        return status(args["hash"])
    if op == "job.list":
        return {"jobs": []}
    if op == "job.start":
        started.append(args)
        result = {"output": f"/w/exports/{args['params'].get('output')}"} if args["kind"] == "export_dfm" else {}
        return {"id": f"j{len(started)}", "kind": args["kind"], "state": "done", "progress": 1.0,
                "params": args["params"], "result": result, "error": None, "created": time.time()}
    if op == "files.manifest":
        name = args["path"].rsplit("/", 1)[-1]
        return {"root": "exports", "files": [{"path": name, "size": len(DFM), "hash": hashlib.sha256(DFM).hexdigest()}]}
    if op == "files.read":
        return {"data": DFM[args["offset"]:args["offset"] + args["size"]], "size": len(DFM)}
    raise bridge.BridgeError("unknown_op", op)


def start_server(port=0):
    server = bridge.BridgeServer(handler, port=port, token="t", engine_info={"name": "fake", "workspace": "/w"})
    servers[:] = [server]
    return server.start()


port = start_server()
prefs.engine_mode, prefs.host, prefs.port, prefs.token = "REMOTE", "127.0.0.1", port, "t"
bpy.ops.swapline.connect()
sync.wait_for_connection(10)
sync.link().request("job.start", {"kind": "extract", "params": {"video": os.path.abspath(clip), "faceset": "f"}},
                    {"purpose": "extract", "kind": "extract", "label": "Extract f"})
done = sync.wait_for_jobs("extract", timeout=120)
sync.link().request("job.start", {"kind": "export_dfm", "params": {"model": "m", "output": dfm}},
                    {"purpose": "export_dfm", "kind": "export_dfm", "label": "Export m"})
exported = sync.wait_for_jobs("export_dfm", timeout=60)
slow = os.path.join(os.path.dirname(dfm), "slow.mp4")
with open(slow, "wb") as f:
    f.write(os.urandom(24 * 2**20))
slow_digest = hashlib.sha256(open(slow, "rb").read()).hexdigest()  # noqa: F811 - the handler reads it
st = bpy.context.window_manager.swapline
sync.link().request("job.start", {"kind": "extract", "params": {"video": slow, "faceset": "g"}},
                    {"purpose": "extract", "kind": "extract", "label": "Extract g"})
_blender.check(_blender.drain_until(sync, lambda: any(j.job_id.startswith("upload-") and j.progress > 0
                                                      for j in st.jobs), 30), "no upload line")
line = next(j for j in st.jobs if j.job_id.startswith("upload-"))
shown = [line.kind, line.state, line.message]
cancel = sorted(bpy.ops.swapline.cancel_job(job_id=line.job_id, kind=line.kind))
cancelled = sync.wait_for_jobs("extract", timeout=60, check=False)
size = os.path.getsize(clip)
clip_digest = hashlib.sha256(open(clip, "rb").read()).hexdigest()
offsets = sorted((offset, n) for digest, offset, n in accepted if digest == clip_digest)
_blender.emit(size=size, accepted=offsets, contiguous=all(a[0] + a[1] == b[0] for a, b in zip(offsets, offsets[1:])),
              blobs=len(blobs & {clip_digest}), params=[a["params"] for a in started], transfers=results.transfers(),
              jobs=[j["state"] for j in done], digest=clip_digest,
              exported=[j["state"] for j in exported], dfm_ok=open(dfm, "rb").read() == DFM,
              shown=shown, cancel=cancel, cancelled=cancelled, last_error=st.last_error,
              lines_left=[j.job_id for j in st.jobs if j.job_id.startswith("upload-")],
              slow_received=len(partial.get(slow_digest, b"")), slow_present=slow_digest in blobs)
servers[0].stop()
