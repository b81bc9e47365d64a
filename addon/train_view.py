"""Blender layer: the training panel's traffic. Which job the panel follows, the requests that steer
it and fetch its pictures, and how answers are written into `window_manager.swapline.train`.

As in mask_view, nothing here sends: operators and the drain (sync.py) send the (op, args, tag)
requests built here, and only the drain calls `follow_job`, `apply_reply` and `apply_failure`.
The pictures come as PNG bytes (`train.images`, asked when a job's `preview_version` moves on, so
a remote engine's pictures show too); the drain writes them to a temp file and loads them into
`bpy.data.images` (for the Image Editor) and a preview collection (for the panel's icons).
"""

from __future__ import annotations

import os
import tempfile

import bpy

from . import thumbnails
from .train_options import BY_NAME, ON_SCENE, OPTIONS, job_options, to_settings

KIND = "train_view"  # tag kind of the requests made here (sync.wait_for_jobs waits on it by name)
TRAIN_KINDS = ("train", "pretrain")
IMAGES, PRESETS = "train_images", "train_presets"
_PURPOSES = (IMAGES, PRESETS)
GROUP = "train"  # the thumbnails group of the pictures
PREVIEW_IMAGE, GRAPH_IMAGE = "Swapline Training Preview", "Swapline Loss Graph"
ACTIVE = ("queued", "running", "paused")

Request = tuple[str, dict, dict]

_presets: dict = {}  # the engine's train.presets answer, once asked
_written = 0  # counts picture files written, so each has a new name (preview collections cache by path)


def owns(tag: dict | None) -> bool:
    return bool(tag) and tag.get("purpose") in _PURPOSES


# Option values <-> engine settings ----------------------------------------------------------------

def option_values(settings) -> dict:
    """Every option's value, by option name, from scene.swapline (and its train options)."""
    return {o.name: getattr(settings, ON_SCENE[o.name]) if o.name in ON_SCENE else getattr(settings.train, o.name)
            for o in OPTIONS}


def job_params(settings, source: str, destination: str) -> tuple[str, dict]:
    """The job kind and params Start sends: every option, explicitly (what the panel shows trains)."""
    options = option_values(settings)
    values = to_settings(options)
    kind = "pretrain" if values.get("pretrain") else "train"
    params = {"model": settings.model.strip(), "source": source, **values,
              **job_options(options, pretrain=kind == "pretrain")}
    if kind == "train" or destination:
        params["destination"] = destination
    return kind, params


def write_options(settings, values: dict) -> None:
    """Set options from option values (a preset's, mapped by train_options.from_settings)."""
    for name, value in values.items():
        option = BY_NAME.get(name)
        if option is None:
            continue
        target, prop = (settings, ON_SCENE[name]) if name in ON_SCENE else (settings.train, name)
        setattr(target, prop, type(option.default)(value) if not isinstance(option.default, str) else str(value))


# Requests ----------------------------------------------------------------------------------------

def command(job_id: str, name: str, **extra) -> Request:
    label = {"set": "Apply options", "save": "Save now", "backup": "Backup now"}.get(name, name.capitalize())
    return "job.control", {"job": job_id, "command": name, **extra}, {"purpose": "train_command", "kind": "train",
                                                                      "label": label}


def apply_options(job_id: str, settings) -> Request:
    """The soft options as a "set" command for the running job."""
    return command(job_id, "set", options=to_settings(option_values(settings), soft_only=True))


def ask_presets(preset: str, scene_name: str) -> Request:
    return "train.presets", {}, {"purpose": PRESETS, "kind": KIND, "label": "Presets", "preset": preset,
                                 "scene": scene_name}


def ask_images(state, model: str, version: int) -> list[Request]:
    state.asked_version = version
    return [("train.images", {"model": model}, {"purpose": IMAGES, "kind": KIND, "label": "Training pictures",
                                                "model": model, "version": version})]


def presets() -> dict:
    return dict(_presets)


# Answers (drain only) ----------------------------------------------------------------------------

def follow_job(status, job: dict) -> list[Request]:
    """Show the newest training job's numbers; ask for its pictures when they changed."""
    if job.get("kind") not in TRAIN_KINDS:
        return []
    state = status.train
    job_id = str(job.get("id") or "")
    created = float(job.get("created") or 0.0)
    if job_id != state.job_id:
        if created < state.created:
            return []  # an older job mirrored late: the panel follows the newest
        state.job_id, state.created = job_id, created
        state.preview_version = state.asked_version = state.shown_version = -1
        state.iteration = state.target = -1
        state.phase = ""
    params, stats = job.get("params") or {}, job.get("stats") or {}
    state.kind = str(job.get("kind") or "")
    state.model = str(params.get("model") or "")
    state.state = str(job.get("state") or "")
    state.message = str(job.get("message") or "")
    for name in ("iteration", "target"):
        if stats.get(name) is not None:
            setattr(state, name, int(stats[name]))
    for name in ("loss", "src_loss", "dst_loss", "samples_per_s", "it_per_s", "data_wait"):
        if stats.get(name) is not None:
            setattr(state, name, float(stats[name]))
    if stats.get("phase"):
        state.phase = str(stats["phase"])
    eta = stats.get("eta_s", job.get("eta")) if state.state in ACTIVE else None
    state.eta = float(eta) if eta is not None and state.state != "paused" else -1.0
    version = stats.get("preview_version")
    if version is not None:
        state.preview_version = int(version)
    finished = state.state not in ACTIVE
    if state.model and state.preview_version > max(state.asked_version, state.shown_version):
        return ask_images(state, state.model, state.preview_version)
    if finished and state.model and state.asked_version < 0 and state.shown_version < 0:
        return ask_images(state, state.model, max(state.preview_version, 0))  # the last pictures, once
    return []


def apply_reply(status, op: str, result, tag: dict) -> list[Request]:
    result = result if isinstance(result, dict) else {}
    if tag.get("purpose") == PRESETS:
        _presets.clear()
        _presets.update(result.get("presets") or {})
        _apply_preset(tag.get("scene", ""), tag.get("preset", ""))
    elif tag.get("purpose") == IMAGES:
        _show_images(status.train, tag, result)
    return []


def apply_failure(status, op: str, code: str, message: str, tag: dict | None) -> bool:
    """Note a refused picture or preset request; True when it needs no error report."""
    if not owns(tag):
        return False
    if tag.get("purpose") == IMAGES:
        status.train.message = f"Could not fetch the training pictures: {message}"
        return code == "unknown_op"  # an older engine: no pictures, no alarm
    return False


def apply_preset(scene, preset: str) -> bool:
    """Apply a preset from the cached presets; False when the engine has not told them yet."""
    if preset not in _presets:
        return False
    from .train_options import from_settings

    write_options(scene.swapline, from_settings(_presets[preset]))
    scene.swapline.train.preset = preset
    return True


def _apply_preset(scene_name: str, preset: str) -> None:
    scene = bpy.data.scenes.get(scene_name)
    if scene is not None and preset:
        apply_preset(scene, preset)


def _folder(create: bool = True) -> str:
    """This Blender session's folder of picture files (a temp folder: the engine may be remote)."""
    folder = os.path.join(tempfile.gettempdir(), f"swapline-train-{os.getpid()}")
    if create:
        os.makedirs(folder, exist_ok=True)
    return folder


def _show_images(state, tag: dict, result: dict) -> None:
    """Write the PNG bytes to new temp files and load them (the image datablocks and the icons)."""
    global _written
    if tag.get("model") != state.model:
        return  # the panel moved on to another model meanwhile
    version = int(tag.get("version") or 0)
    for key, image_name, path_prop, icon_prop in (("preview", PREVIEW_IMAGE, "preview_path", "preview_icon"),
                                                  ("graph", GRAPH_IMAGE, "graph_path", "graph_icon")):
        data = result.get(key)
        if not isinstance(data, (bytes, bytearray)) or not data:
            continue
        _written += 1
        path = os.path.join(_folder(), f"{key}_{_written}.png")
        with open(path, "wb") as f:
            f.write(data)
        old = getattr(state, path_prop)
        if old:
            thumbnails.discard(GROUP, old)
            if os.path.dirname(old) == _folder():
                try:
                    os.remove(old)
                except OSError:
                    pass
        load_image(image_name, path)
        setattr(state, path_prop, path)
        setattr(state, icon_prop, thumbnails.load(GROUP, path))
    state.shown_version = max(state.shown_version, version)


def load_image(name: str, path: str):
    """The image datablock `name` showing the file at `path`: loaded, or pointed there and reloaded
    (so an Image Editor showing it keeps showing it). The evaluation's sheet loads through it too."""
    image = bpy.data.images.get(name)
    if image is None:
        image = bpy.data.images.load(path, check_existing=False)
        image.name = name
    else:
        image.filepath = path
        image.reload()
    return image


def image_of(which: str):
    return bpy.data.images.get(PREVIEW_IMAGE if which == "PREVIEW" else GRAPH_IMAGE)


def unregister() -> None:
    """Forget the presets and delete this session's picture files (after thumbnails released them)."""
    import shutil

    _presets.clear()
    shutil.rmtree(_folder(create=False), ignore_errors=True)
