"""Faces stage: the extract job, from a video range to aligned faces in a faceset."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2

from ..config import check_types, from_dict
from ..errors import Cancelled, EngineError
from ..geometry.align import FACE_TYPES, align_transform
from ..media.decode import frame_range, iter_frames, probe
from ..media.encode import write_image
from ..workspace import Workspace
from .detect import FaceDetector


@dataclass(frozen=True)
class ExtractParams:
    video: str
    faceset: str
    frame_start: int = 0
    frame_end: int | None = None  # exclusive; None = to the end
    size: int = 256
    face_type: str = "full"
    max_faces: int = 4

    def __post_init__(self) -> None:
        check_types(self, "extract option")

    @classmethod
    def from_dict(cls, d: dict) -> "ExtractParams":
        return from_dict(cls, d, "extract option")


def extract_faces(ws: Workspace, params: ExtractParams, report, should_stop) -> dict:
    """Detect, align and store every face of frames [frame_start, frame_end) of a video."""
    if params.face_type not in FACE_TYPES:
        raise EngineError("bad_request", f"unknown face type {params.face_type!r}")
    if not 64 <= params.size <= 1024:
        raise EngineError("bad_request", f"face size {params.size} is outside 64..1024")
    info = probe(Path(params.video))
    start, end = frame_range(info, params.frame_start, params.frame_end)
    media_id = ws.register_media(info.path, info.width, info.height, info.fps, info.frames)
    faceset_id = ws.ensure_faceset(params.faceset, params.face_type, params.size)
    ws.clear_faces(faceset_id, media_id, start, end)
    out_dir = ws.faceset_dir(params.faceset)
    total, frames_with_faces, stored, done = end - start, 0, 0, 0
    with FaceDetector(max_faces=params.max_faces) as detector:
        for index, frame in iter_frames(info.path, start, end):
            if should_stop():
                raise Cancelled()
            faces = detector.detect(frame)
            for k, face in enumerate(faces):
                m = align_transform(face.landmarks68, params.size, params.face_type)
                crop = cv2.warpAffine(frame, m, (params.size, params.size), flags=cv2.INTER_CUBIC,
                                      borderMode=cv2.BORDER_REPLICATE)
                image = out_dir / f"m{media_id}_f{index:06d}_{k}.jpg"
                write_image(image, crop)
                ws.add_face(faceset_id, media_id, index, k, face.box, face.score, face.landmarks, face.landmarks68, m, image)
            frames_with_faces += bool(faces)
            stored += len(faces)
            done += 1
            report(done / total, f"frame {done}/{total}: {frames_with_faces} with faces",
                   {"frames": done, "faces": stored, "frames_with_faces": frames_with_faces})
    if frames_with_faces == 0:
        raise EngineError("no_faces", f"no face found in frames {start}-{end - 1} of {info.path.name}")
    return {"faceset": params.faceset, "frames": done, "faces": stored, "frames_with_faces": frames_with_faces,
            "media_id": media_id}
