"""Masks stage: the mask-temporal benchmark, how far a face mask's edge moves from frame to frame on
talking-head clips, with and without smoothing over time.

Each clip's first frames are extracted twice: with the landmarks steadied over time (the default)
and as measured, frame by frame. Every frame's matte (the face's best mask: learned when there is
one, else the landmark hull) is compared with the next one's by `edge_change`: the mean
displacement of the edge in frame pixels, also given as a share of the face's size (the square root
of the mask's area). Part of that change is the head really moving; smoothing may only remove the
rest, so its figure is a floor set by the motion, not zero.
"""

from __future__ import annotations

import math
import statistics
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np

from ..geometry.mask_shape import edge_change
from ..media.decode import frame_range, probe
from ..workspace import Workspace
from .matte import MatteParams, faces_in_range, frame_mattes

SHARED_FACES = Path(__file__).resolve().parents[3] / "shared" / "data" / "faces"
CLIPS = ["Obama_clip1", "andrew_clip_1", "KristiNoem", "feifeili_clip1", "reagan_clip1"]
FRAMES = 150
SIGMA = 1.5  # frames: at 30 fps, ±3 sigma spans 0.3 s

# (workspace, video, faceset, frame_end, steady landmarks) -> None: the faces stage's extraction,
# handed in by the service layer (a stage does not import another)
Extractor = Callable[[Workspace, Path, str, int, bool], None]


def _edge_motion(ws: Workspace, video: Path, faceset: str, sigma: float) -> dict:
    """Mean frame-to-frame edge change (px) and mean face size (px) of a faceset's mattes.

    `change` compares each frame with the next: the head's real motion is part of it. `shimmer`
    compares each frame with the mean of its two neighbours, which steady motion matches and a
    wobble does not: the part of the change that smoothing is meant to remove.
    """
    info = probe(video)
    start, end = frame_range(info, 0, FRAMES)
    faces = faces_in_range(ws, faceset, ws.media_id(info.path), start, end)
    params = MatteParams(faceset=faceset, video=str(video), temporal=sigma)
    changes, shimmers, sizes, last = [], [], [], []
    for _, matte in frame_mattes(ws, params, faces, start, end, info.width, info.height):
        area = float(matte.sum())
        if area <= 0:
            last = []  # a frame without the face breaks the chain
            continue
        sizes.append(math.sqrt(area))
        if last:
            changes.append(edge_change(last[-1], matte))
        if len(last) == 2:
            shimmers.append(edge_change(last[-1], (last[0] + matte) / 2))
        last = (last + [matte])[-2:]
    return {"change": _mean(changes), "shimmer": _mean(shimmers), "face": _mean(sizes), "pairs": len(changes)}


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else float("nan")


def measure_clip(video: Path, extract: Extractor, sigma: float = SIGMA) -> dict:
    """Edge change on one clip for steadied and raw landmarks, without and with smoothing."""
    row: dict = {"clip": video.name}
    with tempfile.TemporaryDirectory() as d:
        ws = Workspace(d)
        try:
            for name, steady in (("steadied", True), ("raw_landmarks", False)):
                extract(ws, video, name, FRAMES, steady)
                plain, smooth = _edge_motion(ws, video, name, 0.0), _edge_motion(ws, video, name, sigma)
                face = plain["face"]
                row[name] = {f"{k}_{which}_{unit}": m[k] * scale
                             for k in ("change", "shimmer") for which, m in (("none", plain), ("smoothed", smooth))
                             for unit, scale in (("px", 1.0), ("pct", 100 / face))}
                row["face_px"], row["pairs"] = face, plain["pairs"]
        finally:
            ws.close()
    return row


def bench_mask_temporal(seconds: float, extract: Extractor, clips: list[Path] | None = None,
                        fallback: Callable[[Path], Path] | None = None) -> dict:
    """The benchmark over several clips, with medians. `fallback(folder)` makes a synthetic clip
    when the shared clips are not here."""
    if clips is None:
        clips = [SHARED_FACES / "train" / f"styletalk__samples_source_video_video_{n}.mp4" for n in CLIPS]
        clips = [c for c in clips if c.is_file()]
    with tempfile.TemporaryDirectory() as d:
        if not clips and fallback is not None:
            clips = [fallback(Path(d))]
        rows = []
        for clip in clips:
            rows.append(measure_clip(clip, extract))
            r = rows[-1]
            for name in ("steadied", "raw_landmarks"):
                m = r[name]
                print(f"  mask-temporal {r['clip'][-30:]} {name}: change {m['change_none_px']:.3f} -> "
                      f"{m['change_smoothed_px']:.3f} px, shimmer {m['shimmer_none_px']:.3f} -> "
                      f"{m['shimmer_smoothed_px']:.3f} px a frame (face {r['face_px']:.0f} px)")
    out: dict = {"unit": "mean edge displacement per frame (px, and % of face size)", "sigma_frames": SIGMA,
                 "frames": FRAMES, "clips": rows}
    for name in ("steadied", "raw_landmarks"):
        out[name] = {k: statistics.median(r[name][k] for r in rows) for k in rows[0][name]} if rows else {}
    return out
