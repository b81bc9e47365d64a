"""Enable, inspect, disable and re-enable the extension like Blender's add-on system does."""

import os
import sys
import types

import bpy

import _blender

sync = _blender.enable()
prefs = _blender.preferences()
scene = _blender.new_scene()
wm = bpy.context.window_manager
link_module = type(sync.link()).__module__
bridge_client = sys.modules[f"{_blender.MODULE}.addon.engine_link"].BridgeClient
registered = {
    "panel": hasattr(bpy.types, "SEQUENCER_PT_swapline"),
    "panel_space": getattr(bpy.types.SEQUENCER_PT_swapline, "bl_space_type", None),
    "panel_region": getattr(bpy.types.SEQUENCER_PT_swapline, "bl_region_type", None),
    "panel_category": getattr(bpy.types.SEQUENCER_PT_swapline, "bl_category", None),
    "operators": sorted(name for name in dir(bpy.ops.swapline) if not name.startswith("_")),
    "strip_role": bpy.types.Strip.bl_rna.properties.get("swapline_role") is not None,
    "timer": bpy.app.timers.is_registered(sync.drain_timer),
    "connection": wm.swapline.connection,
    "defaults": {name: getattr(scene.swapline, name) for name in
                 ("source_faceset", "destination_faceset", "model", "resolution", "batch_size", "iterations")},
    "engine_mode": prefs.engine_mode,
    "default_python": str(sys.modules[f"{_blender.MODULE}.addon.preferences"].default_python()),
    "bridge_module": bridge_client.__module__,
    "heavy_modules": sorted(m for m in ("torch", "cv2", "engine") if m in sys.modules),
    "drained": sync.drain(),
}
preferences = sys.modules[f"{_blender.MODULE}.addon.preferences"]
# registered without Blender's add-on system: no entry in preferences.addons
no_addons = types.SimpleNamespace(preferences=types.SimpleNamespace(addons={}))
registered["fallback_prefs"] = vars(preferences.get_preferences(no_addons))
workspaces = {"unsaved": preferences.workspace_dir(scene), "pid": os.getpid()}
bpy.ops.wm.save_as_mainfile(filepath=os.path.join(os.getcwd(), "shot.blend"))
scene = bpy.context.scene
workspaces["saved"] = preferences.workspace_dir(scene)
scene.swapline.workspace = "//elsewhere"
workspaces["override"] = preferences.workspace_dir(scene)
config = preferences.link_config(bpy.context, scene)
workspaces["config"] = [config.mode, config.python, config.workspace, config.cwd]
_blender.disable()
after_disable = {
    "panel": hasattr(bpy.types, "SEQUENCER_PT_swapline"),
    "strip_role": bpy.types.Strip.bl_rna.properties.get("swapline_role") is not None,
    "scene_settings": hasattr(bpy.types.Scene, "swapline"),
    "timer": bpy.app.timers.is_registered(sync.drain_timer),
}
sync = _blender.enable()
again = {"panel": hasattr(bpy.types, "SEQUENCER_PT_swapline"), "timer": bpy.app.timers.is_registered(sync.drain_timer)}
_blender.disable()
_blender.emit(registered=registered, after_disable=after_disable, again=again, workspaces=workspaces)
