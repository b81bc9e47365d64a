"""Shared piece: head pose (yaw, pitch, roll in degrees) from face landmarks.

Conventions, in image terms: yaw > 0 when the nose turns towards the image's right, pitch > 0 when
the face looks up, roll > 0 when the eye line turns clockwise on screen.
"""

from __future__ import annotations

import numpy as np

# FaceMesh vertices: outer eye corners, mid-forehead, chin
_RIGHT_EYE, _LEFT_EYE, _FOREHEAD, _CHIN = 33, 263, 10, 152


def pose_from_mesh(points: np.ndarray) -> tuple[float, float, float]:
    """Pose from FaceMesh's 3D points (x, y in pixels, z depth on the same scale, larger = farther).

    The face's own axes are the eye line (x) and forehead-to-chin (y), made orthogonal; how they tilt
    out of the image plane gives yaw and pitch, and the eye line's angle on screen gives roll.
    """
    p = np.asarray(points, np.float64)
    x = p[_LEFT_EYE] - p[_RIGHT_EYE]
    x /= np.linalg.norm(x) + 1e-9
    y = p[_CHIN] - p[_FOREHEAD]
    y -= x * (y @ x)
    y /= np.linalg.norm(y) + 1e-9
    # the image-right eye receding (x[2] > 0) means the nose has turned towards the image's right
    yaw = np.degrees(np.arcsin(np.clip(x[2], -1, 1)))
    pitch = np.degrees(np.arcsin(np.clip(-y[2], -1, 1)))
    roll = np.degrees(np.arctan2(x[1], x[0]))
    return float(yaw), float(pitch), float(roll)


def pose_from_68(lm68: np.ndarray) -> tuple[float, float, float]:
    """A rougher pose from 2D points in the 68-point layout (imported faces have nothing more).

    Yaw from where the nose tip sits between the jaw's ends, pitch from where it sits between the
    brows and the chin, roll from the eye line.
    """
    p = np.asarray(lm68, np.float64)
    eye_r, eye_l = p[36:42].mean(0), p[42:48].mean(0)
    d = eye_l - eye_r
    roll = np.arctan2(d[1], d[0])
    c, s = np.cos(-roll), np.sin(-roll)
    level = (p - p.mean(0)) @ np.array([[c, s], [-s, c]])
    jaw_l, jaw_r, nose = level[16], level[0], level[30]
    across = (nose[0] - jaw_r[0]) / max(jaw_l[0] - jaw_r[0], 1e-6)
    brow = level[17:27, 1].mean()
    down = (nose[1] - brow) / max(level[8, 1] - brow, 1e-6)
    yaw = np.degrees(np.arcsin(np.clip(2 * across - 1, -1, 1)))
    # a level frontal face has its nose tip ~45% of the way from brows to chin
    pitch = np.degrees(np.arcsin(np.clip((0.45 - down) * 2.5, -1, 1)))
    return float(yaw), float(pitch), float(np.degrees(roll))
