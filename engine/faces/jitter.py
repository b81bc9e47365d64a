"""Faces stage: how much aligned faces jitter from frame to frame, with and without smoothing.

The figure is the mean frame-to-frame motion of the 68 landmarks inside the aligned crop, in % of
the crop's side: what a viewer of the crops (or of merged faces) sees wobble. A still head should
score near zero; talking and turning add real motion, which smoothing must keep.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..geometry.align import MESH_TO_68, align_transform
from ..media.decode import frame_range, iter_frames, probe
from .smooth import FaceSmoothing
from .track import FaceTracker, TrackSettings


def crop_motion(series: list[np.ndarray | None]) -> float:
    """Mean motion (% of crop side) of landmarks in their own aligned crops between consecutive frames.

    `series` holds each frame's (68, 2) landmarks in frame pixels, None where the face was missing.
    """
    steps = []
    previous = None
    for lm in series:
        if lm is None:
            previous = None
            continue
        m = align_transform(lm, 100, "full")
        aligned = np.asarray(lm, np.float64) @ m[:, :2].T + m[:, 2]
        if previous is not None:
            steps.append(np.linalg.norm(aligned - previous, axis=1).mean())
        previous = aligned
    return float(np.mean(steps)) if steps else float("nan")


def measure_jitter(clip: Path, frames: int | None = None, smoothing: FaceSmoothing = FaceSmoothing()) -> dict:
    """Follow the main face of a clip and report its crop motion raw and smoothed."""
    info = probe(clip)
    start, end = frame_range(info, 0, frames)
    tracker = FaceTracker(TrackSettings(small_faces_every=1 << 30), smoothing)
    raw: list[np.ndarray | None] = []
    smooth: list[np.ndarray | None] = []
    main_track = None
    idx = list(MESH_TO_68)
    for index, frame in iter_frames(info.path, start, end):
        faces = tracker.step(frame, index / (info.fps or 25.0))
        if main_track is None and faces:
            main_track = faces[0].track
        face = next((f for f in faces if f.track == main_track), None)
        raw.append(None if face is None else face.raw[idx, :2])
        smooth.append(None if face is None else face.points[idx, :2])
    found = sum(r is not None for r in raw)
    r, s = crop_motion(raw), crop_motion(smooth)
    return {"clip": info.path.name, "frames": end - start, "found": found, "raw": r, "smoothed": s,
            "ratio": s / r if r else float("nan")}
