"""Shared piece: how a shot's frames are shared between engines (the plan of `farm-merge`).

Each engine owns one contiguous range of frames, sized by its speed hint. Colour is smoothed over
a window of neighbouring frames, and a merge job smooths only within its own range, so a job runs
over its owned range widened by that window on each side (`job_range`): every owned frame then sees
the same neighbours as in one merge of the whole shot, and is identical to it. The widened frames
are thrown away. An engine that finishes early takes the second half of the slowest engine's
remaining frames (`steal_point`), when that is worth a model load and the extra window frames.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

STEAL_MARGIN = 24  # frames a running job may already have decoded or prepared past what it reports


@dataclass
class Piece:
    """Frames [lo, hi) owned by one engine's job; `tries` counts the engines it failed on."""

    lo: int
    hi: int
    tries: int = 0

    @property
    def name(self) -> str:
        return f"{self.lo:06d}-{self.hi:06d}"


def smoothing_radius(settings: dict) -> int:
    """Frames on each side a merged frame's colour is smoothed with, at most (the merge's own window,
    taken for a grayscale model too, whose brightness is steadied over 3 frames when smooth_colour is 0)."""
    from .merge.settings import MergeSettings

    sigma = float(MergeSettings.from_dict(settings).smooth_colour)
    return int(math.ceil(3 * (sigma if sigma > 0 else 3.0)))


def split(start: int, end: int, weights: list[float]) -> list[Piece]:
    """[start, end) cut into one contiguous piece per weight, sized by weight (none empty when the
    frames suffice; engines beyond the frame count get nothing and are left out)."""
    if end <= start or not weights or any(w <= 0 for w in weights):
        raise ValueError("an empty range or a weight that is not positive")
    count = min(len(weights), end - start)
    weights = weights[:count]
    total, pieces, lo, acc = sum(weights), [], start, 0.0
    for i, w in enumerate(weights):
        acc += w
        share = start + round((end - start) * acc / total)
        hi = end if i == count - 1 else max(lo + 1, min(end - (count - 1 - i), share))  # each piece a frame at least
        pieces.append(Piece(lo, hi))
        lo = hi
    return pieces


def job_range(piece: Piece, radius: int, start: int, end: int) -> tuple[int, int]:
    """The frames a piece's job merges: the piece and `radius` frames either side, within the shot."""
    return max(start, piece.lo - radius), min(end, piece.hi + radius)


def steal_point(position: int, piece: Piece, radius: int) -> int | None:
    """Where to cut a running piece whose job has reached `position` so an idle engine takes the rest,
    or None when the rest is too short to be worth a second engine's start and window frames."""
    left = piece.hi - max(piece.lo, position + STEAL_MARGIN)
    if left < 2 * (STEAL_MARGIN + 2 * radius):
        return None
    return piece.hi - left // 2
