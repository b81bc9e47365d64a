"""Building block: how usable an aligned face crop is: its sharpness, brightness and gray histogram.

Every measure looks at the face itself (the mask, or the crop's central square) on a copy scaled to
a fixed size, so the same face gives about the same numbers whether it was stored at 128 or 512 px.
"""

from __future__ import annotations

import cv2
import numpy as np

QUALITY_SIZE = 128  # px: a crop is measured as if it were this size
CENTRE = 0.6  # the central square's side, as a fraction of the crop: the face without hair or background
HISTOGRAM_BINS = 64

_SIDE = int(round(QUALITY_SIZE * CENTRE))  # the central square at QUALITY_SIZE


def _gray(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        return image
    return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY if image.shape[2] == 3 else cv2.COLOR_BGRA2GRAY)


def _scaled(gray: np.ndarray, side: int) -> np.ndarray:
    if gray.shape[0] == side and gray.shape[1] == side:
        return gray
    shrink = gray.shape[0] > side and gray.shape[1] > side
    return cv2.resize(gray, (side, side), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def _central(crop: np.ndarray, margin: int) -> np.ndarray:
    """The central square of the crop, widened by `margin` QUALITY_SIZE pixels on each side; at
    QUALITY_SIZE it is exactly _SIDE + 2 * margin pixels, so it needs no resampling there."""
    h, w = crop.shape[:2]
    rows, cols = (max(1, int(round((_SIDE + 2 * margin) * n / QUALITY_SIZE))) for n in (h, w))
    top, left = max((h - rows) // 2, 0), max((w - cols) // 2, 0)
    return crop[top:top + rows, left:left + cols]


def _mask_region(mask: np.ndarray) -> np.ndarray | None:
    """The face as a 0/1 uint8 QUALITY_SIZE² map (cv2's mask form); None when the mask is empty."""
    m = np.asarray(mask)
    if m.ndim == 3:
        m = np.ascontiguousarray(m[..., 0])
    if m.dtype not in (np.uint8, np.float32):
        m = m.astype(np.float32)
    top = cv2.minMaxLoc(m)[1] if m.size else 0.0
    if top <= 0:
        return None
    region = (cv2.resize(m, (QUALITY_SIZE, QUALITY_SIZE), interpolation=cv2.INTER_LINEAR) > top / 2).view(np.uint8)
    return region if region.any() else None


def face_quality(crop_bgr: np.ndarray, mask: np.ndarray | None = None) -> tuple[float, float]:
    """(sharpness, brightness) of an aligned face crop (BGR, BGRA or gray).

    sharpness: variance of the Laplacian of the gray face at QUALITY_SIZE px; blurred faces score
    low, and only comparisons within a faceset mean much. brightness: mean luma of the face, 0..255.
    `mask` (any size, nonzero = face) picks the face's pixels; without it, or when it is empty, the
    central square does.
    """
    region = _mask_region(mask) if mask is not None else None
    if region is not None:
        gray = _scaled(_gray(crop_bgr), QUALITY_SIZE)
        _, std = cv2.meanStdDev(cv2.Laplacian(gray, cv2.CV_32F), mask=region)
        return float(std[0, 0]) ** 2, float(cv2.mean(gray, mask=region)[0])
    # only the central square (plus a pixel, so its edge sees real neighbours) is converted and
    # scaled: three times cheaper on a 512 px crop than scaling all of it
    gray = _scaled(_gray(_central(crop_bgr, 1)), _SIDE + 2)
    lap = cv2.Laplacian(gray, cv2.CV_32F)[1:-1, 1:-1]
    return float(lap.var()), float(gray[1:-1, 1:-1].mean())


def gray_histogram(crop: np.ndarray, bins: int = HISTOGRAM_BINS) -> np.ndarray:
    """Normalised (sums to 1) histogram of the central square's luma, float32, for comparing faces."""
    gray = np.ascontiguousarray(_gray(_central(crop, 0)))
    hist = cv2.calcHist([gray], [0], None, [bins], [0, 256]).ravel()
    return (hist / max(float(hist.sum()), 1.0)).astype(np.float32)


def histogram_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Bhattacharyya distance (0 = same, 1 = disjoint) between normalised histograms: rows of `a`
    against rows of `b`, or two single histograms."""
    overlap = np.sqrt(np.clip(a, 0, None)) @ np.sqrt(np.clip(b, 0, None)).T
    return np.sqrt(np.clip(1.0 - overlap, 0.0, 1.0))
