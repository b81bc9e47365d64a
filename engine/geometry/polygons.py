"""Shared piece: hand-drawn mask labels (include/exclude polygons): validation, rasterising, and
mapping between an aligned face and its frame.

Coordinates are continuous: a pixel i spans [i, i+1], so a crop of side S spans [0, S] and face
space spans [0, 1]. OpenCV's transforms put pixel centres at integers; the conversion (minus half a
pixel in, plus half out) lives here and nowhere else, so a label drawn on a frame lands on exactly
the same pixels of the aligned crop.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from .align import invert, transform_points

MAX_POLYGONS = 256
MAX_POINTS = 4096
COORD_LIMIT = 1e6  # far beyond any frame; keeps sub-pixel fixed-point rasterising inside int32
_SHIFT = 8  # fractional bits handed to cv2.fillPoly


def check_polygons(value) -> list[dict]:
    """A label from outside (the wire, a JSON file) as clean polygons, or ValueError saying what is wrong."""
    if not isinstance(value, list):
        raise ValueError(f"polygons must be a list, got {type(value).__name__}")
    if len(value) > MAX_POLYGONS:
        raise ValueError(f"{len(value)} polygons is more than the {MAX_POLYGONS} a label may hold")
    out = []
    for i, poly in enumerate(value):
        if not isinstance(poly, dict):
            raise ValueError(f"polygon {i} must be a map with 'include' and 'points'")
        unknown = sorted(set(poly) - {"include", "points"})
        if unknown:
            raise ValueError(f"polygon {i} has unknown key {unknown[0]!r}")
        include, points = poly.get("include", True), poly.get("points")
        if not isinstance(include, bool):
            raise ValueError(f"polygon {i}: 'include' must be true or false")
        if not isinstance(points, list) or not 3 <= len(points) <= MAX_POINTS:
            raise ValueError(f"polygon {i}: 'points' must be a list of 3 to {MAX_POINTS} [x, y] pairs")
        clean = []
        for p in points:
            if not isinstance(p, (list, tuple)) or len(p) != 2 or not all(
                    isinstance(v, (int, float)) and not isinstance(v, bool) for v in p):
                raise ValueError(f"polygon {i}: every point must be a pair of numbers [x, y], got {p!r}")
            x, y = float(p[0]), float(p[1])
            if not (math.isfinite(x) and math.isfinite(y)) or abs(x) > COORD_LIMIT or abs(y) > COORD_LIMIT:
                raise ValueError(f"polygon {i}: point {p!r} is not a finite coordinate within ±{COORD_LIMIT:g}")
            clean.append([x, y])
        out.append({"include": include, "points": clean})
    return out


def _clip(points: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Sutherland-Hodgman clipping to a box: far-away vertices would overflow fixed point, and moving
    them instead of cutting the edges would bend what is visible."""
    pts = points
    for axis in (0, 1):
        for bound, inside in ((lo[axis], lambda v, b: v >= b), (hi[axis], lambda v, b: v <= b)):
            if len(pts) == 0:
                return pts
            nxt = np.roll(pts, -1, axis=0)
            keep = []
            for a, b in zip(pts, nxt):
                ia, ib = inside(a[axis], bound), inside(b[axis], bound)
                if ia:
                    keep.append(a)
                if ia != ib:
                    t = (bound - a[axis]) / (b[axis] - a[axis])
                    keep.append(a + t * (b - a))
            pts = np.array(keep, np.float64).reshape(-1, 2)
    return pts


def fill(points: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Area coverage (float32 0..1, `shape` = (h, w)) of one polygon in continuous pixel coordinates.

    Supersampled fill, then area averaging. cv2's fill counts the pixels its edges touch as inside
    (half a sample too far out on every side); drawing those at half weight makes the edge unbiased,
    so a mask that is eroded, mirrored or moved by a fraction of a pixel really moves that much.
    """
    h, w = shape
    out = np.zeros((h, w), np.float32)
    pts = _clip(np.asarray(points, np.float64).reshape(-1, 2), np.array([-1.0, -1.0]), np.array([w + 1.0, h + 1.0]))
    if len(pts) < 3:
        return out
    x0, y0 = max(0, math.floor(pts[:, 0].min())), max(0, math.floor(pts[:, 1].min()))
    x1, y1 = min(w, math.ceil(pts[:, 0].max())), min(h, math.ceil(pts[:, 1].max()))
    if x1 <= x0 or y1 <= y0:
        return out
    k = max(2, min(8, 4096 // max(x1 - x0, y1 - y0)))  # 1/8 px steps where memory allows
    ss = np.zeros(((y1 - y0) * k, (x1 - x0) * k), np.uint8)
    q = np.round(((pts - [x0, y0]) * k - 0.5) * (1 << _SHIFT)).astype(np.int32)
    cv2.fillPoly(ss, [q], 254, cv2.LINE_8, _SHIFT)
    cv2.polylines(ss, [q], True, 127, 1, cv2.LINE_8, _SHIFT)
    out[y0:y1, x0:x1] = cv2.resize(ss, (x1 - x0, y1 - y0), interpolation=cv2.INTER_AREA)
    return out / 254.0


def rasterize_pixels(polygons: list[dict], shape: tuple[int, int]) -> np.ndarray:
    """Polygons in continuous pixel coordinates, applied in order (include adds, exclude removes)."""
    mask = np.zeros(shape, np.float32)
    for poly in polygons:
        area = fill(np.asarray(poly["points"], np.float64), shape)
        mask = np.maximum(mask, area) if poly["include"] else np.minimum(mask, 1.0 - area)
    return mask


def rasterize(polygons: list[dict], size: int) -> np.ndarray:
    """A face-space label as a (size, size) float32 0..1 mask of the aligned crop."""
    return rasterize_pixels(_scaled(polygons, size), (size, size))


def exclusion(polygons: list[dict], size: int) -> np.ndarray | None:
    """What the label's exclude polygons leave excluded at the end (an include drawn later re-adds),
    as a (size, size) float32 mask; None when the label excludes nothing."""
    if not any(not p["include"] for p in polygons):
        return None
    zone = np.zeros((size, size), np.float32)
    for poly in _scaled(polygons, size):
        area = fill(np.asarray(poly["points"], np.float64), (size, size))
        zone = np.minimum(zone, 1.0 - area) if poly["include"] else np.maximum(zone, area)
    return zone


def _scaled(polygons: list[dict], factor: float) -> list[dict]:
    return [{"include": p["include"], "points": (np.asarray(p["points"], np.float64) * factor).tolist()}
            for p in polygons]


def _mapped(polygons: list[dict], fn) -> list[dict]:
    return [{"include": p["include"], "points": fn(np.asarray(p["points"], np.float64).reshape(-1, 2)).tolist()}
            for p in polygons]


def face_to_frame(polygons: list[dict], transform: np.ndarray, crop_size: int) -> list[dict]:
    """Face-space polygons (fractions of the crop) in frame pixels (continuous coordinates)."""
    back = invert(transform)
    return _mapped(polygons, lambda p: transform_points(back, p * crop_size - 0.5) + 0.5)


def frame_to_face(polygons: list[dict], transform: np.ndarray, crop_size: int) -> list[dict]:
    """Frame-pixel polygons (continuous coordinates) as fractions of the face's aligned crop."""
    m = np.asarray(transform, np.float64)
    return _mapped(polygons, lambda p: (transform_points(m, p - 0.5) + 0.5) / crop_size)
