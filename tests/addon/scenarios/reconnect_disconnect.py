"""The user presses Disconnect while the link is shaking hands with an engine that came back: a
request queued during the outage must not reach the engine (it is reported as not sent), and the
link never says CONNECTED. A fake engine (the extension's own bridge server) on a fixed port."""

import importlib
import queue
import time

import bpy  # noqa: F401 - loads Blender, whose modules _blender needs

import _blender

_blender.enable()
bridge = importlib.import_module(f"{_blender.MODULE}.bridge")
engine_link = _blender.submodule("engine_link")

received: list[list] = []  # [server number, op] of every request any fake engine got


def server(number: int, port: int = 0):
    def handler(op, args, session):
        received.append([number, op])
        if op == "job.list":
            return {"jobs": []}
        if op == "job.start":
            return {"id": "j1", "kind": args.get("kind"), "state": "queued", "params": {}}
        raise bridge.BridgeError("unknown_op", op)

    srv = bridge.BridgeServer(handler, port=port, token="t", engine_info={"name": "fake", "version": "0"})
    srv.start()
    return srv


def next_message(link, kind, timeout=20.0):
    """The next inbox message of `kind` (a class), collecting everything seen on the way."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            message = link.inbox.get(timeout=0.1)
        except queue.Empty:
            continue
        seen.append([type(message).__name__, *[str(v) for v in message[:3]]])
        if isinstance(message, kind):
            return message
    raise SystemExit(f"no {kind} within {timeout} s; seen {seen}")


seen: list[list] = []
first = server(1)
port = first.port
link = engine_link.EngineLink()
link.connect(engine_link.LinkConfig(mode="REMOTE", host="127.0.0.1", port=port, token="t", connect_timeout=5.0))
while next_message(link, engine_link.Connection).state != "CONNECTED":
    pass
first.stop()  # the engine goes away: the link keeps trying
while next_message(link, engine_link.Connection).state != "CONNECTING":
    pass
link.request("job.start", {"kind": "extract", "params": {}}, {"label": "Queued while away"})

opened = link._open


def open_then_disconnect(*args, **kwargs):
    """The handshake succeeds, and the user pressed Disconnect while it ran."""
    result = opened(*args, **kwargs)
    link.disconnect()
    return result


link._open = open_then_disconnect
second = server(2, port)  # the engine is back on its port
seen.clear()
states = []
while True:
    message = next_message(link, (engine_link.Connection, engine_link.RequestFailed))
    if isinstance(message, engine_link.Connection):
        states.append(message.state)
        if message.state in ("DISCONNECTED", "FAILED"):
            break
link._thread.join(10)  # the link has closed its connection: what it sent is in the server's hands
deadline = time.monotonic() + 10
while second._threads and time.monotonic() < deadline:  # the server has handled all it read
    time.sleep(0.02)
second.stop()
while True:  # the answers the link posted as it ended
    try:
        message = link.inbox.get_nowait()
    except queue.Empty:
        break
    seen.append([type(message).__name__, *[str(v) for v in message[:3]]])
failed = [m for m in seen if m[0] == "RequestFailed"]
_blender.emit(states=states, received=received, failed=failed, pending=link.pending_tags(), seen=seen)
