"""Quality report piece: does the swapped face keep the destination's expression and head pose.

The landmarks of the swapped frame are compared with the destination frame's, point by point, in
units of the destination's inter-ocular distance, so the figure reads the same for a close-up and a
wide shot (0.05 is a few pixels on a face a hundred pixels across). The inner points (brows, eyes,
nose, mouth) are the expression on their own: the jaw line follows the mask's border and the
destination's chin, and would dilute it. Pose differences are in degrees.
"""

from __future__ import annotations

import numpy as np

from .types import FaceObservation, aggregate

INNER = slice(17, 68)  # brows, nose, eyes, mouth of the 68-point layout
KEYS = ("landmarks", "inner", "yaw", "pitch", "roll")


def _angle_step(a: float, b: float) -> float:
    """|a - b| in degrees, the short way round (roll runs through +-180)."""
    return abs((float(a) - float(b) + 180.0) % 360.0 - 180.0)


def expression_row(destination: FaceObservation | None, result: FaceObservation | None) -> dict | None:
    """Landmark distance (in inter-ocular distances) and pose difference of one frame's two faces.

    None when either face is missing; the landmark figures are None when the destination's eyes
    coincide (no scale to measure by).
    """
    if destination is None or result is None:
        return None
    d = np.linalg.norm(np.asarray(result.landmarks68, np.float64) - np.asarray(destination.landmarks68, np.float64),
                       axis=1)
    scale = destination.inter_ocular
    ok = scale > 1e-6
    return {
        "landmarks": float(d.mean() / scale) if ok else None,
        "inner": float(d[INNER].mean() / scale) if ok else None,
        "yaw": _angle_step(result.pose[0], destination.pose[0]),
        "pitch": _angle_step(result.pose[1], destination.pose[1]),
        "roll": _angle_step(result.pose[2], destination.pose[2]),
    }


def expression_summary(rows: list[dict | None]) -> dict:
    """Aggregates of each figure over the frames that have both faces."""
    kept = [r for r in rows if r is not None]
    return {key: aggregate(r[key] for r in kept) for key in KEYS}
