"""Faces stage, shared piece: the One-Euro filter that steadies landmarks over time.

A still head's landmarks wobble by a pixel or two from frame to frame, which makes aligned crops
and merged faces shimmer. A fixed low-pass would remove that but lag behind a turning head. The
One-Euro filter (Casiez et al., 2012) adapts: its cut-off frequency rises with the speed of the
motion, so slow drift is smoothed hard and fast motion passes nearly untouched.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..geometry.align import ALIGN_POINTS, MEAN_FACE_68, MESH_TO_68, invert, umeyama

# FaceMesh vertices of the 68-point layout's stable points (brows, nose, eyes, mouth corners):
# the face's similarity frame is fitted to these, as an aligned crop is
_STABLE = [MESH_TO_68[i] for i in ALIGN_POINTS]


def _alpha(cutoff: np.ndarray | float, dt: float) -> np.ndarray | float:
    tau = 1.0 / (2 * np.pi * cutoff)
    return 1.0 / (1.0 + tau / dt)


@dataclass(frozen=True)
class SmoothSettings:
    min_cutoff: float = 0.8  # Hz: how hard a still face is smoothed
    beta: float = 6.0  # how fast the cut-off rises with speed, per face size per second
    d_cutoff: float = 1.0  # Hz: smoothing of the speed estimate itself


class OneEuroFilter:
    """Filters a (N, D) array of points; speed is measured per point in face sizes per second."""

    def __init__(self, settings: SmoothSettings = SmoothSettings()) -> None:
        self.s = settings
        self._x: np.ndarray | None = None
        self._dx: np.ndarray | None = None
        self._t = 0.0

    def __call__(self, x: np.ndarray, t: float, scale: float) -> np.ndarray:
        x = np.asarray(x, np.float64)
        if self._x is None or t <= self._t:
            self._x, self._dx, self._t = x.copy(), np.zeros(len(x)), t
            return x.copy()
        dt = t - self._t
        speed = np.linalg.norm((x[:, :2] - self._x[:, :2]) / dt, axis=1) / max(scale, 1e-6)
        self._dx = self._dx + _alpha(self.s.d_cutoff, dt) * (speed - self._dx)
        a = _alpha(self.s.min_cutoff + self.s.beta * self._dx, dt)[:, None]
        self._x = self._x + a * (x - self._x)
        self._t = t
        return self._x.copy()


@dataclass(frozen=True)
class FaceSmoothing:
    """Separate filters for where the face is (rigid) and what shape it makes (expression)."""

    rigid: SmoothSettings = SmoothSettings(min_cutoff=0.5, beta=8.0)
    shape: SmoothSettings = SmoothSettings(min_cutoff=0.6, beta=2.0)


class LandmarkSmoother:
    """Steadies a face's landmarks: its placement and its expression each with their own One-Euro filter.

    Most landmark noise moves the whole mesh a little; filtering each point alone would either let
    that through or, filtered hard, smear a talking mouth. So the face's similarity frame (found
    from the stable points) is filtered as three anchor points, the shape inside that frame on its
    own, and the two are put back together.
    """

    _ANCHORS = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])

    _TEMPLATE = MEAN_FACE_68[list(ALIGN_POINTS)]

    def __init__(self, settings: FaceSmoothing = FaceSmoothing()) -> None:
        self._rigid = OneEuroFilter(settings.rigid)
        self._shape = OneEuroFilter(settings.shape)

    def __call__(self, points: np.ndarray, t: float, size: float) -> np.ndarray:
        pts = np.asarray(points, np.float64)  # (468, 3) FaceMesh points
        to_face = umeyama(pts[_STABLE, :2], self._TEMPLATE)  # frame -> template units
        scale = np.sqrt(abs(np.linalg.det(to_face[:, :2])))
        shape = pts.copy()
        shape[:, :2] = pts[:, :2] @ to_face[:, :2].T + to_face[:, 2]
        shape[:, 2:] *= scale
        to_frame = invert(to_face)
        anchors = self._ANCHORS @ to_frame[:, :2].T + to_frame[:, 2]
        anchors = self._rigid(anchors, t, size)
        shape = self._shape(shape, t, 1.0)
        back = umeyama(self._ANCHORS, anchors)
        out = shape.copy()
        out[:, :2] = shape[:, :2] @ back[:, :2].T + back[:, 2]
        out[:, 2:] /= max(scale, 1e-9)
        return out
