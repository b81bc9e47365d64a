"""Quality report piece: does the swapped face keep the destination's expression and head pose.

The landmarks of the swapped frame are compared with the destination frame's, point by point, in
units of the destination's inter-ocular distance, so the figure reads the same for a close-up and a
wide shot (0.05 is a few pixels on a face a hundred pixels across). The inner points (brows, eyes,
nose, mouth) are the expression on their own: the jaw line follows the mask's border and the
destination's chin, and would dilute it. Pose differences are in degrees.

Pose is estimated from the face's own shape (engine/geometry/pose.py), so a swapped face with the
source's proportions reads a few degrees off the destination's even where the head follows exactly:
on a 20-minute Obama -> Kristi Noem swap the pitch read +5.5 deg on nearly every frame (a blur as
soft as the swap's moved it 0.5 deg, so it is the face, not its softness). The summary therefore
also gives each axis's offset (the median signed difference: a steady one is that shape) and the
difference around it ("centred": the head not following the destination's movement).
"""

from __future__ import annotations

import numpy as np

from .types import FaceObservation, aggregate

INNER = slice(17, 68)  # brows, nose, eyes, mouth of the 68-point layout
POSE = ("yaw", "pitch", "roll")
KEYS = ("landmarks", "inner") + POSE


def _angle_change(a: float, b: float) -> float:
    """a - b in degrees, the short way round (roll runs through +-180): -180..180."""
    return (float(a) - float(b) + 180.0) % 360.0 - 180.0


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
    signed = {axis: _angle_change(a, b) for axis, a, b in zip(POSE, result.pose, destination.pose)}
    return {
        "landmarks": float(d.mean() / scale) if ok else None,
        "inner": float(d[INNER].mean() / scale) if ok else None,
        **{axis: abs(change) for axis, change in signed.items()},
        "signed": signed,  # result - destination: the summary's offset is their median
    }


def expression_summary(rows: list[dict | None]) -> dict:
    """Aggregates of each figure over the frames that have both faces, and per pose axis the offset
    (median signed difference, None without frames) and the aggregate of |difference - offset|."""
    kept = [r for r in rows if r is not None]
    summary = {key: aggregate(r[key] for r in kept) for key in KEYS}
    offset = {axis: (float(np.median([r["signed"][axis] for r in kept])) if kept else None) for axis in POSE}
    summary["offset"] = offset
    summary["centred"] = {axis: aggregate(abs(_angle_change(r["signed"][axis], offset[axis])) for r in kept)
                          for axis in POSE}
    return summary
