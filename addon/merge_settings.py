"""Blender layer: the merge options of a shot, on its destination strip (`strip.swapline_merge`), and
how they (and their keyframes) become the settings dict the engine's merge job and preview take.

Keyframes: properties of a PropertyGroup on a strip cannot make their own animation path (bpy 5.0.1:
"does not support path creation"), so they are keyed through the scene, whose path to them is
`sequence_editor.strips_all["<strip>"].swapline_merge.<option>` (`option_path`); the Merge panel's
key buttons do that. Blender 5.0 actions are layered: the scene's F-curves sit in the channelbag of
its action slot. `settings_for` samples each animated option at every source frame of the range the
merge covers (a Bezier curve is followed exactly, not only at its keys) and drops the samples that
linear interpolation gives back, so a constant or linear stretch costs two keys.

Also here: the scene's merge outputs (`scene.swapline_merge_outputs`) and the live preview's state
(`window_manager.swapline_live`: on/off, the latest latencies; not saved).
"""

from __future__ import annotations

import bpy
from bpy.props import BoolProperty, FloatProperty, IntProperty, PointerProperty, StringProperty

from . import live_preview
from .properties import option_property
from .merge_options import BY_NAME, CUSTOM_MASK, OPTIONS, clamp, custom_mask, plain, simplify

PREFIX = "swapline_merge"


def _changed(self, context) -> None:
    live_preview.on_settings_changed(context)


def _toggled(self, context) -> None:
    live_preview.on_toggle(context)


def _option_property(option):
    """The Blender property of one merge option; only the ones the engine animates can be keyed."""
    return option_property(option, update=_changed, options={"ANIMATABLE"} if option.animatable else set())


SwaplineMergeSettings = type("SwaplineMergeSettings", (bpy.types.PropertyGroup,), {
    "__doc__": "How this destination shot is merged (every engine merge option; numbers can be keyframed)",
    "__annotations__": {**{o.name: _option_property(o) for o in OPTIONS},
                        # the product the Mask choice "Custom" sends (not an engine field itself)
                        "mask_custom": StringProperty(
                            name="Custom Mask", default="pred*dst", update=_changed,
                            description="With Mask set to Custom: the masks multiplied, any of hull, pred, dst, "
                            "seg-pred, seg-dst joined by '*' (e.g. hull*pred*seg-dst)")},
})


class SwaplineMergeOutputs(bpy.types.PropertyGroup):
    """What Merge Shot writes besides the face layer and its matte (the scene's choice, saved)."""

    frames: BoolProperty(name="Full Frames", description="Also write the full merged frames as PNGs (for "
                         "another editor or compositor); the timeline uses the face layer either way")
    video: BoolProperty(name="MP4", description="Also write the merged shot as an H.264 MP4 with the source's "
                        "audio, straight from the engine (Blender's render does the edit)")


class SwaplineLivePreview(bpy.types.PropertyGroup):
    """The live preview: the user's toggle and what it measured (this session only)."""

    enabled: BoolProperty(name="Live Preview", update=_toggled,
                          description="Re-merge the current frame whenever it or a merge option changes, with the "
                          "face layer strip or its destination active (needs a trained model and the "
                          "destination faceset)")
    median_ms: FloatProperty(default=-1.0, description="Median of the last 50 preview latencies (frame change to "
                             "frame shown); -1: none yet")
    last_ms: FloatProperty(default=-1.0)
    count: IntProperty(description="Previews shown since the toggle went on")
    frame: IntProperty(default=-1, description="Source frame of the last preview shown")
    message: StringProperty()


def option_path(strip, name: str) -> str:
    """The scene-relative path of a strip's merge option: what its F-curve is keyed under."""
    return f'{strip.path_from_id()}.{PREFIX}.{name}'


def fcurves_of(scene, strip) -> dict:
    """The strip's merge options that have an F-curve in the scene's action: option name -> F-curve."""
    data = scene.animation_data
    action = data.action if data is not None else None
    if action is None:
        return {}
    from bpy_extras import anim_utils

    channelbag = anim_utils.action_get_channelbag_for_slot(action, data.action_slot)
    if channelbag is None:
        return {}
    prefix = f"{strip.path_from_id()}.{PREFIX}."
    found = {}
    for fcurve in channelbag.fcurves:
        name = fcurve.data_path[len(prefix):] if fcurve.data_path.startswith(prefix) else ""
        if name in BY_NAME and BY_NAME[name].animatable and not fcurve.mute and len(fcurve.keyframe_points):
            found[name] = fcurve
    return found


def keyframe(scene, strip, name: str, delete: bool = False) -> bool:
    """Key (or un-key) an option at the current frame; False when there was nothing to delete."""
    path = option_path(strip, name)
    if delete:
        try:
            return scene.keyframe_delete(path)
        except RuntimeError:
            return False
    return scene.keyframe_insert(path)


def has_key_at(fcurve, frame: float) -> bool:
    return any(abs(point.co[0] - frame) < 0.5 for point in fcurve.keyframe_points)


def clear_keys(scene, strip, names=None) -> int:
    """Remove the F-curves of these options (all when None); returns how many went."""
    data = scene.animation_data
    curves = fcurves_of(scene, strip)
    if not curves:
        return 0
    from bpy_extras import anim_utils

    channelbag = anim_utils.action_get_channelbag_for_slot(data.action, data.action_slot)
    removed = 0
    for name, fcurve in curves.items():
        if names is None or name in names:
            channelbag.fcurves.remove(fcurve)
            removed += 1
    return removed


def values_of(strip) -> dict:
    """Every option's current value (at the frame the scene is on), as the engine wants it; ValueError
    when the Mask is Custom and its text is not a product the engine takes."""
    group = getattr(strip, PREFIX)
    values = {o.name: plain(o, getattr(group, o.name)) for o in OPTIONS}
    if values["mask"] == CUSTOM_MASK:
        values["mask"] = custom_mask(group.mask_custom, values["seg_model"])
    return values


def mask_problem(strip) -> str:
    """Why the shot's Custom Mask cannot be sent ('' when it can, or the Mask is not Custom)."""
    group = getattr(strip, PREFIX)
    if group.mask != CUSTOM_MASK:
        return ""
    try:
        custom_mask(group.mask_custom, group.seg_model)
    except ValueError as exc:
        return str(exc)
    return ""


def settings_for(scene, strip, frame_range: tuple[int, int]) -> dict:
    """The engine's merge settings for the source frames [start, end) of `strip`: plain values plus
    `keys` {option: [[source frame, value], ...]} sampled from its F-curves (source frame = timeline
    frame - strip.frame_start, as strips.source_range counts them)."""
    values = values_of(strip)
    start, end = frame_range
    offset = round(strip.frame_start)
    keys = {}
    for name, fcurve in fcurves_of(scene, strip).items():
        option = BY_NAME[name]
        pairs = [[frame, clamp(option, float(fcurve.evaluate(frame + offset)))] for frame in range(start, end)]
        if pairs:
            keys[name] = simplify(pairs)
    values["keys"] = keys
    return values


def reset(strip, names=None) -> None:
    """Options back to their defaults (all, or the names given)."""
    group = getattr(strip, PREFIX)
    for option in OPTIONS:
        if names is None or option.name in names:
            setattr(group, option.name, option.default)
    if names is None or "mask" in names:
        group.mask_custom = "pred*dst"


classes = (SwaplineMergeSettings, SwaplineMergeOutputs, SwaplineLivePreview)


def register() -> None:
    for cls in classes:
        bpy.utils.register_class(cls)
    bpy.types.Strip.swapline_merge = PointerProperty(type=SwaplineMergeSettings)
    bpy.types.Scene.swapline_merge_outputs = PointerProperty(type=SwaplineMergeOutputs)
    bpy.types.WindowManager.swapline_live = PointerProperty(type=SwaplineLivePreview)
    live_preview.register()


def unregister() -> None:
    live_preview.unregister()
    del bpy.types.WindowManager.swapline_live
    del bpy.types.Scene.swapline_merge_outputs
    del bpy.types.Strip.swapline_merge
    for cls in reversed(classes):
        bpy.utils.unregister_class(cls)
