"""Stage piece (evaluate): flicker inside the face, the swapped shot's against the destination's own.

A swap that looks right on every still can still pulse from frame to frame: its colour transfer,
its mask edge or the face itself jitter while the destination holds still. The measure is the
merge's own (engine/merge/temporal.flicker: the mean absolute change from one frame to the next
inside the face region, the union of the region at t and at t-1, all channels, 0..255), taken on
the swapped frames and on the untouched destination frames over the same region. The destination's
figure is the motion the shot really has (talking, turning, the camera); the ratio of the two says
how much the swap adds: 1.0 adds nothing.

Frames are streamed: the meter keeps only the previous frame pair and its region. A step is skipped
(None) on the first frame, after a gap in frame numbers (a lost face, a skipped range) and at a cut
in the destination: the change across a cut is the edit's, not the swap's.
"""

from __future__ import annotations

import cv2
import numpy as np

from ..errors import EngineError
from ..faces.cuts import CutDetector
from ..faces.track import TrackSettings
from ..merge.temporal import flicker
from .types import aggregate

UNIT = "mean |F_t - F_t-1| in the face region (0..255)"


class FlickerMeter:
    """Streams (destination, result, face region) frames in order and measures each step's flicker."""

    def __init__(self) -> None:
        self._cuts = CutDetector(TrackSettings().cut_threshold, TrackSettings().cut_colour_change)
        self._previous: tuple[int, np.ndarray, np.ndarray, np.ndarray] | None = None
        self.rows: list[dict] = []

    def step(self, index: int, destination_bgr: np.ndarray, result_bgr: np.ndarray,
             region: np.ndarray) -> dict | None:
        """{"result": flicker of the swapped frames, "destination": of the untouched ones} from the
        previous frame to this one, or None where there is no step to measure (first frame, a gap
        in frame numbers, a cut, or an empty face region in both frames)."""
        if destination_bgr.shape != result_bgr.shape:
            raise EngineError("bad_request", f"flicker: the result frame {index} is {_size(result_bgr)}, "
                                             f"the destination's is {_size(destination_bgr)}")
        region = np.asarray(region).astype(bool, copy=False)
        if region.shape != destination_bgr.shape[:2]:
            raise EngineError("bad_request", f"flicker: the face region of frame {index} is "
                                             f"{region.shape[1]}x{region.shape[0]}, the frame {_size(destination_bgr)}")
        previous = self._previous
        if previous is not None and index != previous[0] + 1:
            self._cuts.reset()  # a gap: the frame before this one was never seen
            previous = None
        cut = self._cuts.step(destination_bgr)
        # copies: a decoder may hand out the same buffer for the next frame
        self._previous = (index, destination_bgr.copy(), result_bgr.copy(), region.copy())
        if previous is None or cut or not (region.any() or previous[3].any()):
            return None
        _, last_destination, last_result, last_region = previous
        box = _box(region | last_region)  # the measure reads only the region: a whole frame costs 5x more
        regions = [last_region[box], region[box]]
        row = {"result": flicker([last_result[box], result_bgr[box]], regions),
               "destination": flicker([last_destination[box], destination_bgr[box]], regions)}
        self.rows.append(row)
        return row

    def summary(self) -> dict:
        """Aggregates of both figures over the measured steps and the ratio of their means: how much
        flicker the swap adds (1.0: none; None when nothing was measured, or when the destination
        stood perfectly still and the result did not)."""
        result = aggregate(r["result"] for r in self.rows)
        destination = aggregate(r["destination"] for r in self.rows)
        return {"result": result, "destination": destination,
                "ratio": ratio(result["mean"], destination["mean"]), "unit": UNIT}


def ratio(value: float | None, reference: float | None, still: float = 1e-6) -> float | None:
    """value / reference; 1.0 when both are (near) zero (nothing changed in either: the swap adds
    nothing), None when only the reference is zero or either is missing."""
    if value is None or reference is None:
        return None
    if abs(reference) <= still:
        return 1.0 if abs(value) <= still else None
    return float(value) / float(reference)


def _box(region: np.ndarray) -> tuple[slice, slice]:
    """The bounding box of a non-empty bool region."""
    rows, cols = np.flatnonzero(region.any(1)), np.flatnonzero(region.any(0))
    return slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)


def _size(image: np.ndarray) -> str:
    return f"{image.shape[1]}x{image.shape[0]}"
