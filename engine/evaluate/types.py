"""Stage piece: what the quality report's parts hand each other."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Iterable

import numpy as np

SCHEMA = 1  # report.json's layout; bump when a field changes meaning

# report["headline"]: the figures the add-on's panel and the sheet's header show (None when not measured)
HEADLINE_KEYS = (
    "closer_to_source",  # share 0..1 of frames whose swapped face is nearer the source identity
    "identity_to_source",  # median embedding distance of the swapped face to the source identity
    "identity_to_destination",  # ... and to the destination identity
    "landmark_distance",  # median mean 68-point distance to the destination's, in inter-ocular distances
    "yaw_difference", "pitch_difference", "roll_difference",  # medians, degrees
    "flicker_ratio",  # flicker in the face region: swapped / destination's own
    "seam_colour",  # median colour step across the mask border (CIE76 delta E), swapped
    "seam_colour_destination",  # ... the same step in the untouched destination
    "seam_gradient_ratio",  # median gradient along the mask border: swapped / destination
    "ssim_source_held_back", "ssim_destination_held_back",  # reconstruction SSIM of unseen faces
    "faces_found",  # share of destination frames with a face where one is found in the swapped frame too
)


@dataclass
class FaceObservation:
    """The main face of one frame as the report measures it."""

    frame: int
    landmarks68: np.ndarray  # (68, 2) frame pixels, as measured (no smoothing over time)
    pose: tuple[float, float, float]  # yaw, pitch, roll in degrees (engine/geometry/pose.py conventions)
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 frame pixels
    embedding: np.ndarray | None = None  # (128,) identity descriptor; None without the identity extra

    @property
    def inter_ocular(self) -> float:
        """Distance between the eye centres (68-point layout), the scale of landmark distances."""
        p = self.landmarks68
        return float(np.linalg.norm(p[42:48].mean(0) - p[36:42].mean(0)))


def aggregate(values: Iterable[float | None]) -> dict:
    """median, mean, p90, min, max of the finite values, and how many there were (None figures when none)."""
    kept = sorted(float(v) for v in values if v is not None and math.isfinite(float(v)))
    if not kept:
        return {"median": None, "mean": None, "p90": None, "min": None, "max": None, "count": 0}
    p90 = kept[min(len(kept) - 1, int(round(0.9 * (len(kept) - 1))))]
    return {"median": statistics.median(kept), "mean": statistics.fmean(kept), "p90": p90,
            "min": kept[0], "max": kept[-1], "count": len(kept)}
