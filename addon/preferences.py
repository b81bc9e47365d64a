"""Blender layer: machine settings (where the engine runs and how to reach it) as add-on preferences."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from types import SimpleNamespace

import bpy

from . import engine_process
from .engine_link import LinkConfig

ADDON_ID = __package__.rpartition(".")[0]  # the extension's module: "bl_ext.<repo>.swapline"
EXTENSION_ROOT = Path(__file__).resolve().parents[1]


class SwaplinePreferences(bpy.types.AddonPreferences):
    bl_idname = ADDON_ID

    engine_mode: bpy.props.EnumProperty(
        name="Engine",
        items=[("LOCAL", "Launch Local Engine", "Start an engine process on this machine when needed"),
               ("REMOTE", "Connect to Engine", "Connect to an engine that is already running (host, port, token)")],
        default="LOCAL",
    )
    python_path: bpy.props.StringProperty(
        name="Engine Python",
        description="Python interpreter of the engine's environment (torch etc.); "
                    "empty: the .venv next to the extension",
        subtype="FILE_PATH",
    )
    launch_timeout: bpy.props.FloatProperty(
        name="Launch Timeout", description="Seconds to wait for a local engine to report ready",
        default=120.0, min=5.0, soft_max=600.0, subtype="TIME_ABSOLUTE", unit="TIME_ABSOLUTE",
    )
    host: bpy.props.StringProperty(name="Host", default="127.0.0.1")
    port: bpy.props.IntProperty(name="Port", default=5573, min=1, max=65535)
    token: bpy.props.StringProperty(name="Token", subtype="PASSWORD",
                                    description="The token the remote engine was started with")
    use_tls: bpy.props.BoolProperty(name="TLS", description="Encrypt the connection (the engine runs `serve --tls`)")
    tls_fingerprint: bpy.props.StringProperty(
        name="Certificate Fingerprint",
        description="SHA-256 of the engine's certificate, as `serve --tls` prints it: only that engine is trusted",
    )
    use_discovery: bpy.props.BoolProperty(
        name="Find engines on the network",
        description="Look for Swapline engines that announce themselves on the local network (mDNS). "
                    "Needs Blender's Allow Online Access",
        default=False,
    )

    def draw(self, context):
        layout = self.layout
        layout.use_property_split = True
        layout.prop(self, "engine_mode")
        if self.engine_mode == "LOCAL":
            layout.prop(self, "python_path")
            if not self.python_path:
                layout.label(text=f"Default: {default_python()}", icon="INFO")
            layout.prop(self, "launch_timeout")
        else:
            layout.prop(self, "host")
            layout.prop(self, "port")
            layout.prop(self, "token")
            layout.prop(self, "use_tls")
            if self.use_tls:
                layout.prop(self, "tls_fingerprint")
        from . import discovery_ui  # it imports this module for get_preferences

        discovery_ui.draw_discovery(layout.box(), context, self)


def get_preferences(context=None):
    context = context or bpy.context
    addon = context.preferences.addons.get(ADDON_ID)
    if addon is not None and addon.preferences is not None:
        return addon.preferences
    # Registered without Blender's add-on system (a script calling register()): the declared defaults.
    declared = SwaplinePreferences.bl_rna.properties
    return SimpleNamespace(**{name: declared[name].default for name in SwaplinePreferences.__annotations__})


def default_python() -> Path:
    return engine_process.default_python(EXTENSION_ROOT)


def workspace_dir(scene) -> str:
    """The scene's workspace override, else `<blend name>_swapline` beside the .blend, else a temp folder."""
    override = scene.swapline.workspace if scene is not None else ""
    if override:
        return os.path.abspath(bpy.path.abspath(override))
    if bpy.data.filepath:
        blend = Path(bpy.data.filepath)
        return str(blend.with_name(f"{blend.stem}_swapline"))
    # Per Blender process: two unsaved sessions must not share one engine workspace.
    return os.path.join(tempfile.gettempdir(), f"swapline-unsaved-{os.getpid()}")


def link_config(context, scene) -> LinkConfig:
    prefs = get_preferences(context)
    python = bpy.path.abspath(prefs.python_path) if prefs.python_path else str(default_python())
    # A checkout runs the engine from its source tree; an installed extension needs the engine
    # installed in that Python (pip install), so run it from the workspace instead.
    cwd = str(EXTENSION_ROOT) if (EXTENSION_ROOT / "engine").is_dir() else ""
    return LinkConfig(mode=prefs.engine_mode, host=prefs.host, port=prefs.port, token=prefs.token,
                      python=python, workspace=workspace_dir(scene), cwd=cwd,
                      launch_timeout=prefs.launch_timeout, use_tls=prefs.use_tls,
                      tls_fingerprint=prefs.tls_fingerprint.strip())


classes = (SwaplinePreferences,)
