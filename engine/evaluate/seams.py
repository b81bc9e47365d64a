"""Stage piece (evaluate): the seam at the mask border, the colour step and the edge it draws.

A pasted face whose colour or brightness does not match the skin around it shows a step right at
the mask's border, and a hard mask edge draws a line there. Both are measured across the border
of the mask the merge used (the matte, or the face hull) and compared with the same measure on the
untouched destination frame, which has its own steps there (skin to hair, jaw to neck):

- colour: the border ring split into angular sectors around the mask's centroid; in each sector
  the CIE76 delta E between the mean Lab colour of a band just inside and a band just outside the
  border (bands ~4 % of the face size wide), then the mean over sectors. Sectors keep a mismatch
  that differs around the face (too dark on the lit side, too bright on the other) from cancelling
  out in one mean. 2.3 delta E is about the smallest step a viewer notices side by side.
- gradient: the mean Sobel magnitude of L (Lab lightness per pixel) on the border itself, swapped
  over destination: above 1 the swap draws an edge the shot did not have; about 1 none.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from ..errors import EngineError
from .temporal import ratio
from .types import aggregate

SECTORS = 16
BAND = 0.04  # band width as a share of the face size
MIN_PIXELS = 4  # a sector needs this many pixels in each band to be measured
UNIT = ("colour: mean over border sectors of the CIE76 delta E between the bands inside and outside the mask; "
        "gradient: mean Sobel magnitude of L (Lab, per pixel) on the border, swapped / destination")


def _binary(mask: np.ndarray) -> np.ndarray:
    """The mask as uint8 0/1: uint8 masks are 0..255 (inside from 128), float ones 0..1 (from 0.5)."""
    mask = np.asarray(mask)
    if mask.dtype == bool:
        return mask.astype(np.uint8)
    if np.issubdtype(mask.dtype, np.floating):
        return (mask >= 0.5).astype(np.uint8)
    return (mask >= 128).astype(np.uint8)


def _bands(inside: np.ndarray, widths: tuple[int, ...]) -> list[tuple[np.ndarray, np.ndarray]]:
    """(inner, outer) bool bands for each width, and last the contour as (inside part, outside part):
    pixels by their distance to the nearest pixel on the other side of the border. The frame's
    edge is no border: cv2's distance transform counts nothing beyond the frame as the other side."""
    to_outside = cv2.distanceTransform(inside, cv2.DIST_L2, 5)
    to_inside = cv2.distanceTransform(1 - inside, cv2.DIST_L2, 5)
    inside = inside.astype(bool)
    return [(inside & (to_outside <= w), ~inside & (to_inside <= w)) for w in widths + (1,)]


def border_mask(mask_u8: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(inner band, outer band, contour) as bool HxW: the mask's pixels within `width` px of its
    border, the pixels outside it within `width` px, and the border itself (the pixels next to the
    other side, one each side). The frame's edge is no border: a mask that runs off the frame has
    no band along the edge."""
    if width < 1:
        raise EngineError("bad_request", f"seams: the band width must be at least 1 px, not {width}")
    (inner, outer), (contour_in, contour_out) = _bands(_binary(mask_u8), (width,))
    return inner, outer, contour_in | contour_out


# sRGB -> CIE XYZ (D65), each row divided by the white point, columns in BGR order: Lab's own scale
_SRGB_TO_XYZ = np.array([[0.412453, 0.357580, 0.180423], [0.212671, 0.715160, 0.072169],
                         [0.019334, 0.119193, 0.950227]])
_BGR_TO_XYZN = (_SRGB_TO_XYZ / _SRGB_TO_XYZ.sum(1, keepdims=True))[:, ::-1].T.astype(np.float32).copy()
_LEVELS = np.arange(256) / 255.0
_LINEAR = np.where(_LEVELS <= 0.04045, _LEVELS / 12.92, ((_LEVELS + 0.055) / 1.055) ** 2.4).astype(np.float32)


def _lab(pixels: np.ndarray) -> np.ndarray:
    """CIE Lab (L 0..100, a and b about -128..127) of (n, 3) uint8 BGR pixels, sRGB/D65 (cv2's
    COLOR_BGR2Lab to within 0.5). Written out because cv2's float conversion of a scattered pixel
    list cost more than the rest of the seam measure together."""
    xyz = np.einsum("nc,cx->nx", _LINEAR[pixels], _BGR_TO_XYZN)  # einsum: no BLAS thread woken
    linear_part = xyz <= 0.008856
    f = np.where(linear_part, xyz * 7.787 + 16 / 116, np.cbrt(xyz))
    lightness = np.where(linear_part[:, 1], xyz[:, 1] * 903.3, f[:, 1] * 116 - 16)
    return np.stack([lightness, 500 * (f[:, 0] - f[:, 1]), 200 * (f[:, 1] - f[:, 2])], 1).astype(np.float32)


def _colour_step(lab: np.ndarray, ids: np.ndarray, inner: np.ndarray, outer: np.ndarray,
                 valid: np.ndarray) -> float:
    """Mean over the valid sectors of |mean Lab inside - mean Lab outside| (CIE76); `lab` and
    `ids` (sector numbers) are per ring pixel, `inner` and `outer` say which band each is in."""
    def sector_means(band: np.ndarray) -> np.ndarray:
        counts = np.bincount(ids[band], minlength=SECTORS).astype(np.float64)
        sums = np.stack([np.bincount(ids[band], lab[band, c], minlength=SECTORS) for c in range(3)], 1)
        return sums[valid] / counts[valid, None]

    steps = np.linalg.norm(sector_means(inner) - sector_means(outer), axis=1)
    return float(steps.mean())


def _edge(lightness: np.ndarray, contour: np.ndarray) -> float:
    """Mean gradient magnitude of L on the contour, in L units per pixel (Sobel's 3x3 scale of 8 removed)."""
    gx = cv2.Sobel(lightness, cv2.CV_32F, 1, 0, ksize=3, scale=1 / 8)
    gy = cv2.Sobel(lightness, cv2.CV_32F, 0, 1, ksize=3, scale=1 / 8)
    return float(cv2.magnitude(gx, gy)[contour].mean())


def seam_row(destination_bgr: np.ndarray, result_bgr: np.ndarray, mask_u8: np.ndarray,
             face_size: float) -> dict | None:
    """The seam figures of one frame: {"colour", "colour_destination" (delta E), "gradient",
    "gradient_destination" (L per pixel), "gradient_ratio", "width" (band px), "sectors" (measured)};
    None when the mask is empty, covers the whole frame, or no sector has pixels on both sides.
    The border is the mask's half-way line (uint8 0..255 from 128, float 0..1 from 0.5, or bool):
    for a feathered matte, the middle of its fade. `face_size` (frame px, e.g. the face box's longer
    side) sets the bands' width."""
    if destination_bgr.shape != result_bgr.shape or destination_bgr.ndim != 3:
        raise EngineError("bad_request", f"seams: the result frame is {result_bgr.shape[1::-1]}, "
                                         f"the destination's {destination_bgr.shape[1::-1]} (BGR frames of one size)")
    if np.shape(mask_u8) != destination_bgr.shape[:2]:
        raise EngineError("bad_request", f"seams: the mask is {np.shape(mask_u8)[1::-1]}, "
                                         f"the frame {destination_bgr.shape[1::-1]}")
    if not (math.isfinite(face_size) and face_size > 0):
        raise EngineError("bad_request", f"seams: the face size must be a positive number of pixels, not {face_size}")
    inside = _binary(mask_u8)
    rows, cols = np.flatnonzero(inside.any(1)), np.flatnonzero(inside.any(0))
    if not len(rows) or inside.all():
        return None
    width = max(2, int(round(BAND * face_size)))
    # only the mask's box grown by the band is read, and Lab only of the pixels near the border:
    # converting a whole frame to Lab costs ten times the rest
    h, w = inside.shape
    y0, y1 = max(0, rows[0] - width - 4), min(h, rows[-1] + width + 5)
    x0, x1 = max(0, cols[0] - width - 4), min(w, cols[-1] + width + 5)
    inside = np.ascontiguousarray(inside[y0:y1, x0:x1])
    # the ring holds both bands and every pixel the contour's 3x3 gradient reads
    (inner, outer), (ring_inner, ring_outer), (contour_in, contour_out) = _bands(inside, (width, width + 2))
    if not outer.any():
        return None
    contour = contour_in | contour_out
    ys, xs = np.nonzero(ring_inner | ring_outer)
    moments = cv2.moments(inside, binaryImage=True)  # sectors turn around the mask's centroid
    angle = np.arctan2(ys - moments["m01"] / moments["m00"], xs - moments["m10"] / moments["m00"])
    ids = ((angle + np.pi) * (SECTORS / (2 * np.pi))).astype(np.int64) % SECTORS
    in_inner, in_outer = inner[ys, xs], outer[ys, xs]
    valid = ((np.bincount(ids[in_inner], minlength=SECTORS) >= MIN_PIXELS)
             & (np.bincount(ids[in_outer], minlength=SECTORS) >= MIN_PIXELS))
    if not valid.any():
        return None
    figures = {}
    for name, image in (("", result_bgr), ("_destination", destination_bgr)):
        lab = _lab(image[y0 + ys, x0 + xs])
        lightness = np.zeros(inside.shape, np.float32)
        lightness[ys, xs] = lab[:, 0]
        figures["colour" + name] = _colour_step(lab, ids, in_inner, in_outer, valid)
        figures["gradient" + name] = _edge(lightness, contour)
    figures["gradient_ratio"] = ratio(figures["gradient"], figures["gradient_destination"])
    return {**figures, "width": width, "sectors": int(valid.sum())}


def seam_summary(rows: list[dict | None]) -> dict:
    """Aggregates over the frames measured: the colour step swapped and untouched, the gradient ratio."""
    kept = [r for r in rows if r]
    return {"colour": aggregate(r["colour"] for r in kept),
            "colour_destination": aggregate(r["colour_destination"] for r in kept),
            "gradient_ratio": aggregate(r["gradient_ratio"] for r in kept),
            "unit": UNIT}
