"""Blender layer: finding engines on the LAN (opt-in) and choosing one: operators, the list, its drain.

A search runs browse_engines() (it blocks for a few seconds) on a worker thread, which posts the result
to a queue; `drain_found()`, a bpy.app.timers callback on the main thread, is the only writer of the
found list. Timers never fire in background runs, so headless callers use `finish_search()`.
Nothing touches the network unless the user turned discovery on and Blender allows online access.
"""

from __future__ import annotations

import queue
import threading

import bpy

from ..bridge import BridgeError, DiscoveredEngine, browse_engines
from .preferences import get_preferences

SEARCH_SECONDS = 2.0
POLL = 0.2  # seconds between timer checks while a search runs
TOGGLE_OFF = "Turn on 'Find engines on the network' in the Swapline preferences first"
ONLINE_OFF = "Allow Online Access is off in Preferences > System > Network"

_results: queue.Queue = queue.Queue()
_worker: threading.Thread | None = None


def discovery_refusal(prefs) -> str:
    """Why a LAN search may not run now, or "" when it may: the add-on's toggle, then Blender's setting."""
    if not prefs.use_discovery:
        return TOGGLE_OFF
    # bpy.app.online_access includes the --offline-mode / --online-mode command-line override.
    if not bpy.app.online_access:
        return ONLINE_OFF
    return ""


def searching() -> bool:
    return _worker is not None and _worker.is_alive()


def _load_words(engine: DiscoveredEngine) -> str:
    if engine.load is None:
        return ""
    running, queued = engine.load
    return f"{running} running, {queued} queued"


def _search(interfaces: list[str] | None, out: queue.Queue) -> None:
    try:
        out.put(browse_engines(SEARCH_SECONDS, interfaces=interfaces))
    except BridgeError as exc:
        out.put(exc)
    except Exception as exc:  # noqa: BLE001 - whatever zeroconf raises must reach the user, not the thread
        out.put(BridgeError("unreachable", f"searching the network failed: {exc}"))


def start_search(interfaces: list[str] | None = None) -> None:
    """Start a search on a worker thread; the caller has checked discovery_refusal() and searching()."""
    global _worker
    _worker = threading.Thread(target=_search, args=(interfaces, _results), name="swapline-discovery",
                               daemon=True)
    _worker.start()
    if not bpy.app.timers.is_registered(drain_found):
        bpy.app.timers.register(drain_found, first_interval=POLL)


def drain_found() -> float | None:
    """Write a finished search into `window_manager.swapline.found_engines`; main thread only.

    The timer's callback: returns POLL while the search runs, None (the timer ends) once applied.
    """
    alive = searching()  # read before the queue: a result posted after this read is still seen next time
    try:
        result = _results.get_nowait()
    except queue.Empty:
        return POLL if alive else None
    _apply(bpy.context.window_manager.swapline, result)
    return None


def finish_search(timeout: float = 15.0) -> bool:
    """Wait for the running search and apply it (for background runs, where timers never fire).

    Returns False when no result arrived within `timeout`.
    """
    if _worker is not None:
        _worker.join(timeout)
    if searching():
        return False
    try:
        result = _results.get_nowait()
    except queue.Empty:
        return False
    _apply(bpy.context.window_manager.swapline, result)
    return True


def _apply(status, result) -> None:
    status.discovering = False
    if isinstance(result, BridgeError):
        status.discovery_message = result.message
        return
    status.found_engines.clear()
    for engine in result:
        item = status.found_engines.add()
        item.name = engine.title
        item.host, item.port = engine.host, engine.port
        item.device, item.version, item.load = engine.device, engine.version, _load_words(engine)
        item.tls, item.protocol = engine.tls, engine.protocol or 0
    status.found_engine_index = min(status.found_engine_index, max(len(result) - 1, 0))
    count = len(result)
    status.discovery_message = (f"Found {count} engine{'s' if count != 1 else ''}" if count
                                else "No engines found on the network")
    _tag_redraw()


def _tag_redraw() -> None:
    for window in getattr(bpy.context.window_manager, "windows", []):
        for area in window.screen.areas:
            if area.type in ("PREFERENCES", "SEQUENCE_EDITOR"):
                area.tag_redraw()


class SWAPLINE_OT_find_engines(bpy.types.Operator):
    bl_idname = "swapline.find_engines"
    bl_label = "Find Engines"
    bl_description = "Look for Swapline engines on the local network for a few seconds"

    interfaces: bpy.props.StringProperty(
        options={"HIDDEN", "SKIP_SAVE"},
        description="IPv4 addresses of this machine to search on, comma-separated; empty: every interface",
    )

    def execute(self, context):
        refusal = discovery_refusal(get_preferences(context))
        if refusal:
            self.report({"ERROR"}, refusal)
            return {"CANCELLED"}
        if searching():
            self.report({"INFO"}, "Already searching the network")
            return {"CANCELLED"}
        status = context.window_manager.swapline
        status.discovering = True
        status.discovery_message = "Searching the network..."
        start_search([part.strip() for part in self.interfaces.split(",") if part.strip()] or None)
        return {"FINISHED"}


class SWAPLINE_OT_use_engine(bpy.types.Operator):
    bl_idname = "swapline.use_engine"
    bl_label = "Use This Engine"
    bl_description = "Connect to this engine from now on (enter the token it was started with)"

    index: bpy.props.IntProperty(default=-1, options={"HIDDEN", "SKIP_SAVE"},
                                 description="Which found engine; -1: the one selected in the list")

    def execute(self, context):
        status = context.window_manager.swapline
        index = self.index if self.index >= 0 else status.found_engine_index
        if not 0 <= index < len(status.found_engines):
            self.report({"ERROR"}, "Choose an engine in the list first")
            return {"CANCELLED"}
        found = status.found_engines[index]
        prefs = get_preferences(context)
        if (prefs.host, prefs.port) != (found.host, found.port):
            prefs.tls_fingerprint = ""  # it pinned another engine's certificate
        prefs.host, prefs.port, prefs.use_tls = found.host, found.port, found.tls
        prefs.engine_mode = "REMOTE"
        context.preferences.is_dirty = True  # so Blender's auto-save keeps the choice
        needs = "its token and certificate fingerprint" if found.tls else "its token"
        self.report({"INFO"}, f"Swapline will use {found.name} at {found.host}:{found.port}: enter {needs}")
        return {"FINISHED"}


class SWAPLINE_UL_found_engines(bpy.types.UIList):
    def draw_item(self, context, layout, data, item, icon, active_data, active_propname, index=0, flt_flag=0):
        row = layout.row(align=True)
        row.label(text=item.name, icon="LOCKED" if item.tls else "URL")
        row.label(text=f"{item.host}:{item.port}")
        row.label(text=item.device)
        row.label(text=item.version)
        row.label(text=item.load or "-")


def draw_discovery(layout, context, prefs) -> None:
    """The preferences' discovery box: the toggle, the search button and what it found."""
    layout.prop(prefs, "use_discovery")
    if not prefs.use_discovery:
        return
    status = context.window_manager.swapline
    if not bpy.app.online_access:
        layout.label(text=ONLINE_OFF, icon="ERROR")
    row = layout.row()
    row.enabled = bpy.app.online_access and not status.discovering
    row.operator("swapline.find_engines", icon="VIEWZOOM")
    if status.discovery_message:
        layout.label(text=status.discovery_message, icon="SORTTIME" if status.discovering else "INFO")
    if not len(status.found_engines):
        return
    layout.template_list("SWAPLINE_UL_found_engines", "", status, "found_engines", status, "found_engine_index",
                         rows=3)
    if 0 <= status.found_engine_index < len(status.found_engines):
        found = status.found_engines[status.found_engine_index]
        col = layout.column(align=True)
        col.label(text=f"{found.device or 'device not announced'}  ·  version {found.version or '?'}")
        col.label(text=f"Load: {found.load or 'not announced'}  ·  {'TLS' if found.tls else 'no TLS'}")
        col.operator("swapline.use_engine", icon="LINKED")


classes = (SWAPLINE_OT_find_engines, SWAPLINE_OT_use_engine, SWAPLINE_UL_found_engines)


def unregister() -> None:
    # A search may still be running: its result must not reach a WindowManager without our properties.
    if bpy.app.timers.is_registered(drain_found):
        bpy.app.timers.unregister(drain_found)
    while True:
        try:
            _results.get_nowait()
        except queue.Empty:
            break
