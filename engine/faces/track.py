"""Faces stage: follow faces from frame to frame, one track per person, with steadied landmarks.

Detection is the expensive, jumpy part; landmarks are cheap and precise. So each face, once found,
is followed by running FaceMesh on the region its previous landmarks span, and the detector runs
only on keyframes (to notice people walking in) or while nobody is being followed. A face that
disappears briefly (a hand, a turn) gets its old track id back if it reappears nearby.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .blazeface import BlazeFace, Detection
from .cuts import CutDetector
from .landmarks import LandmarkModel, Mesh, region_from_landmarks, region_from_points
from .smooth import FaceSmoothing, LandmarkSmoother


@dataclass(frozen=True)
class TrackSettings:
    detect_every: int = 10  # frames between keyframes, where the detector looks for new faces
    small_faces_every: int = 100  # frames between the search for small faces in wide shots (~10 keyframes' cost)
    min_presence: float = 0.5  # FaceMesh's own face score below which a followed face is lost
    min_score: float = 0.5  # detector score
    min_size: int = 20  # faces smaller than this many pixels (box side) are ignored
    max_faces: int = 8
    revive_frames: int = 30  # a face lost for up to this many frames keeps its id when it comes back
    cut_threshold: float = 30.0  # mean grey-level change of a thumbnail that may mark a cut between shots
    cut_colour_change: float = 0.35  # ... and the colour histogram change (Bhattacharyya) that confirms it
    smooth: bool = True


@dataclass
class TrackedFace:
    track: int
    box: tuple[float, float, float, float]
    score: float  # detector score when found, FaceMesh presence after
    raw: np.ndarray  # (468, 3) this frame's landmarks as measured
    points: np.ndarray  # (468, 3) steadied landmarks (== raw without smoothing)

    @property
    def size(self) -> float:
        return max(self.box[2] - self.box[0], self.box[3] - self.box[1])


@dataclass
class _Track:
    id: int
    raw: np.ndarray
    box: tuple[float, float, float, float]
    score: float
    filter: LandmarkSmoother
    last_seen: int
    lost: bool = False


def _iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def mesh_box(points: np.ndarray) -> tuple[float, float, float, float]:
    """The box around a face's mesh points, x0 y0 x1 y1 (frame pixels)."""
    lo, hi = points[:, :2].min(0), points[:, :2].max(0)
    return (float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1]))


class FaceTracker:
    """Follows every face of a shot. Feed it frames in order; not thread-safe."""

    def __init__(self, settings: TrackSettings = TrackSettings(), smoothing: FaceSmoothing = FaceSmoothing(),
                 first_track: int = 1) -> None:
        self.s = settings
        self.smoothing = smoothing
        self.detector = BlazeFace(min_score=settings.min_score, min_size=settings.min_size)
        self.mesh = LandmarkModel()
        self._tracks: list[_Track] = []
        self._next_id = first_track
        self._frames = 0
        self._cuts = CutDetector(settings.cut_threshold, settings.cut_colour_change)
        self.detections = 0  # how many frames ran the detector (for progress figures)

    def step(self, frame_bgr: np.ndarray, t: float) -> list[TrackedFace]:
        """The faces of the next frame, largest first; `t` is its time in seconds."""
        index = self._frames
        self._frames += 1
        if self._cuts.step(frame_bgr):
            # across a cut, whoever stands where a face was is someone else: every track ends
            self._tracks = []
        live = [tr for tr in self._tracks if not tr.lost]
        for tr in live:
            mesh = self.mesh.run(frame_bgr, region_from_landmarks(tr.raw))
            box = mesh_box(mesh.points)
            if mesh.presence < self.s.min_presence or box[2] - box[0] < self.s.min_size:
                tr.lost = True
                continue
            tr.raw, tr.box, tr.score, tr.last_seen = mesh.points, box, mesh.presence, index
        self._drop_duplicates()
        live = [tr for tr in self._tracks if not tr.lost]
        keyframe = index % self.s.detect_every == 0
        if keyframe or not live:
            self._find_new(frame_bgr, index, live)
        self._tracks = [tr for tr in self._tracks if not tr.lost or index - tr.last_seen <= self.s.revive_frames]
        out = []
        for tr in self._tracks:
            if tr.lost or tr.last_seen != index:
                continue
            size = max(tr.box[2] - tr.box[0], tr.box[3] - tr.box[1])
            points = tr.filter(tr.raw, t, size).astype(np.float32) if self.s.smooth else tr.raw
            out.append(TrackedFace(tr.id, tr.box, tr.score, tr.raw, points))
        out.sort(key=lambda f: -f.size)
        return out[: self.s.max_faces]

    def _find_new(self, frame_bgr: np.ndarray, index: int, live: list[_Track]) -> None:
        self.detections += 1
        small = index % self.s.small_faces_every == 0
        # rotated footage: retried only on keyframes with nobody followed, as it costs three more passes
        rotations = not live and index % self.s.detect_every == 0
        for det in self.detector.detect(frame_bgr, small_faces=small, rotations=rotations, close_ups=not live):
            if len([tr for tr in self._tracks if not tr.lost]) >= self.s.max_faces:
                break
            if any(_iou(det.box, tr.box) > 0.2 for tr in self._tracks if not tr.lost):
                continue
            mesh = self._mesh_for(frame_bgr, det)
            if mesh is None:
                continue
            box = mesh_box(mesh.points)
            if any(_iou(box, tr.box) > 0.3 for tr in self._tracks if not tr.lost):
                continue
            self._start(mesh, box, det.score, index)

    def _mesh_for(self, frame_bgr: np.ndarray, det: Detection) -> Mesh | None:
        """Landmarks for a fresh detection: once from the detection's region, then refined from themselves."""
        kp = det.keypoints
        corners = np.array([[det.box[0], det.box[1]], [det.box[2], det.box[3]]], np.float64)
        mesh = self.mesh.run(frame_bgr, region_from_points(corners, kp[0], kp[1]))
        if mesh.presence < self.s.min_presence:
            return None
        mesh = self.mesh.run(frame_bgr, region_from_landmarks(mesh.points))
        return mesh if mesh.presence >= self.s.min_presence else None

    def _start(self, mesh: Mesh, box, score: float, index: int) -> None:
        revived = min(
            (tr for tr in self._tracks if tr.lost and _iou(box, tr.box) > 0.2),
            key=lambda tr: index - tr.last_seen, default=None,
        )
        if revived is not None:
            revived.lost, revived.raw, revived.box, revived.score, revived.last_seen = False, mesh.points, box, score, index
            return
        self._tracks.append(_Track(self._next_id, mesh.points, box, score, LandmarkSmoother(self.smoothing), index))
        self._next_id += 1

    def _drop_duplicates(self) -> None:
        """Two tracks that slid onto the same face: the younger one goes."""
        live = sorted((tr for tr in self._tracks if not tr.lost), key=lambda tr: tr.id)
        for i, a in enumerate(live):
            for b in live[i + 1:]:
                if not b.lost and not a.lost and _iou(a.box, b.box) > 0.5:
                    b.lost = True

    def seed(self, track: int, landmarks: np.ndarray) -> None:
        """Follow a face known from the frame before the first one fed (a resumed or extended range)."""
        points = np.zeros((len(landmarks), 3), np.float32)
        points[:, :2] = landmarks[:, :2]
        self._tracks.append(_Track(track, points, mesh_box(points), 1.0, LandmarkSmoother(self.smoothing), -1))
        self._next_id = max(self._next_id, track + 1)
