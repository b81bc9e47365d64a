"""Stage piece: a faceset's faces cut the way training cut them, for measuring the model on them.

The report must feed the model exactly what training fed it (the same face type, the same
resampling), or a reconstruction figure would measure the crop difference as much as the model.
Training's own loader lives in the service layer (recipes_train.load_samples), which the report may
not import, so the crop step is repeated here from the same geometry: the face re-cut from the
stored crop through its frame landmarks (recrop_transform), at the stored size, then shrunk with
area averaging (warpAffine has no area filter: shrinking inside it would alias).
"""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from engine.errors import EngineError
from engine.facesets import FaceRecord
from engine.geometry.align import recrop_transform, transform_points

_IDENTITY = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])


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
    faceset holds gets the narrower crop, as in training.
    """
    images, landmarks, kept = [], [], []
    for r in records:
        img = cv2.imread(str(r.image))
        if img is None:
            continue
        try:
            m = recrop_transform(r.transform, stored_size, stored_type, r.landmarks68, stored_size, face_type, r.yaw)
        except ValueError as exc:
            raise EngineError("bad_request", str(exc)) from None
        if img.shape[:2] != (stored_size, stored_size):  # a crop saved at another size: the same face, rescaled
            img = cv2.resize(img, (stored_size, stored_size), interpolation=cv2.INTER_AREA)
        if not np.allclose(m, _IDENTITY):
            img = cv2.warpAffine(img, m, (stored_size, stored_size), flags=cv2.INTER_CUBIC,
                                 borderMode=cv2.BORDER_REPLICATE)
        if stored_size != size:
            shrink = cv2.INTER_AREA if stored_size > size else cv2.INTER_CUBIC
            img = cv2.resize(img, (size, size), interpolation=shrink)
        # frame -> re-cut crop at the stored size -> resized (resize maps pixel centres: x -> (x + 0.5) * s - 0.5)
        points = transform_points(m, transform_points(r.transform, r.landmarks68))
        landmarks.append(((points + 0.5) * (size / stored_size) - 0.5).astype(np.float32))
        images.append(img)
        kept.append(r)
    if not images:
        return np.empty((0, size, size, 3), np.uint8), np.empty((0, 68, 2), np.float32), []
    return np.stack(images), np.stack(landmarks), kept
