"""Faces stage: detection (MediaPipe BlazeFace) and dense landmarks (MediaPipe FaceMesh)."""

from __future__ import annotations

import os
from dataclasses import dataclass

import cv2
import numpy as np

from ..geometry.align import MESH_TO_68

os.environ.setdefault("GLOG_minloglevel", "2")  # mediapipe's C++ logging floods stderr otherwise

MESH_INPUT = 256  # FaceMesh's own input is 192 px; a little more keeps detail for the crop-level detector


@dataclass(frozen=True)
class DetectedFace:
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 in frame pixels
    score: float
    landmarks: np.ndarray  # (478, 2) float32 frame pixels

    @property
    def landmarks68(self) -> np.ndarray:
        return self.landmarks[list(MESH_TO_68)]

    @property
    def area(self) -> float:
        return (self.box[2] - self.box[0]) * (self.box[3] - self.box[1])


class FaceDetector:
    """Finds faces in BGR frames, largest first. Not thread-safe: one per worker."""

    def __init__(self, min_score: float = 0.5, max_faces: int = 4, min_size: int = 24) -> None:
        import mediapipe as mp  # heavy import, only when a detector is actually needed

        self.min_size = min_size
        self.max_faces = max_faces
        # Full range finds faces from close-ups to a few metres; short range is the fallback for
        # big close-ups that the full-range model sometimes scores low.
        self._detectors = [
            mp.solutions.face_detection.FaceDetection(model_selection=1, min_detection_confidence=min_score),
            mp.solutions.face_detection.FaceDetection(model_selection=0, min_detection_confidence=min_score),
        ]
        self._mesh = mp.solutions.face_mesh.FaceMesh(
            static_image_mode=True, max_num_faces=1, refine_landmarks=True, min_detection_confidence=0.3
        )

    def close(self) -> None:
        for d in self._detectors:
            d.close()
        self._mesh.close()

    def __enter__(self) -> "FaceDetector":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def detect(self, frame: np.ndarray) -> list[DetectedFace]:
        h, w = frame.shape[:2]
        rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        boxes: list[tuple[tuple[float, float, float, float], float]] = []
        for det in self._detectors:
            res = det.process(rgb)
            for d in res.detections or []:
                bb = d.location_data.relative_bounding_box
                box = (bb.xmin * w, bb.ymin * h, (bb.xmin + bb.width) * w, (bb.ymin + bb.height) * h)
                if min(box[2] - box[0], box[3] - box[1]) >= self.min_size:
                    boxes.append((box, float(d.score[0])))
            if boxes:
                break
        faces = []
        for box, score in sorted(boxes, key=lambda b: -(b[0][2] - b[0][0]) * (b[0][3] - b[0][1]))[: self.max_faces]:
            landmarks = self._landmarks(rgb, box)
            if landmarks is not None and not any(_overlaps(box, f.box) for f in faces):
                faces.append(DetectedFace(box, score, landmarks))
        return faces

    def _landmarks(self, rgb: np.ndarray, box) -> np.ndarray | None:
        """FaceMesh on a square crop around the box, mapped back to frame pixels."""
        h, w = rgb.shape[:2]
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        side = max(box[2] - box[0], box[3] - box[1]) * 2.0
        x0, y0 = cx - side / 2, cy - side / 2
        scale = MESH_INPUT / side
        m = np.array([[scale, 0, -x0 * scale], [0, scale, -y0 * scale]], np.float64)
        crop = cv2.warpAffine(rgb, m, (MESH_INPUT, MESH_INPUT), flags=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_CONSTANT)
        res = self._mesh.process(crop)
        if not res.multi_face_landmarks:
            return None
        pts = np.array([(p.x, p.y) for p in res.multi_face_landmarks[0].landmark], np.float32) * MESH_INPUT
        return (pts / scale + np.array([x0, y0], np.float32)).astype(np.float32)


def _overlaps(a, b, limit: float = 0.5) -> bool:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return union > 0 and inter / union > limit
