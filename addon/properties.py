"""Blender layer: where each kind of state lives.

Per-.blend intent on the Scene (`scene.swapline`) and on strips (`strip.swapline_role`, ...);
live engine status on the WindowManager (`window_manager.swapline`, not saved, written only by
the drain in `sync.py`; the engines found on the LAN only by the drain in `discovery_ui.py`).
"""

from __future__ import annotations

import bpy
from bpy.props import (BoolProperty, CollectionProperty, EnumProperty, FloatProperty, IntProperty,
                       PointerProperty, StringProperty)

from .train_options import BY_NAME, ON_SCENE, OPTIONS, PRESET_ITEMS

ROLE_ITEMS = [
    ("NONE", "None", "Not used by Swapline"),
    ("SOURCE", "Source", "The face to put in: extracted into the source faceset"),
    ("DESTINATION", "Destination", "The shot to change: extracted, then merged"),
]

CONNECTION_ITEMS = [
    ("DISCONNECTED", "Disconnected", ""),
    ("CONNECTING", "Connecting", ""),
    ("CONNECTED", "Connected", ""),
    ("FAILED", "Failed", ""),
]

FACESET_ITEMS = [
    ("SOURCE", "Source", "Browse the source faceset"),
    ("DESTINATION", "Destination", "Browse the destination faceset"),
]

SORT_ITEMS = [
    ("frame", "Frame", "Shot and frame order"),
    ("sharpness", "Sharpness", "Sharpest first"),
    ("yaw", "Yaw", "Turned left to turned right"),
    ("pitch", "Pitch", "Looking down to looking up"),
    ("brightness", "Brightness", "Darkest to brightest"),
    ("histogram", "Similarity", "Similar-looking faces next to each other"),
]

SHOW_ITEMS = [
    ("CHOSEN", "Person", "The faces of the chosen person (what training uses)"),
    ("EVERYONE", "Everyone", "Every face in the faceset"),
    ("TRACK", "One Track", "The faces of one track"),
]

# NONE: never asked; LOADING: asked, no answer yet; MISSING: the engine has no such faceset
VIEW_STATE_ITEMS = [(name, name.capitalize(), "") for name in ("NONE", "LOADING", "MISSING", "READY")]
MASK_SPACE_ITEMS = [
    ("FACE", "Face", "Draw on the aligned face crop"),
    ("FRAME", "Frame", "Draw on the whole frame; the polygons are mapped onto the aligned face"),
]
# NONE: nothing open; LOADING: asked for the face; OPEN: in the Image Editor
MASK_EDIT_ITEMS = [(name, name.capitalize(), "") for name in ("NONE", "LOADING", "OPEN")]
THUMBNAIL_ITEMS = [
    ("PENDING", "Pending", "Not loaded yet"),
    ("LOADED", "Loaded", "In the preview collection"),
    ("MISSING", "Missing", "The image is not on this machine (remote engine) or gone"),
]


class SwaplineMergeRequest(bpy.types.PropertyGroup):
    """A merge this scene asked for: its result strip goes above `destination` when it is done."""

    job_id: StringProperty()
    destination: StringProperty(description="Name of the destination strip")


class SwaplineMatteRequest(bpy.types.PropertyGroup):
    """A matte this scene asked for: its image strip goes above `strip` when the job is done."""

    job_id: StringProperty()
    strip: StringProperty(description="Name of the strip the matte is for")
    grade: BoolProperty(description="Add a face grade (Color Balance masked by the matte) once placed")


def _percent(name: str, description: str, low: float = -50.0):
    return FloatProperty(name=name, description=description, default=0.0, min=low, max=50.0,
                         soft_min=max(low, -25.0), soft_max=25.0, subtype="PERCENTAGE")


class SwaplineMaskSettings(bpy.types.PropertyGroup):
    """Mask learning and matte shaping for this .blend (the user's intent, saved with the file)."""

    space: EnumProperty(name="Draw On", items=MASK_SPACE_ITEMS, default="FACE")
    model: StringProperty(name="Mask Model", default="xseg")
    resolution: EnumProperty(name="Resolution", items=[
        ("128", "128 px", "Trains in minutes on a CPU"), ("256", "256 px", "DeepFaceLab's XSeg size: use a GPU")],
        default="128")
    iterations: IntProperty(name="Iterations", default=3000, min=1, soft_max=100_000,
                            description="Train this many iterations on each press of Train, on top of what the "
                            "mask model has learned already (so labels added since are learned too)")
    minutes: FloatProperty(name="Time Budget (min)", description="Stop training after this many minutes; 0: no limit",
                           default=10.0, min=0.0, soft_max=240.0)
    erode: _percent("Erode", "Move the matte edge inward (negative: outward), in % of the face size")
    blur: _percent("Blur", "Soften the matte edge, in % of the face size", low=0.0)
    top: _percent("Top", "Erode (negative: grow) the top side only, in % of the face size")
    bottom: _percent("Bottom", "Erode (negative: grow) the bottom side only")
    left: _percent("Left", "Erode (negative: grow) the left side only")
    right: _percent("Right", "Erode (negative: grow) the right side only")
    temporal: FloatProperty(name="Temporal Smoothing", description="Smooth the matte over this many frames "
                            "(Gaussian sigma) so its edge does not shimmer; 0: off", default=1.0, min=0.0, soft_max=5.0)
    source: EnumProperty(name="Mask Source", items=[
        ("auto", "Best Available", "Drawn labels, then learned masks, then the landmark hull"),
        ("hull", "Landmark Hull", "The face outline from landmarks only")], default="auto")


def option_property(option, **common):
    """The Blender property of one option of an options table (train_options, merge_options): its
    tooltip says what it does and when to use it. `common` adds keyword arguments (update, options)."""
    common = {"name": option.label, "description": option.tip, "default": option.default, **common}
    limits = {k: v for k, v in option.extra.items() if k in ("min", "max", "soft_min", "soft_max", "step")}
    if "items" in option.extra:
        return EnumProperty(items=option.extra["items"], **common)
    if isinstance(option.default, bool):
        return BoolProperty(**common)
    if isinstance(option.default, int):
        return IntProperty(**common, **limits)
    if isinstance(option.default, str):
        return StringProperty(**common)
    return FloatProperty(**common, **limits, precision=option.extra.get("precision", 3))


# Every training option not kept on the scene's own settings (ON_SCENE), built from the one table.
SwaplineTrainOptions = type("SwaplineTrainOptions", (bpy.types.PropertyGroup,), {
    "__doc__": "Training options for this .blend (the user's intent; sent with Start, soft ones with Apply)",
    "__annotations__": {
        **{o.name: option_property(o) for o in OPTIONS if o.name not in ON_SCENE},
        "preset": EnumProperty(name="Preset", items=PRESET_ITEMS, default="quick",
                               description="A starting point: sets the model's shape and pace below"),
        "dfm_path": StringProperty(name="DFM File", subtype="FILE_PATH", default="//model.dfm",
                                   description="Where Export .dfm writes the model for DeepFaceLive "
                                   "(a path on the engine's machine; // is next to the .blend)"),
    },
})


class SwaplineSceneSettings(bpy.types.PropertyGroup):
    workspace: StringProperty(
        name="Workspace", subtype="DIR_PATH",
        description="Engine workspace folder; empty: '<blend name>_swapline' next to the .blend file",
    )
    source_faceset: StringProperty(name="Source Faceset", default="source")
    destination_faceset: StringProperty(name="Destination Faceset", default="destination")
    face_size: IntProperty(name="Face Size", description="Size of the extracted aligned faces in pixels",
                           default=512, min=64, max=1024)
    face_type: EnumProperty(
        name="Face Type", description="How much of the head an aligned face holds (DeepFaceLab's face types)",
        items=[("half", "Half", "Eyebrows to mouth"), ("mid_full", "Mid-Full", "A little more than half"),
               ("full", "Full", "The whole face, chin to brows"), ("whole_face", "Whole Face", "Full plus the forehead"),
               ("head", "Head", "The whole head, hair included")],
        default="full",
    )
    model: StringProperty(name="Model", default="model",
                          description="The model's name: training resumes it, merging and export use it")
    iterations: IntProperty(name="Iterations", default=2000, min=1, soft_max=1_000_000,
                            description=BY_NAME["iterations"].tip)
    time_budget: FloatProperty(name="Time Budget (min)", description=BY_NAME["time_budget"].tip,
                               default=0.0, min=0.0, soft_max=24 * 60.0)
    resolution: IntProperty(name="Resolution", description=BY_NAME["resolution"].tip,
                            default=64, min=16, max=640, step=16)
    batch_size: IntProperty(name="Batch Size", default=8, min=1, max=256, description=BY_NAME["batch_size"].tip)
    train: PointerProperty(type=SwaplineTrainOptions)
    merges: CollectionProperty(type=SwaplineMergeRequest)
    mattes: CollectionProperty(type=SwaplineMatteRequest)
    masks: PointerProperty(type=SwaplineMaskSettings)


class SwaplineJob(bpy.types.PropertyGroup):
    """Mirror of one engine job (the engine owns the real state)."""

    job_id: StringProperty()
    kind: StringProperty()
    label: StringProperty()
    state: StringProperty()
    progress: FloatProperty(min=0.0, max=1.0, subtype="FACTOR")
    message: StringProperty()
    eta: FloatProperty(default=-1.0)
    iteration: IntProperty(default=-1)
    loss: FloatProperty(default=-1.0, precision=5)
    error_code: StringProperty()
    error_message: StringProperty()
    created: FloatProperty()
    ours: BoolProperty(description="Started from this Blender session")


class SwaplineFoundEngine(bpy.types.PropertyGroup):
    """One engine announced on the LAN (its `name` is the engine's own); its word, not checked."""

    host: StringProperty()
    port: IntProperty()
    device: StringProperty(description="GPU name and memory, or the CPU")
    version: StringProperty()
    load: StringProperty(description="Jobs running and waiting when the engine last announced them")
    tls: BoolProperty(description="The engine takes TLS connections only")
    protocol: IntProperty(description="The bridge protocol version; 0: not announced")


class _Thumbnail:
    """An aligned face's image on the engine's machine and its preview here (loaded by the drain)."""

    face_id: IntProperty()
    image: StringProperty(subtype="FILE_PATH")
    icon_id: IntProperty()
    thumbnail: EnumProperty(items=THUMBNAIL_ITEMS, default="PENDING")


class SwaplineFace(_Thumbnail, bpy.types.PropertyGroup):
    """One face of the faceset page on show (the engine owns the real record)."""

    media_id: IntProperty()
    frame: IntProperty()
    track: IntProperty()
    yaw: FloatProperty()
    pitch: FloatProperty()
    sharpness: FloatProperty()


class SwaplineTrack(_Thumbnail, bpy.types.PropertyGroup):
    """One track (a person in one shot) of the faceset on show, with its representative face."""

    track: IntProperty()
    media_id: IntProperty()
    faces: IntProperty()
    first: IntProperty()
    last: IntProperty()
    sharpness: FloatProperty()
    chosen: BoolProperty()
    person: IntProperty(description="The person this track was recognised as (tracks of one person share it); 0: unknown")


class SwaplineFaceId(bpy.types.PropertyGroup):
    face_id: IntProperty()


class SwaplineFacesetView(bpy.types.PropertyGroup):
    """The faceset browser. What to show (which .. selection) is written by operators and the
    thumbnail size by the user; what the engine answered (state .. tracks) only by the drain."""

    which: EnumProperty(name="Faceset", items=FACESET_ITEMS, default="SOURCE")
    sort: EnumProperty(name="Sort", items=SORT_ITEMS, default="frame")
    show: EnumProperty(name="Show", items=SHOW_ITEMS, default="CHOSEN")
    track: IntProperty(description="The track on show when showing one track")
    offset: IntProperty(min=0)
    generation: IntProperty(description="Counts view requests; older answers are ignored")
    faceset: StringProperty(description="Name of the faceset on show")
    selection: CollectionProperty(type=SwaplineFaceId)
    thumbnail_scale: FloatProperty(name="Thumbnail Size", default=4.0, min=2.0, max=10.0)

    state: EnumProperty(items=VIEW_STATE_ITEMS, default="NONE")
    face_type: StringProperty()
    size: IntProperty()
    face_count: IntProperty()
    frame_count: IntProperty()
    track_count: IntProperty()
    total: IntProperty(description="Faces matching what is on show, over all pages")
    message: StringProperty(description="The outcome of the last faceset action")
    faces: CollectionProperty(type=SwaplineFace)
    tracks: CollectionProperty(type=SwaplineTrack)


class SwaplineMaskPreview(_Thumbnail, bpy.types.PropertyGroup):
    """A face of the page on show with its mask overlaid (engine's mask.preview)."""

    source: StringProperty(description="Where the mask came from: label, learned, imported or hull")


class SwaplineMaskState(bpy.types.PropertyGroup):
    """Live mask status: labels of the faceset on show, the face open in the Image Editor, previews.
    Written by the drain from the engine's answers, except show_previews (the user's toggle)."""

    faceset: StringProperty(description="The faceset the label counts are for")
    labelled: CollectionProperty(type=SwaplineFaceId)
    labelled_count: IntProperty()
    face_count: IntProperty()
    counted: BoolProperty(description="The label counts were answered")
    edit: EnumProperty(items=MASK_EDIT_ITEMS, default="NONE")
    face_id: IntProperty(default=-1, description="The face open in the Image Editor")
    open_faceset: StringProperty()
    space: EnumProperty(items=MASK_SPACE_ITEMS, default="FACE", description="What the open face is drawn on")
    image: StringProperty(subtype="FILE_PATH", description="The open image on the engine's machine")
    crop: StringProperty(subtype="FILE_PATH")
    width: IntProperty()
    height: IntProperty()
    size: IntProperty(description="Side of the face's aligned crop")
    message: StringProperty()
    then_page: IntProperty(description="Previous/Next turned the page: open its first (1) or last (-1) face")
    then_space: EnumProperty(items=MASK_SPACE_ITEMS, default="FACE")
    show_previews: BoolProperty(name="Show Masks", description="Show each face with its mask overlaid")
    previews: CollectionProperty(type=SwaplineMaskPreview)


class SwaplineTrainState(bpy.types.PropertyGroup):
    """Live training status: the followed training job's numbers and its pictures (drain only)."""

    job_id: StringProperty(description="The training job on show (the newest)")
    kind: StringProperty()
    model: StringProperty()
    state: StringProperty()
    created: FloatProperty()
    phase: StringProperty()
    iteration: IntProperty(default=-1)
    target: IntProperty(default=-1)
    loss: FloatProperty(default=-1.0, precision=5)
    src_loss: FloatProperty(default=-1.0, precision=5)
    dst_loss: FloatProperty(default=-1.0, precision=5)
    samples_per_s: FloatProperty(default=-1.0)
    it_per_s: FloatProperty(default=-1.0)
    eta: FloatProperty(default=-1.0, description="Seconds to the target iteration; -1: unknown")
    data_wait: FloatProperty(default=-1.0, subtype="FACTOR")
    preview_version: IntProperty(default=-1, description="The engine's newest pictures")
    asked_version: IntProperty(default=-1, description="The pictures asked for (train.images)")
    shown_version: IntProperty(default=-1, description="The pictures loaded here")
    preview_path: StringProperty(subtype="FILE_PATH")
    graph_path: StringProperty(subtype="FILE_PATH")
    preview_icon: IntProperty()
    graph_icon: IntProperty()
    image_scale: FloatProperty(name="Picture Size", default=12.0, min=4.0, max=40.0)
    message: StringProperty()


class SwaplineStatus(bpy.types.PropertyGroup):
    connection: EnumProperty(items=CONNECTION_ITEMS, default="DISCONNECTED")
    connection_message: StringProperty()
    engine_name: StringProperty()
    engine_version: StringProperty()
    engine_device: StringProperty()
    engine_workspace: StringProperty()
    jobs: CollectionProperty(type=SwaplineJob)
    last_error: StringProperty()
    faceset: PointerProperty(type=SwaplineFacesetView)
    masks: PointerProperty(type=SwaplineMaskState)
    train: PointerProperty(type=SwaplineTrainState)
    found_engines: CollectionProperty(type=SwaplineFoundEngine)
    found_engine_index: IntProperty(name="Found Engine")
    discovering: BoolProperty(description="A search of the network is running")
    discovery_message: StringProperty()


STRIP_PROPS = {
    "swapline_role": EnumProperty(name="Swapline Role", items=ROLE_ITEMS, default="NONE"),
    "swapline_result_for": StringProperty(name="Swap Of",
                                          description="The destination strip this merge result belongs to"),
    "swapline_job": StringProperty(name="Merge Job", description="The engine job that rendered this strip"),
    "swapline_matte_for": StringProperty(name="Matte Of", description="The strip whose face this matte holds"),
}

classes = (SwaplineMergeRequest, SwaplineMatteRequest, SwaplineMaskSettings, SwaplineTrainOptions,
           SwaplineSceneSettings, SwaplineJob, SwaplineFoundEngine, SwaplineFace, SwaplineTrack, SwaplineFaceId, SwaplineFacesetView,
           SwaplineMaskPreview, SwaplineMaskState, SwaplineTrainState, SwaplineStatus)


def register() -> None:
    for cls in classes:
        bpy.utils.register_class(cls)
    bpy.types.Scene.swapline = PointerProperty(type=SwaplineSceneSettings)
    bpy.types.WindowManager.swapline = PointerProperty(type=SwaplineStatus)
    for name, prop in STRIP_PROPS.items():
        setattr(bpy.types.Strip, name, prop)


def unregister() -> None:
    for name in STRIP_PROPS:
        delattr(bpy.types.Strip, name)
    del bpy.types.WindowManager.swapline
    del bpy.types.Scene.swapline
    for cls in reversed(classes):
        bpy.utils.unregister_class(cls)
