"""Stage piece: how well a model redraws faces it never trained on (reconstruction SSIM).

Each side's decoder learned to redraw its own person: source faces through the source path,
destination faces through the destination path. On the faces training saw, that says little (a
model can memorise them); on the faces held back from training (`train --holdout`, engine/holdout.py)
it says how well the model has learned the person. Both are given, side by side: a held-back figure
far below the seen one is a model that memorised rather than learned.

SSIM (Wang et al. 2004: 11-tap Gaussian window, sigma 1.5) is taken on luma, inside the face hull of
the aligned crop: the background around the face is not the model's job, and colour would count the
grayscale models' missing chroma against them.
"""

from __future__ import annotations

from typing import Callable

import cv2
import numpy as np

from engine.errors import Cancelled, EngineError
from engine.evaluate.crops import evenly_spaced, model_crops
from engine.evaluate.types import aggregate
from engine.geometry.hull import hull_mask
from engine.holdout import read_holdout

BATCH = 32  # faces per forward pass
SIDES = ("source", "destination")
_PATH = {"source": "src", "destination": "dst"}  # the model's side that redraws each faceset's person
NO_HOLDOUT = ("the model was trained without --holdout, so every face was seen in training; "
              "train with --holdout SHARE (e.g. 0.1) to measure faces it has never seen")

# SSIM's constants for 8-bit values: (K1 L)^2, (K2 L)^2 with K1 0.01, K2 0.03, L 255
_C1 = (0.01 * 255) ** 2
_C2 = (0.03 * 255) ** 2


def luma(image: np.ndarray) -> np.ndarray:
    """The Rec.601 luma (float64) of a BGR or already gray uint8 image, as the gray models see it."""
    if image.ndim == 3 and image.shape[2] == 3:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    elif image.ndim == 3:
        image = image[..., 0]
    return image.astype(np.float64)


def ssim_map(a: np.ndarray, b: np.ndarray, sigma: float = 1.5) -> np.ndarray:
    """Per-pixel SSIM of two images of one size (BGR or gray uint8, compared on luma), -1..1."""
    if a.shape[:2] != b.shape[:2]:
        raise ValueError(f"SSIM needs images of one size, got {a.shape[:2]} and {b.shape[:2]}")
    x, y = luma(a), luma(b)
    k = 2 * int(round(3.5 * sigma)) + 1  # 11 taps for sigma 1.5, as in the paper

    def blur(z: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(z, (k, k), sigma, borderType=cv2.BORDER_REFLECT)

    mx, my = blur(x), blur(y)
    # variances from E[x^2] - E[x]^2 can dip below zero by rounding; a variance never does
    vx = np.maximum(blur(x * x) - mx * mx, 0.0)
    vy = np.maximum(blur(y * y) - my * my, 0.0)
    cxy = blur(x * y) - mx * my
    return ((2 * mx * my + _C1) * (2 * cxy + _C2)) / ((mx * mx + my * my + _C1) * (vx + vy + _C2))


def masked_ssim(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float | None:
    """Mean SSIM over the pixels where `mask` > 0.5 (everywhere without one); None for an empty mask."""
    values = ssim_map(a, b)
    if mask is not None:
        values = values[np.asarray(mask) > 0.5]
    return float(values.mean()) if values.size else None


def _ssims(model, images: np.ndarray, landmarks: np.ndarray, path: str, gray: bool, device, bf16: bool,
           should_stop: Callable[[], bool]) -> list[float | None]:
    """Each face's SSIM against the model's own redrawing of it through `path` ("src" or "dst")."""
    import torch

    size = images.shape[1]
    scores: list[float | None] = []
    for start in range(0, len(images), BATCH):
        if should_stop():
            raise Cancelled()
        chunk = images[start:start + BATCH]
        x = np.stack([cv2.cvtColor(f, cv2.COLOR_BGR2GRAY)[..., None] for f in chunk]) if gray else chunk
        t = torch.from_numpy(x.astype(np.float32) * np.float32(1 / 255)).permute(0, 3, 1, 2)
        t = t.to(device).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            drawn, _ = model(t, path)
        drawn = (drawn.float().clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()
        for j, face in enumerate(chunk):
            hull = hull_mask(landmarks[start + j], (size, size))
            scores.append(masked_ssim(face, drawn[j], hull))
    return scores


def _side_faces(ws, faceset: str, held_ids: list[int], limit: int) -> tuple[list, list, dict]:
    """The held-back faces still in the faceset and an evenly spaced sample of as many seen ones."""
    faces = ws.facesets.faces(faceset)
    held_set = set(held_ids)
    held = evenly_spaced([r for r in faces if r.id in held_set], limit)
    seen = evenly_spaced([r for r in faces if r.id not in held_set], len(held))
    return held, seen, ws.facesets.get(faceset)


def reconstruction(ws, model: str, should_stop: Callable[[], bool] = lambda: False, limit: int = 64,
                   device: str = "auto") -> dict:
    """The model's reconstruction SSIM on held-back and on seen faces of both its facesets.

    {"available", "reason" (when not), "resolution", "face_type", "share",
     "source": {"faceset", "held_back": {"ssim": aggregate, "faces": n}, "seen": {...}},
     "destination": {...}}. Raises EngineError not_found when the model has no checkpoint.
    """
    import torch  # loads only when a report asks for the model

    from engine.models import native_bf16, resolve_device
    from engine.models.checkpoint import has_checkpoint, load_checkpoint

    directory = ws.model_dir(model)
    if not has_checkpoint(directory):
        raise EngineError("not_found", f"model {model!r} has no trained checkpoint in {directory}; train it first")
    held = read_holdout(directory)
    if held is None:
        return {"available": False, "reason": NO_HOLDOUT}
    where = resolve_device(device)
    net, config, state = load_checkpoint(directory, device=str(where))
    net = net.to(where, memory_format=torch.channels_last).eval()
    bf16 = native_bf16(where)
    settings = state.get("settings") or {}
    size = config.resolution
    result: dict = {"available": True, "resolution": size, "face_type": settings.get("face_type"),
                    "share": held.get("share")}
    for side in SIDES:
        name = held[side]["faceset"]
        try:
            held_faces, seen_faces, fs = _side_faces(ws, name, held[side]["faces"], limit)
        except EngineError as exc:  # the faceset was deleted since training: the other side still counts
            none = {"ssim": aggregate([]), "faces": 0}
            result[side] = {"faceset": name, "reason": exc.message, "held_back": none, "seen": dict(none)}
            continue
        face_type = result["face_type"] = settings.get("face_type") or fs["face_type"]  # train's own fallback
        figures = {"faceset": name}
        for part, records in (("held_back", held_faces), ("seen", seen_faces)):
            images, landmarks, kept = model_crops(records, fs["size"], fs["face_type"], face_type, size)
            scores = _ssims(net, images, landmarks, _PATH[side], config.channels == 1, where, bf16,
                            should_stop) if len(kept) else []
            figures[part] = {"ssim": aggregate(scores), "faces": len(kept)}
        result[side] = figures
    return result
