"""Shared piece: masks drawn from landmarks (the face hull), used by training and merging."""

from __future__ import annotations

import cv2
import numpy as np

from .polygons import fill


def hull_mask(landmarks68: np.ndarray, shape: tuple[int, int], brow_expand: float = 0.25) -> np.ndarray:
    """Face hull mask (float32, 0..1, `shape` = (h, w)) from 68 landmarks in the same pixel space.

    The jaw line plus the eyebrows lifted by `brow_expand` of the brow-to-chin distance, so the
    forehead under the brows belongs to the face: a swap that stops at the brows leaves a seam.
    """
    pts = np.asarray(landmarks68, np.float64)
    chin = pts[8]
    brows = pts[17:27].copy()
    brows += (brows - chin) * brow_expand
    outline = np.vstack([pts[0:17], brows[::-1]])
    hull = cv2.convexHull(outline.astype(np.float32)).reshape(-1, 2)
    return _fill_hulls([hull], shape)


def feather(mask: np.ndarray, erode_px: int, blur_px: int) -> np.ndarray:
    """Erode then blur a 0..1 mask so its edge fades inside the face instead of at the hull."""
    out = mask
    if erode_px > 0:
        k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * erode_px + 1, 2 * erode_px + 1))
        out = cv2.erode(out, k)
    elif erode_px < 0:
        k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (-2 * erode_px + 1, -2 * erode_px + 1))
        out = cv2.dilate(out, k)
    if blur_px > 0:
        k = 2 * blur_px + 1
        out = cv2.GaussianBlur(out, (k, k), 0)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def _grown_hull(pts: np.ndarray, radius: float) -> np.ndarray:
    """Convex hull of `pts` grown outward by `radius` px (its Minkowski sum with a disc).

    Growing the polygon, not dilating the raster, keeps the edge sub-pixel exact and mirror
    symmetric whatever the crop size.
    """
    if radius > 0:
        angles = np.linspace(0.0, 2 * np.pi, 32, endpoint=False)
        disc = np.stack([np.cos(angles), np.sin(angles)], 1) * radius
        pts = (pts[:, None, :] + disc[None]).reshape(-1, 2)
    return cv2.convexHull(pts.astype(np.float32)).reshape(-1, 2)


def _fill_hulls(hulls: list[np.ndarray], shape: tuple[int, int]) -> np.ndarray:
    """Union of polygons given in OpenCV pixels (centres at integers), with exact sub-pixel edges:
    cv2's anti-aliased fill grows a polygon by ~0.7 px and a hull snapped to whole pixels drifts
    up-left, either of which breaks mirror symmetry and makes small crops' masks too big."""
    mask = np.zeros(shape, np.float32)
    for hull in hulls:
        mask = np.maximum(mask, fill(np.asarray(hull, np.float64) + 0.5, shape))
    return mask


def _eye_hulls(pts: np.ndarray, grow: float) -> list[np.ndarray]:
    hulls = []
    for eye in (pts[36:42], pts[42:48]):
        width = np.linalg.norm(eye[3] - eye[0])
        height = (np.linalg.norm(eye[1] - eye[5]) + np.linalg.norm(eye[2] - eye[4])) / 2
        # a closed eye has no height: a third of its width stands in, so the lids stay covered
        hulls.append(_grown_hull(eye, grow * max(height, width / 3)))
    return hulls


def _mouth_hull(pts: np.ndarray, grow: float) -> np.ndarray:
    lips = pts[48:60]
    width = np.linalg.norm(lips[6] - lips[0])
    height = np.linalg.norm(lips[3] - lips[9])
    return _grown_hull(lips, grow * max(height, width / 3))


def eyes_mask(landmarks68: np.ndarray, shape: tuple[int, int], grow: float = 0.5) -> np.ndarray:
    """Both eyes (float32 0..1, `shape` = (h, w)), each grown by `grow` times its height.

    Used to weigh the eyes in training: their hull alone misses the lids and lashes.
    """
    return _fill_hulls(_eye_hulls(np.asarray(landmarks68, np.float64), grow), shape)


def mouth_mask(landmarks68: np.ndarray, shape: tuple[int, int], grow: float = 0.3) -> np.ndarray:
    """The outer lips' hull (float32 0..1), grown by `grow` times the mouth's height."""
    return _fill_hulls([_mouth_hull(np.asarray(landmarks68, np.float64), grow)], shape)


def eyes_mouth_mask(landmarks68: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Eyes and mouth together: the regions eyes/mouth priority weighs up in training."""
    pts = np.asarray(landmarks68, np.float64)
    return _fill_hulls(_eye_hulls(pts, 0.5) + [_mouth_hull(pts, 0.3)], shape)
