"""Merge stage: the merge job, from a trained model and a destination video to merged PNG frames."""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..config import check_types, from_dict
from ..errors import Cancelled, EngineError
from ..geometry.align import align_transform, compose, invert, rescale, transform_points
from ..geometry.hull import feather, hull_mask
from ..media.decode import frame_range, iter_frames, probe
from ..media.encode import write_image
from ..models.swapper import FaceSwapper
from ..workspace import Workspace
from .blend import paste_face, reinhard_transfer

CROP = 256  # aligned crop size used while merging; the model's output is upscaled to it


@dataclass(frozen=True)
class MergeParams:
    model: str
    video: str
    faceset: str
    frame_start: int = 0
    frame_end: int | None = None
    output: str | None = None
    erode: float = 0.04  # mask erosion, fraction of the crop: keeps the seam inside the face
    blur: float = 0.06   # mask feather, fraction of the crop
    # How far the mask reaches above the brows (fraction of brow-to-chin). Less than training's
    # 0.25: hat brims and fringes that the source had there must not be pasted onto the destination.
    forehead: float = 0.1
    batch_size: int = 8

    def __post_init__(self) -> None:
        check_types(self, "merge option")

    @classmethod
    def from_dict(cls, d: dict) -> "MergeParams":
        return from_dict(cls, d, "merge option")


def merge_shot(ws: Workspace, params: MergeParams, out_dir: Path, report, should_stop) -> dict:
    """Swap every frame of [frame_start, frame_end) that has a face; copy the others unchanged."""
    info = probe(Path(params.video))
    start, end = frame_range(info, params.frame_start, params.frame_end)
    media_id = ws.media_id(info.path)
    faces = {f.frame: f for f in ws.facesets.faces(params.faceset, media_id)} if media_id is not None else {}
    if not faces:
        raise EngineError("no_faces", f"faceset {params.faceset!r} has no faces of {info.path.name}; extract it first")
    swapper = FaceSwapper.load(ws.model_dir(params.model))
    size = ws.facesets.get(params.faceset)["size"]
    masked = ws.masks.masked(params.faceset)  # faces with a drawn, learned or imported mask

    def face_mask(face, m: np.ndarray) -> np.ndarray:
        """The destination face's mask in the merge crop `m`: its drawn or learned one (a hand or a
        microphone over the face stays in front of the swap), else the landmark hull."""
        if face.id in masked:
            stored = ws.masks.mask_of(face)[0]
            return cv2.warpAffine(stored, compose(m, invert(face.transform)), (CROP, CROP), flags=cv2.INTER_LINEAR)
        return hull_mask(transform_points(m, face.landmarks68), (CROP, CROP), params.forehead)

    def crop_transform(face) -> np.ndarray:
        if swapper.face_type and swapper.face_type != face.face_type:
            return align_transform(face.landmarks68, CROP, swapper.face_type, face.yaw)  # the model's crop
        return rescale(face.transform, CROP / size)
    out_dir.mkdir(parents=True, exist_ok=True)
    pending: list[tuple[int, np.ndarray]] = []
    total, swapped, written = end - start, 0, 0
    # PNG encoding is a third of the merge time and releases the GIL: it overlaps the next batch
    writer = ThreadPoolExecutor(max_workers=2, thread_name_prefix="swapline-png")
    writes: list[Future] = []

    def flush() -> None:
        nonlocal swapped, written
        with_face = [(i, fr) for i, fr in pending if i in faces]
        if with_face:
            ms = [crop_transform(faces[i]) for i, _ in with_face]
            crops = np.stack([cv2.warpAffine(fr, m, (CROP, CROP), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE)
                              for (_, fr), m in zip(with_face, ms)])
            predicted, _ = swapper.swap(crops)
        merged = {}
        for k, (i, fr) in enumerate(with_face):
            mask = feather(face_mask(faces[i], ms[k]), int(params.erode * CROP), int(params.blur * CROP))
            face = reinhard_transfer(predicted[k], crops[k], mask)
            merged[i] = paste_face(fr, face, mask, ms[k])
        for future in writes:
            future.result()  # at most one batch in flight, and an I/O error surfaces here
        writes[:] = [writer.submit(write_image, out_dir / f"frame_{i:06d}.png", merged.get(i, fr)) for i, fr in pending]
        swapped += len(with_face)
        written += len(pending)
        pending.clear()

    try:
        for index, frame in iter_frames(info.path, start, end):
            if should_stop():
                raise Cancelled()
            pending.append((index, frame))
            if len(pending) >= params.batch_size:
                flush()
                done = index - start + 1
                report(done / total, f"frame {done}/{total}", {"frames": done, "swapped": swapped})
        flush()
        for future in writes:
            future.result()
    finally:
        writer.shutdown(wait=True)
    ws.record_render(out_dir.name, params.model, media_id, out_dir, start, written)
    return {"directory": str(out_dir), "pattern": "frame_%06d.png", "first_frame": start, "count": written,
            "swapped": swapped}
