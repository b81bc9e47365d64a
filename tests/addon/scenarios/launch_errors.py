"""Operators' error paths: nothing marked, no engine Python, an engine that crashes, hangs or
points to a dead port, a remote engine that is unreachable. Nothing may block the main thread."""

import os
import socket
import sys
import time

import bpy

import _blender

clip, fakes = sys.argv[1], sys.argv[2]
sync = _blender.enable()
prefs = _blender.preferences()
scene = _blender.new_scene()
scene.swapline.workspace = os.path.join(os.getcwd(), "workspace")
st = bpy.context.window_manager.swapline
out = {"seconds": {}}


def timed(key, op, **kwargs):
    result, error = _blender.call(op, **kwargs)
    out["seconds"][key] = _blender.call.last_seconds
    return result, error


def pid_alive(path):
    deadline = time.monotonic() + 10
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.05)
    pid = int(open(path).read())
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        time.sleep(0.1)
    return True


# Nothing marked: clear reports, and no engine is launched for it
out["extract_unmarked"] = timed("extract_unmarked", bpy.ops.swapline.extract)[1]
out["merge_unmarked"] = timed("merge_unmarked", bpy.ops.swapline.merge_shot)[1]
out["stop_idle"] = timed("stop_idle", bpy.ops.swapline.train_stop)[1]
src = scene.sequence_editor.strips.new_movie(name="Src", filepath=clip, channel=1, frame_start=1)
src.swapline_role = "SOURCE"
out["extract_no_destination"] = timed("extract_no_destination", bpy.ops.swapline.extract)[1]
dst = scene.sequence_editor.strips.new_movie(name="Dst", filepath=clip, channel=2, frame_start=1)
dst.swapline_role = "DESTINATION"
out["state_after_validation"] = sync.link().state

# No engine Python at the configured path
prefs.python_path = os.path.join(fakes, "no-such-python")
out["missing_python"] = timed("missing_python", bpy.ops.swapline.extract)[1]
out["state_after_missing_python"] = sync.link().state

# An engine that dies on start: its last stderr line and exit code reach the status
prefs.python_path = os.path.join(fakes, "crash.sh")
timed("connect_crash", bpy.ops.swapline.connect)
_blender.drain_until(sync, lambda: st.connection == "FAILED", 20)
out["crash"] = [st.connection, st.connection_message, st.last_error]

# An engine that reports a port nobody listens on: the queued extract fails, the process is stopped
prefs.python_path = os.path.join(fakes, "wrong_port.sh")
out["extract_wrong_port"] = sorted(timed("extract_wrong_port", bpy.ops.swapline.extract)[0])
try:
    sync.wait_for_jobs("extract", timeout=30)
    out["wait_wrong_port"] = "no error"
except sync.JobError as exc:
    out["wait_wrong_port"] = str(exc)
out["wrong_port_state"] = [st.connection, st.connection_message]
out["wrong_port_engine_alive"] = pid_alive(os.path.join(os.getcwd(), "workspace", "wrong_port.pid"))

# An engine that never gets ready: Disconnect cancels the launch and stops the process
prefs.python_path = os.path.join(fakes, "hang.sh")
timed("connect_hang", bpy.ops.swapline.connect)
_blender.drain_until(sync, lambda: st.connection == "CONNECTING", 5)
out["hang_connecting"] = st.connection_message
time.sleep(0.5)
timed("disconnect_hang", bpy.ops.swapline.disconnect)
_blender.drain_until(sync, lambda: st.connection == "DISCONNECTED", 20)
out["hang_state"] = st.connection
out["hang_engine_alive"] = pid_alive(os.path.join(os.getcwd(), "workspace", "hang.pid"))

# A remote engine that is not there
with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    free_port = s.getsockname()[1]
prefs.engine_mode, prefs.port = "REMOTE", free_port
timed("connect_remote", bpy.ops.swapline.connect)
_blender.drain_until(sync, lambda: st.connection == "FAILED", 20)
out["remote"] = [st.connection, st.connection_message, free_port]
_blender.disable()
_blender.emit(**out)
