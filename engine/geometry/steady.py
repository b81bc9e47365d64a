"""Shared piece: steadying per-frame values over time (transforms, landmarks, colour statistics).

Landmarks wobble a little from frame to frame and the alignment with them, so anything carried
into the frame by the raw transform shimmers even when it holds still in the crop. A centred
Gaussian over a track's neighbouring frames follows the head's real motion (no lag) without the
wobble. A gap in a track (a cut, a lost face) ends a run: smoothing never reaches across it.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from ..facesets import FaceRecord


def runs(frames: list[int]) -> list[list[int]]:
    """Sorted frame numbers split into runs of consecutive frames."""
    out: list[list[int]] = []
    for frame in sorted(frames):
        if out and frame == out[-1][-1] + 1:
            out[-1].append(frame)
        else:
            out.append([frame])
    return out


def steady_series(values: dict[int, np.ndarray], sigma: float, line: bool = True) -> dict[int, np.ndarray]:
    """Each frame's value (any shape) averaged over its run's neighbours with a Gaussian of
    `sigma` frames; `line` fits a local straight line instead of a plain mean, so a value that
    moves steadily comes back unchanged, ends of runs included. sigma <= 0: the values as they are."""
    if sigma <= 0:
        return dict(values)
    radius = int(math.ceil(3 * sigma))
    out: dict[int, np.ndarray] = {}
    for run in runs(list(values)):
        stack = np.stack([np.asarray(values[f], np.float64) for f in run])
        shape = stack.shape[1:]
        flat = stack.reshape(len(run), -1)
        for i, frame in enumerate(run):
            lo, hi = max(0, i - radius), min(len(run), i + radius + 1)
            x = np.arange(lo, hi) - i
            fit = _local_line(flat[lo:hi], x, sigma) if line else _local_mean(flat[lo:hi], x, sigma)
            out[frame] = fit.reshape(shape)
    return out


def steady_transforms(faces: list["FaceRecord"], sigma: float) -> dict[tuple[int, int], np.ndarray]:
    """Each face's frame -> crop transform averaged over its track's neighbours (a centred
    Gaussian of `sigma` frames, within runs of consecutive frames), by (track, frame).
    Similarity matrices combine linearly into a similarity, so the average is one too."""
    by_track: dict[int, dict[int, np.ndarray]] = defaultdict(dict)
    for f in faces:
        by_track[f.track][f.frame] = f.transform
    out: dict[tuple[int, int], np.ndarray] = {}
    for track, series in by_track.items():
        for frame, m in steady_series(series, sigma).items():
            out[(track, frame)] = m
    return out


def _local_mean(values: np.ndarray, x: np.ndarray, sigma: float) -> np.ndarray:
    w = np.exp(-0.5 * (x / sigma) ** 2)
    return (w @ values) / w.sum()


def _local_line(values: np.ndarray, x: np.ndarray, sigma: float) -> np.ndarray:
    """The value at x = 0 of a Gaussian-weighted straight-line fit: inside a run this is the
    weighted mean; at a run's ends, where the window is one-sided, the slope keeps a moving face's
    transform from lagging behind it."""
    w = np.exp(-0.5 * (x / sigma) ** 2)
    s0, s1, s2 = w.sum(), (w * x).sum(), (w * x * x).sum()
    t0, t1 = w @ values, (w * x) @ values
    det = s0 * s2 - s1 * s1
    if len(x) < 3 or det <= 1e-9 * s0 * s0:
        return t0 / s0
    return (t0 * s2 - t1 * s1) / det
