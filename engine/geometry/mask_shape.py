"""Shared piece: shaping masks in face space (erode/dilate uniformly or per side, blur), and the
edge-change figure that measures how much a mask's edge shimmers from frame to frame.

Amounts are fractions of the mask's side, so one setting means the same on a 256 px training crop
and a 512 px faceset. Every edge moves by the asked amount to a fraction of a pixel: integer steps
by morphology, the remainder by interpolating between the two nearest integer results, which for
an anti-aliased edge is a sub-pixel move.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from ..config import check_types, from_dict

LIMIT = 0.5  # an erosion of half the side empties any mask: more is surely a mistake
BIG = 16  # from this many pixels on, erode by distance transform: within half a pixel, 10x sooner


@dataclass(frozen=True)
class MaskShape:
    """Positive erodes (the edge moves inward), negative dilates; per-side amounts move one edge
    only (eroding the top moves the top edge down and leaves the bottom where it was); `blur` is
    the width of the soft edge. All are fractions of the mask's side."""

    erode: float = 0.0
    top: float = 0.0
    bottom: float = 0.0
    left: float = 0.0
    right: float = 0.0
    blur: float = 0.0

    def __post_init__(self) -> None:
        check_types(self, "mask shape option")
        for name in ("erode", "top", "bottom", "left", "right", "blur"):
            value = getattr(self, name)
            if not math.isfinite(value) or abs(value) > LIMIT:
                raise ValueError(f"mask shape option {name!r} must be between -{LIMIT} and {LIMIT}, got {value!r}")
        if self.blur < 0:
            raise ValueError(f"mask shape option 'blur' must not be negative, got {self.blur!r}")

    @classmethod
    def from_dict(cls, d: dict) -> "MaskShape":
        return from_dict(cls, d, "mask shape option")


def _disc(radius: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))


def _uniform(mask: np.ndarray, px: float) -> np.ndarray:
    """Erode (px > 0) or dilate (px < 0) every edge by |px| pixels."""
    op = cv2.erode if px > 0 else cv2.dilate
    n, f = int(math.floor(abs(px))), abs(px) % 1.0
    if n >= BIG:
        return _by_distance(mask, px)
    lo = op(mask, _disc(n)) if n else mask
    if f < 1e-6:
        return lo
    # disc(n) then disc(1) is disc(n + 1) to within a pixel's rounding, at a fraction of the cost
    return (1.0 - f) * lo + f * op(lo, _disc(1))


def _by_distance(mask: np.ndarray, px: float) -> np.ndarray:
    """A large erosion (px > 0) or dilation by |px| from the exact distance to the edge: a big
    elliptical kernel costs a hundred times more. The new edge is one pixel of anti-aliasing."""
    inside = (mask >= 0.5).astype(np.uint8)
    # signed distance from each pixel centre to the 0.5 contour, positive inside
    d_in = cv2.distanceTransform(inside, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    d_out = cv2.distanceTransform(1 - inside, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    signed = np.where(inside > 0, d_in - 0.5, 0.5 - d_out)
    return np.clip(signed - px + 0.5, 0.0, 1.0).astype(np.float32)


def _shifted(mask: np.ndarray, k: int, axis: int, sign: int) -> np.ndarray:
    """mask(p - sign*k) along `axis`, the border row repeated (a mask cut by the crop goes on beyond)."""
    if k == 0:
        return mask
    n = mask.shape[axis]
    k = min(k, n)
    idx = np.clip(np.arange(n) - sign * k, 0, n - 1)
    return np.take(mask, idx, axis=axis)


def _one_side(mask: np.ndarray, px: float, axis: int, towards: int) -> np.ndarray:
    """Move one edge by `px` pixels: the edge facing `towards` (-1: top/left, +1: bottom/right)
    along `axis`; positive moves it inward (a one-sided erosion), negative outward."""
    # eroding the top edge looks upward (min over mask(y - k)); dilating it looks downward
    sign = -towards if px > 0 else towards
    pick = np.minimum if px > 0 else np.maximum
    n, f = int(math.floor(abs(px))), abs(px) % 1.0
    out = mask
    if n:
        # min (or max) over mask(p - sign*k), k = 0..n: one line-shaped morphology, anchored at its end
        shape = (n + 1, 1) if axis == 0 else (1, n + 1)
        anchor = (0, n if sign > 0 else 0) if axis == 0 else (n if sign > 0 else 0, 0)
        op = cv2.erode if px > 0 else cv2.dilate
        out = op(mask, np.ones(shape, np.uint8), anchor=anchor, borderType=cv2.BORDER_REPLICATE)
    if f > 1e-6:
        partial = (1.0 - f) * _shifted(mask, n, axis, sign) + f * _shifted(mask, n + 1, axis, sign)
        out = pick(out, partial)
    return out


def shape_mask(mask: np.ndarray, shape: MaskShape, exclude: np.ndarray | None = None) -> np.ndarray:
    """The mask eroded/dilated (uniformly, then per side), blurred, with `exclude` (a 0..1 mask of
    drawn exclusion zones) taken out last, so no dilation or blur brings an excluded pixel back."""
    out = np.asarray(mask, np.float32)
    side = max(out.shape[:2])
    if shape.erode:
        out = _uniform(out, shape.erode * side)
    for amount, axis, towards in ((shape.top, 0, -1), (shape.bottom, 0, 1), (shape.left, 1, -1), (shape.right, 1, 1)):
        if amount:
            out = _one_side(out, amount * side, axis, towards)
    if shape.blur > 0:
        sigma = shape.blur * side / 4  # the fade spans about four sigmas: blur is its width
        out = cv2.GaussianBlur(out, (0, 0), sigma, borderType=cv2.BORDER_REPLICATE)
    if exclude is not None:
        out = np.minimum(out, 1.0 - np.asarray(exclude, np.float32))
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def edge_length(mask: np.ndarray) -> float:
    """Length of a mask's edge in pixels: the integral of its gradient's magnitude (exact for a
    soft edge, whatever its direction)."""
    gy, gx = np.gradient(np.asarray(mask, np.float64))
    return float(np.hypot(gx, gy).sum())


def edge_change(a: np.ndarray, b: np.ndarray) -> float:
    """Mean displacement of the mask edge between two masks, in pixels: the area that changed
    divided by the edge's length (a circle grown by 1 px scores 1; a box moved sideways by d,
    d times the share of its edge that moved)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    length = (edge_length(a) + edge_length(b)) / 2
    if length <= 0:
        return 0.0
    return float(np.abs(a - b).sum() / length)
