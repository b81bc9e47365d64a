"""Finding engines on the LAN: the search refuses while the toggle or Blender's online access is off;
with both on ("find" mode) a real announcement on loopback is found, listed, drawn and chosen."""

import importlib
import os
import sys

import bpy

import _blender
import _layout

mode = sys.argv[1]  # "refuse": no network at all; "find": also search loopback
LOOPBACK = "127.0.0.1"
sync = _blender.enable()
bridge_discovery = importlib.import_module(f"{_blender.MODULE}.bridge.discovery")
discovery_ui = _blender.submodule("discovery_ui")
preferences_module = _blender.submodule("preferences")
panels = _blender.submodule("panels")
EL = _blender.submodule("engine_link")
prefs = _blender.preferences()
system = bpy.context.preferences.system
st = bpy.context.window_manager.swapline
scene = _blender.new_scene()


def op(operator, **kwargs) -> list:
    """[sorted result or None, the error text]: background Blender raises an operator's ERROR report."""
    done, error = _blender.call(operator, **kwargs)
    return [sorted(done) if done else None, error]


def draw_box() -> _layout.Recording:
    recording = _layout.Recording()
    discovery_ui.draw_discovery(_layout.Layout(recording), bpy.context, prefs)
    return recording


result = {"default_toggle": prefs.use_discovery, "closed_box": draw_box().calls}
system.use_online_access = True
result["toggle_off"] = op(bpy.ops.swapline.find_engines)
prefs.use_discovery = True
system.use_online_access = False
result["online_off"] = op(bpy.ops.swapline.find_engines)
result["online_off_labels"] = draw_box().labels
result["searching_after_refusals"] = discovery_ui.searching()
result["drain_idle"] = discovery_ui.drain_found()

if mode == "find":
    system.use_online_access = True
    suffix = f"scenario {os.getpid()}"
    info = {"name": f"swapline@gpu.{suffix}", "version": "9.9.9", "device": "NVIDIA H100 (80 GiB)", "tls": True}
    advertiser = bridge_discovery.advertise_engine(info, 47321, lambda: {"running": 1, "queued": 2},
                                                   addresses=[LOOPBACK])
    try:
        runs = []
        for _ in range(4):  # mDNS is best effort: a packet lost on a busy machine costs one more search
            runs.append(op(bpy.ops.swapline.find_engines, interfaces=LOOPBACK))
            runs.append(st.discovering)
            runs.append(discovery_ui.finish_search())
            if any(item.name == info["name"] for item in st.found_engines):
                break
    finally:
        advertiser.stop()
    result["runs"] = runs
    result["message"] = st.discovery_message
    ours = [i for i, item in enumerate(st.found_engines) if item.name == info["name"]]
    _blender.check(len(ours) == 1, f"not found: {[item.name for item in st.found_engines]} {runs}")
    item = st.found_engines[ours[0]]
    result["found"] = [item.name, item.host, item.port, item.device, item.version, item.load, item.tls,
                       item.protocol]
    st.found_engine_index = ours[0]
    box = draw_box()
    row = _layout.Recording()
    discovery_ui.SWAPLINE_UL_found_engines.draw_item(None, bpy.context, _layout.Layout(row), st, item, 0, st,
                                                     "found_engine_index", ours[0])
    result["box"] = {"calls": box.calls, "labels": box.labels, "operators": [op for op, _ in box.operators],
                     "problems": box.problems + row.problems, "row": row.labels}

    prefs.host, prefs.port, prefs.token, prefs.tls_fingerprint = "10.9.9.9", 1, "typed-token", "ab" * 32
    result["use"] = op(bpy.ops.swapline.use_engine)
    config = preferences_module.link_config(bpy.context, scene)
    result["prefs"] = [prefs.engine_mode, prefs.host, prefs.port, prefs.use_tls, prefs.tls_fingerprint, prefs.token]
    result["config"] = [config.mode, config.host, config.port, config.use_tls, config.tls_fingerprint, config.token]

    # The engine box of a connected remote engine: device, version and the live load.
    sync.link().inbox.put(EL.Connection("CONNECTED", "Connected", {
        "name": info["name"], "version": "9.9.9", "device": "NVIDIA H100 (80 GiB)", "workspace": "/ws"}))
    for job_id, state in (("a", "running"), ("b", "queued"), ("c", "done")):
        sync.link().inbox.put(EL.JobUpdate({"id": job_id, "kind": "extract", "state": state, "progress": 0.0,
                                            "created": 1.0, "params": {}, "stats": {}, "message": ""}))
    sync.drain(budget=None)
    panel = _layout.Recording().draw(panels.SEQUENCER_PT_swapline)
    result["panel"] = {"labels": panel.labels, "problems": panel.problems}

result["no_choice"] = op(bpy.ops.swapline.use_engine, index=99)
_blender.emit(**result)
_blender.disable()
