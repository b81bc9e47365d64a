"""Shared piece: decode video frames (OpenCV's bundled FFmpeg) with clear errors for bad input."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import cv2
import numpy as np

from ..errors import EngineError


@dataclass(frozen=True)
class VideoInfo:
    path: Path
    width: int
    height: int
    fps: float
    frames: int


def _open(path: Path) -> cv2.VideoCapture:
    path = Path(path)
    if not path.is_file():
        raise EngineError("not_found", f"video file not found: {path}")
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise EngineError("bad_media", f"cannot decode {path.name}: not a video this engine can read")
    return cap


def probe(path: Path) -> VideoInfo:
    cap = _open(path)
    try:
        info = VideoInfo(
            Path(path).resolve(), int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)),
            float(cap.get(cv2.CAP_PROP_FPS) or 0.0), int(cap.get(cv2.CAP_PROP_FRAME_COUNT)),
        )
    finally:
        cap.release()
    if info.width <= 0 or info.height <= 0 or info.frames <= 0:
        raise EngineError("bad_media", f"{Path(path).name} holds no video frames")
    return info


def frame_range(info: VideoInfo, start: int = 0, end: int | None = None) -> tuple[int, int]:
    """Clamp [start, end) to the video, with a clear error for a range outside it."""
    end = info.frames if end is None else min(int(end), info.frames)
    start = max(0, int(start))
    if start >= end:
        raise EngineError("bad_request", f"frame range {start}..{end} is empty for {info.path.name} ({info.frames} frames)")
    return start, end


def iter_frames(path: Path, start: int = 0, end: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """Yield (source frame index, BGR uint8 frame) for frames [start, end) (to the end when None)."""
    return _frames(path, itertools.count(start) if end is None else range(start, end))


def iter_frames_at(path: Path, frames: Iterable[int]) -> Iterator[tuple[int, np.ndarray]]:
    """Yield (source frame index, BGR uint8 frame) for the given frame numbers only, in increasing
    order. Numbers past the video's end yield nothing."""
    return _frames(path, sorted({int(f) for f in frames}))


def _frames(path: Path, wanted: Iterable[int]) -> Iterator[tuple[int, np.ndarray]]:
    """The frames numbered `wanted` (increasing). The ones between are grabbed (decoded by the codec,
    which needs them as references, but never converted to BGR pixels), not sought past: container
    seeks land on keyframes and would shift frame indices, which must match Blender's strip frames."""
    cap = _open(path)
    try:
        index = 0
        for target in wanted:
            while index < target:
                if not cap.grab():
                    return
                index += 1
            ok, frame = cap.read()
            if not ok:
                return
            yield index, frame
            index += 1
    finally:
        cap.release()
