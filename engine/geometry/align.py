"""Shared piece: the 68-point face layout, face types and similarity alignment of faces.

A face is aligned by a similarity transform (rotation, uniform scale, translation) that maps its
landmarks onto a mean-face template. The template lives in a unit square spanned by the eyebrows,
eyes, nose and mouth; each face type crops a square of a given side around it (DeepFaceLab's
coverage figures, so facesets interchange).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# MediaPipe FaceMesh vertex for each point of the common 68-point layout
# (jaw 0-16, brows 17-26, nose 27-35, eyes 36-47, mouth 48-67).
MESH_TO_68 = (
    162, 234, 93, 58, 172, 136, 149, 148, 152, 377, 378, 365, 397, 288, 323, 454, 389,
    71, 63, 105, 66, 107, 336, 296, 334, 293, 301,
    168, 197, 5, 4, 75, 97, 2, 326, 305,
    33, 160, 158, 133, 153, 144, 362, 385, 387, 263, 373, 380,
    61, 39, 37, 0, 267, 269, 291, 405, 314, 17, 84, 181, 78, 82, 13, 312, 308, 317, 14, 87,
)

# Mean frontal face in the 68-point layout, measured by Procrustes averaging FaceMesh landmarks of
# 100 near-frontal frames of nine people, then scaled so that points 17-67 span the unit square.
MEAN_FACE_68 = np.array([
    (-0.0649, 0.1546), (-0.0754, 0.3950), (-0.0674, 0.5148), (-0.0127, 0.7806),
    (0.0380, 0.8912), (0.0940, 0.9728), (0.2244, 1.0979), (0.3701, 1.1773),
    (0.4749, 1.1907), (0.5786, 1.1818), (0.7242, 1.1079), (0.8555, 0.9905),
    (0.9115, 0.9127), (0.9638, 0.8066), (1.0291, 0.5469), (1.0438, 0.4282),
    (1.0512, 0.1884), (0.0000, 0.0920), (0.0924, 0.0779), (0.1716, 0.0532),
    (0.2733, 0.0577), (0.3900, 0.0734), (0.6306, 0.0809), (0.7473, 0.0725),
    (0.8474, 0.0740), (0.9226, 0.1032), (1.0000, 0.1222), (0.5055, 0.2247),
    (0.5034, 0.3491), (0.5014, 0.4640), (0.4998, 0.5356), (0.3875, 0.6059),
    (0.4296, 0.6335), (0.4939, 0.6383), (0.5581, 0.6374), (0.6002, 0.6115),
    (0.1394, 0.2498), (0.1928, 0.2216), (0.2766, 0.2179), (0.3622, 0.2700),
    (0.2844, 0.2829), (0.2028, 0.2812), (0.6458, 0.2778), (0.7342, 0.2281),
    (0.8181, 0.2365), (0.8675, 0.2709), (0.8015, 0.2971), (0.7213, 0.2926),
    (0.2898, 0.8227), (0.3708, 0.7675), (0.4280, 0.7498), (0.4880, 0.7618),
    (0.5486, 0.7528), (0.6064, 0.7731), (0.6872, 0.8314), (0.6047, 0.9206),
    (0.5504, 0.9420), (0.4865, 0.9468), (0.4230, 0.9382), (0.3703, 0.9141),
    (0.3090, 0.8234), (0.4391, 0.8097), (0.4877, 0.8130), (0.5369, 0.8120),
    (0.6678, 0.8310), (0.5371, 0.8561), (0.4875, 0.8587), (0.4383, 0.8535),], dtype=np.float64)

# Brows, nose, eyes and the two mouth corners: these barely move with expression, so an open mouth
# or a dropped jaw does not tilt or shrink the crop.
ALIGN_POINTS = tuple(range(17, 48)) + (48, 54)


@dataclass(frozen=True)
class FaceType:
    """How much of the head an aligned crop holds: `coverage` is the crop side in template units."""

    name: str
    coverage: float
    shift_up: float = 0.0  # centre moved towards the forehead, in template units
    yaw_shift: float = 0.0  # centre moved sideways by this times sin(yaw), towards the back of the head


FACE_TYPES = {
    ft.name: ft
    for ft in (
        FaceType("half", 1.00),
        FaceType("mid_full", 1.19),
        FaceType("full", 1.60),
        FaceType("whole_face", 2.13, shift_up=0.07),
        FaceType("head", 2.98, shift_up=0.50, yaw_shift=0.35),
    )
}


def face_type(name: str) -> FaceType:
    try:
        return FACE_TYPES[name]
    except KeyError:
        raise ValueError(f"unknown face type {name!r}; expected one of {', '.join(FACE_TYPES)}") from None


def umeyama(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity transform (2x3) taking points `src` onto `dst` (Umeyama 1991)."""
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    mean_s, mean_d = src.mean(0), dst.mean(0)
    cs, cd = src - mean_s, dst - mean_d
    cov = cd.T @ cs / len(src)
    u, s, vt = np.linalg.svd(cov)
    d = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[-1] = -1.0  # a reflection is never a valid face alignment
    rot = u @ np.diag(d) @ vt
    var = (cs ** 2).sum() / len(src)
    scale = (s * d).sum() / var if var > 0 else 1.0
    m = np.empty((2, 3))
    m[:, :2] = scale * rot
    m[:, 2] = mean_d - scale * rot @ mean_s
    return m


def template_points(size: int, ftype: FaceType, yaw: float = 0.0) -> np.ndarray:
    """The mean face placed in an aligned crop of `size` pixels of face type `ftype`.

    For a head crop the centre follows the yaw (degrees, > 0 = nose towards the image's right): a
    turned head's skull sits behind the face, so the crop slides that way to keep the whole head.
    """
    centre = np.array([0.5 - ftype.yaw_shift * np.sin(np.radians(yaw)), 0.5 - ftype.shift_up])
    return ((MEAN_FACE_68 - centre) / ftype.coverage + 0.5) * size


def align_transform(landmarks68: np.ndarray, size: int, ftype: FaceType | str = "full", yaw: float = 0.0) -> np.ndarray:
    """The 2x3 frame→crop transform of the face with these landmarks (frame pixels)."""
    if isinstance(ftype, str):
        ftype = face_type(ftype)
    idx = list(ALIGN_POINTS)
    return umeyama(np.asarray(landmarks68)[idx], template_points(size, ftype, yaw)[idx])


def recrop_transform(wide: np.ndarray, size_wide: int, ftype_wide: FaceType | str, landmarks68: np.ndarray,
                     size: int, ftype: FaceType | str, yaw: float = 0.0) -> np.ndarray:
    """The crop→crop transform that turns a stored crop of a wider face type into a narrower one.

    `wide` is the stored frame→crop transform, `landmarks68` the face's frame landmarks: the narrow
    crop is aligned from the same landmarks, so it matches a fresh extraction at that face type.
    """
    if isinstance(ftype, str):
        ftype = face_type(ftype)
    if isinstance(ftype_wide, str):
        ftype_wide = face_type(ftype_wide)
    if ftype.coverage > ftype_wide.coverage:
        raise ValueError(f"a {ftype_wide.name} faceset cannot feed a {ftype.name} model: it holds less of the head")
    narrow = align_transform(landmarks68, size, ftype, yaw)
    return compose(narrow, invert(wide))


def invert(m: np.ndarray) -> np.ndarray:
    """Inverse of a 2x3 affine transform."""
    a, t = np.asarray(m, np.float64)[:, :2], np.asarray(m, np.float64)[:, 2]
    det = a[0, 0] * a[1, 1] - a[0, 1] * a[1, 0]  # closed form: 2x2 inverse, no LAPACK call per frame
    inv = np.array([[a[1, 1], -a[0, 1]], [-a[1, 0], a[0, 0]]]) / det
    return np.hstack([inv, (-inv @ t)[:, None]])


def compose(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """The 2x3 affine transform that applies `inner`, then `outer`."""
    outer, inner = np.asarray(outer, np.float64), np.asarray(inner, np.float64)
    return np.hstack([outer[:, :2] @ inner[:, :2], (outer[:, :2] @ inner[:, 2] + outer[:, 2])[:, None]])


def transform_points(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    pts = np.asarray(pts, np.float64)
    return pts @ m[:, :2].T + m[:, 2]


def rescale(m: np.ndarray, factor: float) -> np.ndarray:
    """The same alignment for a crop `factor` times as large (e.g. 256 px faceset → 64 px model)."""
    return np.asarray(m, np.float64) * factor
