"""Stage piece: a faceset's faces cut the way training cut them, for measuring the model on them,
and evenly spaced samples of a list.

The report must feed the model exactly what training fed it (the same face type, the same
resampling), or a reconstruction figure would measure the crop difference as much as the model:
both use engine/facecrops.py.
"""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from engine.facecrops import recut
from engine.facesets import FaceRecord


def evenly_spaced(items: Sequence, count: int) -> list:
    """Up to `count` items spread over the whole list (first and last included), in order."""
    if count <= 0 or not items:
        return []
    if count >= len(items):
        return list(items)
    if count == 1:
        return [items[len(items) // 2]]
    picks = np.linspace(0, len(items) - 1, count).round().astype(int)  # a step >= 1: never a repeat
    return [items[i] for i in picks]


def model_crops(records: Sequence[FaceRecord], stored_size: int, stored_type: str, face_type: str,
                size: int) -> tuple[np.ndarray, np.ndarray, list[FaceRecord]]:
    """Crops (N,size,size,3) uint8 BGR of the faces at the model's face type, their landmarks
    (N,68,2) float32 in crop pixels, and the records kept (a face file deleted by hand is skipped).

    `stored_size`/`stored_type` are the faceset's; a model trained on a narrower face type than the
    faceset holds gets the narrower crop, as in training (the same engine/facecrops.py re-cut).
    """
    images, landmarks, kept = [], [], []
    for r in records:
        img = cv2.imread(str(r.image))
        if img is None:
            continue
        cut = recut(r, stored_size, stored_type, face_type, size)
        images.append(cut.resample(img))
        landmarks.append(cut.landmarks)
        kept.append(r)
    if not images:
        return np.empty((0, size, size, 3), np.uint8), np.empty((0, 68, 2), np.float32), []
    return np.stack(images), np.stack(landmarks), kept
