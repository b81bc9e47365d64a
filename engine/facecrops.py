"""Shared piece: a stored face cut again the way a model takes it (its face type, its size).

Training (recipes_train.load_samples) and the quality report's reconstruction figure
(evaluate/crops.py) both need it, and they must agree to the pixel: a report that fed the model
other crops than training did would measure the crop difference as much as the model.

The face is re-cut from the stored crop through its frame landmarks (recrop_transform) at the
stored size, then shrunk with area averaging: warpAffine has no area filter, and shrinking 512 -> 64
inside it would alias (a 64 px model trained on it learns the aliasing).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .errors import EngineError
from .facesets import FaceRecord
from .geometry.align import recrop_transform, transform_points

_IDENTITY = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])


@dataclass
class Recut:
    """How one stored face becomes a model's crop: `resample` any image of the stored crop (the face
    itself, its mask) the same way; `landmarks` are the 68 points in the model crop's pixels."""

    transform: np.ndarray  # (2, 3) stored crop -> re-cut crop, both at the stored size
    stored_size: int
    size: int
    landmarks: np.ndarray

    def resample(self, image: np.ndarray, flags: int = cv2.INTER_CUBIC) -> np.ndarray:
        s = self.stored_size
        if image.shape[:2] != (s, s):  # a crop saved at another size: the same face, rescaled
            image = cv2.resize(image, (s, s), interpolation=cv2.INTER_AREA)
        if not np.allclose(self.transform, _IDENTITY):  # the faceset's own face type: nothing to re-cut
            border = cv2.BORDER_REPLICATE if flags == cv2.INTER_CUBIC else cv2.BORDER_CONSTANT
            image = cv2.warpAffine(image, self.transform, (s, s), flags=flags, borderMode=border)
        if s != self.size:
            image = cv2.resize(image, (self.size, self.size),
                               interpolation=cv2.INTER_AREA if s > self.size else cv2.INTER_CUBIC)
        return image


def recut(record: FaceRecord, stored_size: int, stored_type: str, face_type: str, size: int) -> Recut:
    """The re-cut of one face from its faceset's crops (stored_size, stored_type) to face_type at size."""
    try:
        m = recrop_transform(record.transform, stored_size, stored_type, record.landmarks68, stored_size,
                             face_type, record.yaw)
    except ValueError as exc:
        raise EngineError("bad_request", str(exc)) from None
    # frame -> re-cut crop at the stored size -> resized (resize maps pixel centres: x -> (x + 0.5) * s - 0.5)
    points = transform_points(m, transform_points(record.transform, record.landmarks68))
    return Recut(m, stored_size, size, ((points + 0.5) * (size / stored_size) - 0.5).astype(np.float32))
