"""An upload that loses its connection half-way resumes from what the engine has: a fake engine
(the extension's own bridge server) keeps the chunks it got and drops every connection after the
first one, then listens again; the job goes out with the clip's path in the engine's workspace."""

import hashlib
import importlib
import os
import sys
import threading
import time

import bpy

import _blender

clip = sys.argv[1]
sync = _blender.enable()
bridge = importlib.import_module(f"{_blender.MODULE}.bridge")
results = _blender.submodule("remote_results")
prefs = _blender.preferences()
_blender.new_scene()
blobs, partial, accepted, started, servers, hellos = set(), {}, [], [], [], []


def status(digest):
    present = digest in blobs
    return {"hash": digest, "present": present, "received": len(partial.get(digest, b"")),
            "path": f"media/{digest}.mp4" if present else None}


def bounce():
    servers[0].stop()
    time.sleep(1.0)
    start_server(port)


def handler(op, args, session):
    if op == "media.status":
        return status(args["hash"])
    if op == "media.upload":
        got = partial.setdefault(args["hash"], b"")
        if args["offset"] != len(got):
            raise bridge.BridgeError("bad_offset", f"expected offset {len(got)}")
        partial[args["hash"]] = got + args["data"]
        accepted.append((args["offset"], len(args["data"])))
        if len(accepted) == 1:  # the connection breaks after the first chunk
            threading.Thread(target=bounce, daemon=True).start()
        if len(partial[args["hash"]]) == args["size"]:
            if hashlib.sha256(partial[args["hash"]]).hexdigest() != args["hash"]:
                raise bridge.BridgeError("hash_mismatch", "not the file announced")
            blobs.add(args["hash"])
        return status(args["hash"])
    if op == "job.list":
        return {"jobs": []}
    if op == "job.start":
        started.append(args)
        return {"id": "j1", "kind": args["kind"], "state": "done", "progress": 1.0, "params": args["params"],
                "result": {}, "error": None, "created": time.time()}
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
size = os.path.getsize(clip)
offsets = sorted(accepted)
_blender.emit(size=size, accepted=offsets, contiguous=all(a[0] + a[1] == b[0] for a, b in zip(offsets, offsets[1:])),
              blobs=len(blobs), params=[a["params"] for a in started], transfers=results.transfers(),
              jobs=[j["state"] for j in done], digest=hashlib.sha256(open(clip, "rb").read()).hexdigest())
servers[0].stop()
