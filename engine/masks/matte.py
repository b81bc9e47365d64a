"""Masks stage: the matte job, a shot's face mask as a gray PNG sequence for Blender's strip modifiers.

Every face of the chosen person gets its mask (drawn, learned, imported or hull) in face space,
shaped there (erode, blur, per side; drawn exclusions kept out) and smoothed over time along its
track, then warped into the frame; several faces in a frame are combined by their maximum.
Smoothing in face space follows the face as it moves: only the mask's own shimmer is averaged away.
Nothing is decoded but the video's header: masks come from the catalog.
"""

from __future__ import annotations

import math
from collections import defaultdict
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from ..config import check_types, from_dict
from ..errors import Cancelled, EngineError
from ..facesets import FaceRecord
from ..files import sync_folder_of
from ..geometry.align import compose, invert
from ..geometry.mask_shape import MaskShape, shape_mask
from ..geometry.steady import steady_transforms
from ..media.decode import frame_range, probe
from ..media.encode import write_image
from ..workspace import Workspace

PATTERN = "matte_%06d.png"
SOURCES = ("auto", "hull")


@dataclass(frozen=True)
class MatteParams:
    faceset: str
    video: str
    frame_start: int = 0
    frame_end: int | None = None  # exclusive; None = to the end
    output: str | None = None  # folder; None = the workspace's renders/<job id>
    source: str = "auto"  # "auto": each face's best mask (label > learned > imported > hull); "hull"
    shape: MaskShape = field(default_factory=MaskShape)
    temporal: float = 0.0  # smoothing over time: Gaussian sigma in frames, 0 = off

    def __post_init__(self) -> None:
        check_types(self, "matte option")
        if self.source not in SOURCES:
            raise ValueError(f"matte option 'source' must be one of {', '.join(SOURCES)}, got {self.source!r}")
        if not isinstance(self.shape, MaskShape):
            raise ValueError("matte option 'shape' must be a map of erode, blur, top, bottom, left, right")
        if not math.isfinite(self.temporal) or not 0 <= self.temporal <= 10:
            raise ValueError(f"matte option 'temporal' must be between 0 and 10 frames, got {self.temporal!r}")

    @classmethod
    def from_dict(cls, d: dict) -> "MatteParams":
        if isinstance(d, dict) and isinstance(d.get("shape"), dict):
            d = {**d, "shape": MaskShape.from_dict(d["shape"])}
        return from_dict(cls, d, "matte option")


class _TrackSmoother:
    """One track's masks along a run of consecutive frames, released once their smoothing window
    is complete; a gap in the track closes the run (smoothing across it would blend two shots)."""

    def __init__(self, sigma: float) -> None:
        self.sigma = sigma
        self.radius = int(math.ceil(3 * sigma)) if sigma > 0 else 0
        self.items: list[tuple[FaceRecord, np.ndarray, np.ndarray | None]] = []
        self.next = 0  # index in items of the first mask not yet released

    def push(self, face: FaceRecord, mask: np.ndarray, exclude: np.ndarray | None) -> list:
        out = self.close() if self.items and face.frame != self.items[-1][0].frame + 1 else []
        self.items.append((face, mask, exclude))
        return out + self._release(len(self.items) - 1 - self.radius)

    def close(self) -> list:
        out = self._release(len(self.items) - 1)
        self.items, self.next = [], 0
        return out

    def _release(self, last: int) -> list:
        out = []
        while self.next <= last:
            out.append(self._smoothed(self.next))
            self.next += 1
        keep = max(0, self.next - self.radius)  # the window of the next mask to release
        self.items, self.next = self.items[keep:], self.next - keep
        return out

    def _smoothed(self, i: int) -> tuple[FaceRecord, np.ndarray]:
        face, mask, exclude = self.items[i]
        if self.radius:
            acc, norm = np.zeros_like(mask), 0.0
            for j in range(max(0, i - self.radius), min(len(self.items), i + self.radius + 1)):
                w = math.exp(-0.5 * ((j - i) / self.sigma) ** 2)  # centred: no lag behind the face
                acc += np.float32(w) * self.items[j][1]
                norm += w
            mask = acc / np.float32(norm)
            if exclude is not None:  # a neighbour without this frame's exclusion must not bring it back
                mask = np.minimum(mask, 1.0 - exclude)
        return face, mask


def _into(m: np.ndarray | None, crop_to_crop: np.ndarray) -> np.ndarray | None:
    if m is None:
        return None
    side = m.shape[0]
    return cv2.warpAffine(m, crop_to_crop, (side, side), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def face_mask(ws: Workspace, face: FaceRecord, params: MatteParams) -> tuple[np.ndarray, np.ndarray | None]:
    """A face's shaped mask over its crop, and its drawn exclusion zones (None without any)."""
    mask = ws.masks.hull_of(face) if params.source == "hull" else ws.masks.mask_of(face)[0]
    exclude = ws.masks.exclusion_of(face, mask.shape[0])
    return shape_mask(mask, params.shape, exclude), exclude


def to_frame(mask: np.ndarray, face: FaceRecord, width: int, height: int) -> np.ndarray:
    """A face-space mask in frame pixels: the face's frame -> crop transform, sampled backwards."""
    return cv2.warpAffine(mask, face.transform, (width, height), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def faces_in_range(ws: Workspace, faceset: str, media_id: int | None, start: int, end: int) -> list[FaceRecord]:
    """The faceset's chosen person's faces of frames [start, end) of one video."""
    faces = ws.facesets.faces(faceset, media_id) if media_id is not None else []
    return [f for f in faces if start <= f.frame < end]


def frame_mattes(ws: Workspace, params: MatteParams, faces: list[FaceRecord], start: int, end: int,
                 width: int, height: int, should_stop=lambda: False) -> Iterator[tuple[int, np.ndarray]]:
    """(frame index, float32 (height, width) 0..1 matte) for every frame of [start, end), in order.

    A track's mask is released once the frames after it that its smoothing needs are in, so the
    output runs `ceil(3 * temporal)` frames behind the loop and memory holds only that window.
    """
    by_frame: dict[int, list[FaceRecord]] = defaultdict(list)
    for f in faces:
        by_frame[f.frame].append(f)
    smoothers: dict[int, _TrackSmoother] = {}
    ready: dict[int, list[tuple[FaceRecord, np.ndarray]]] = defaultdict(list)
    lag = int(math.ceil(3 * params.temporal)) if params.temporal > 0 else 0
    steady = steady_transforms(faces, params.temporal) if params.temporal > 0 else {}
    emitted = start

    def release(items) -> None:
        for face, mask in items:
            ready[face.frame].append((face, mask))

    def matte(index: int) -> np.ndarray:
        out = np.zeros((height, width), np.float32)
        for face, mask in ready.pop(index, []):
            out = np.maximum(out, to_frame(mask, face, width, height))
        return out

    for index in range(start, end):
        if should_stop():
            raise Cancelled()
        here = by_frame.get(index, [])
        tracks_here = {f.track for f in here}
        for track in [t for t in smoothers if t not in tracks_here]:
            release(smoothers.pop(track).close())  # the track broke off here
        for face in here:
            mask, exclude = face_mask(ws, face, params)
            if steady:  # the crop of the steadied transform: there the face holds still
                m = steady[(face.track, face.frame)]
                crop_to_crop = compose(m, invert(face.transform))
                mask, exclude = _into(mask, crop_to_crop), _into(exclude, crop_to_crop)
                face = replace(face, transform=m)
            release(smoothers.setdefault(face.track, _TrackSmoother(params.temporal)).push(face, mask, exclude))
        while emitted <= index - lag:
            yield emitted, matte(emitted)
            emitted += 1
    for smoother in smoothers.values():
        release(smoother.close())
    while emitted < end:
        yield emitted, matte(emitted)
        emitted += 1


def matte_shot(ws: Workspace, params: MatteParams, out_dir: Path, report, should_stop) -> dict:
    """Write one matte PNG per frame of [frame_start, frame_end): white where the person's face is."""
    info = probe(Path(params.video))
    start, end = frame_range(info, params.frame_start, params.frame_end)
    faces = faces_in_range(ws, params.faceset, ws.media_id(info.path), start, end)
    if not faces:
        raise EngineError("no_faces", f"faceset {params.faceset!r} has no faces in frames {start}..{end} of "
                          f"{info.path.name}; extract them first")
    out_dir.mkdir(parents=True, exist_ok=True)
    writer = ThreadPoolExecutor(max_workers=2, thread_name_prefix="swapline-matte")
    writes: list[Future] = []  # PNG encoding releases the GIL: it overlaps the next frames' masks
    written, total = 0, end - start
    try:
        for index, matte in frame_mattes(ws, params, faces, start, end, info.width, info.height, should_stop):
            image = np.round(np.clip(matte, 0, 1) * 255).astype(np.uint8)
            while len(writes) >= 4:  # a few frames in flight; an I/O error surfaces here
                writes.pop(0).result()
            writes.append(writer.submit(write_image, out_dir / (PATTERN % index), image, False))
            written += 1
            if written % 8 == 0 or written == total:
                report(written / total, f"frame {written}/{total}", {"frames": written})
        for future in writes:
            future.result()
    finally:
        writer.shutdown(wait=True)
    sync_folder_of(out_dir / (PATTERN % start))  # one folder fsync for the whole sequence
    return {"directory": str(out_dir), "pattern": PATTERN, "first_frame": start, "count": written,
            "faces": len(faces)}
