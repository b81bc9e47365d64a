"""An upload that loses its connection half-way resumes from what the engine has: a fake engine
(the extension's own bridge server) keeps the chunks it got and drops the uploading connection
after the first one; the add-on uploads again on a new connection from there; the job goes out with the clip's path in the engine's workspace.
Then a .dfm export: the engine writes it in its workspace, the add-on fetches it to the asked path."""

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
        got = partial.setdefault(args["hash"], b"")
        if args["offset"] != len(got):
            raise bridge.BridgeError("bad_offset", f"expected offset {len(got)}")
        partial[args["hash"]] = got + args["data"]
        accepted.append((args["offset"], len(args["data"])))
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
size = os.path.getsize(clip)
offsets = sorted(accepted)
_blender.emit(size=size, accepted=offsets, contiguous=all(a[0] + a[1] == b[0] for a, b in zip(offsets, offsets[1:])),
              blobs=len(blobs), params=[a["params"] for a in started], transfers=results.transfers(),
              jobs=[j["state"] for j in done], digest=hashlib.sha256(open(clip, "rb").read()).hexdigest(),
              exported=[j["state"] for j in exported], dfm_ok=open(dfm, "rb").read() == DFM)
servers[0].stop()
