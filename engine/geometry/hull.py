"""Shared piece: masks drawn from landmarks (the face hull), used by training and merging."""

from __future__ import annotations

import cv2
import numpy as np


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
    hull = cv2.convexHull(outline.astype(np.float32))
    mask = np.zeros(shape, np.uint8)
    # 4 fractional bits: a hull snapped to whole pixels drifts up-left and breaks mirror symmetry
    cv2.fillConvexPoly(mask, np.round(hull * 16).astype(np.int32), 255, lineType=cv2.LINE_AA, shift=4)
    return mask.astype(np.float32) / 255.0


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
