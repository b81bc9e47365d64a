"""Faces stage: dense landmarks (FaceMesh's 468 points) for a face region, found or tracked.

The network sees a 192 px square around the face, rotated so the eyes are level. The region comes
from a detection (its box and eye keypoints) or, while tracking, from the previous frame's
landmarks, which is what lets us skip detection on most frames.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .tflite import Network

# FaceMesh vertices of the outer eye corners (the subject's right eye is on the image's left)
RIGHT_EYE_OUTER, LEFT_EYE_OUTER = 33, 263
ROI_SCALE = 1.5  # the network was trained on crops 1.5x the face's extent


@dataclass(frozen=True)
class Region:
    """A square, rotated face region: centre and side in frame pixels, angle in radians."""

    cx: float
    cy: float
    side: float
    angle: float

    def to_input(self, size: int) -> np.ndarray:
        """The 2x3 transform from frame pixels to the network's input pixels."""
        s = size / self.side
        c, si = np.cos(-self.angle) * s, np.sin(-self.angle) * s
        return np.array([[c, -si, size / 2 - c * self.cx + si * self.cy],
                         [si, c, size / 2 - si * self.cx - c * self.cy]], np.float64)


def region_from_points(points: np.ndarray, right_eye: np.ndarray, left_eye: np.ndarray) -> Region:
    """The region around a set of face points, levelled by the eye line."""
    angle = float(np.arctan2(left_eye[1] - right_eye[1], left_eye[0] - right_eye[0]))
    # measure the extent in the levelled frame so a tilted head does not inflate the square
    c, s = np.cos(-angle), np.sin(-angle)
    centre = (points.min(0) + points.max(0)) / 2
    rel = points - centre
    level = np.stack([c * rel[:, 0] - s * rel[:, 1], s * rel[:, 0] + c * rel[:, 1]], 1)
    lo, hi = level.min(0), level.max(0)
    mid = (lo + hi) / 2
    centre = centre + np.array([np.cos(angle) * mid[0] - np.sin(angle) * mid[1],
                                np.sin(angle) * mid[0] + np.cos(angle) * mid[1]])
    side = float(max(hi - lo)) * ROI_SCALE
    return Region(float(centre[0]), float(centre[1]), side, angle)


def region_from_landmarks(landmarks: np.ndarray) -> Region:
    return region_from_points(landmarks[:, :2], landmarks[RIGHT_EYE_OUTER, :2], landmarks[LEFT_EYE_OUTER, :2])


@dataclass(frozen=True)
class Mesh:
    points: np.ndarray  # (468, 3) float32: x, y frame pixels; z depth in the same scale
    presence: float  # the network's belief that a face fills the region, 0..1


class LandmarkModel:
    """FaceMesh on a region of a frame. Not thread-safe: one per worker."""

    def __init__(self, threads: int = 1) -> None:
        self._net = Network("landmarks", threads=threads)
        self.size = self._net.input_size

    def run(self, frame_bgr: np.ndarray, region: Region) -> Mesh:
        m = region.to_input(self.size)
        crop = cv2.warpAffine(frame_bgr, m, (self.size, self.size), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_CONSTANT)
        # the network takes RGB in 0..1; converting the 192 px crop costs far less than the frame
        rgb = cv2.cvtColor(crop, cv2.COLOR_BGR2RGB)
        outputs = self._net.run(rgb[None].astype(np.float32) * (1 / 255))
        raw = next(o for o in outputs if o.size == 468 * 3).reshape(468, 3)
        logit = float(next(o for o in outputs if o.size == 1).ravel()[0])
        inv = cv2.invertAffineTransform(m)
        xy = raw[:, :2] @ inv[:, :2].T + inv[:, 2]
        z = raw[:, 2:] * (region.side / self.size)
        points = np.concatenate([xy, z], 1).astype(np.float32)
        return Mesh(points, float(1 / (1 + np.exp(-np.clip(logit, -50, 50)))))
