"""Disconnect while a request waits for its upload: the link fails its pending requests as it ends,
and the upload, stopped by the same Disconnect, fails its request too. The request must be
answered once. A fake engine (the extension's own bridge server) answers media.status only after
the Disconnect; the add-on's inbox is wrapped so the upload's answer is posted after the link's
own ending has had its chance to run (the widest the race can be)."""

import importlib
import os
import queue
import sys
import threading

import bpy  # noqa: F401 - loads Blender, whose modules _blender needs

import _blender

clip = sys.argv[1]
_blender.enable()
bridge = importlib.import_module(f"{_blender.MODULE}.bridge")
engine_link = _blender.submodule("engine_link")
asked, release = threading.Event(), threading.Event()


def handler(op, args, session):
    if op == "job.list":
        return {"jobs": []}
    if op == "media.status":
        asked.set()
        release.wait(30)  # the upload is inside this call when the user disconnects
        return {"hash": args["hash"], "present": False, "received": 0, "path": None}
    raise bridge.BridgeError("unknown_op", op)


server = bridge.BridgeServer(handler, token="t", engine_info={"name": "fake", "version": "0"})
server.start()
link = engine_link.EngineLink()
link.connect(engine_link.LinkConfig(mode="REMOTE", host="127.0.0.1", port=server.port, token="t"))
seen = []
while True:
    message = link.inbox.get(timeout=20)
    if isinstance(message, engine_link.Connection) and message.state == "CONNECTED":
        break
link.request("job.start", {"kind": "extract", "params": {"video": os.path.abspath(clip)}}, {"label": "Extract"})
_blender.check(asked.wait(20), "the upload asked the engine for the clip")

ended = threading.Event()  # the link has posted its end (and its failures of what was pending)
post = link._post


def posting(message):
    if isinstance(message, engine_link.Connection) and message.state in ("DISCONNECTED", "FAILED"):
        post(message)
        ended.set()
        return
    if isinstance(message, engine_link.RequestFailed) and threading.current_thread().name == "swapline-transfers":
        ended.wait(5)  # let the link's ending run first, if it can
    post(message)


link._post = posting
worker = link._transfers
link.disconnect()
link._thread.join(20)
worker._thread.join(20)
release.set()
server.stop()
while True:
    try:
        message = link.inbox.get_nowait()
    except queue.Empty:
        break
    seen.append([type(message).__name__, *[str(v) for v in message[:3]]])
failed = [m for m in seen if m[0] == "RequestFailed" and m[1] == "job.start"]
_blender.emit(failed=failed, seen=seen, pending=link.pending_tags(), state=link.state)
