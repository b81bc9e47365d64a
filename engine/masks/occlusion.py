"""Masks stage: synthetic occluders with a known ground truth, pasted over real aligned faces.

Measuring a learned mask needs faces whose true mask is known. Hands, microphones and locks of hair
are drawn over real aligned crops, so the truth is exact: the face region (the landmark hull with
the forehead lifted by brow_expand 0.25, as hull_mask draws it) minus the occluder's pixels. The
plain hull, which ignores what lies in front of the face, is the baseline a learned mask must beat.

The occluders are drawn, not pasted from photographs: a hand takes its colour from the face itself
(the hardest case for a segmenter: same skin on both sides of the edge), with shading and creases;
a microphone is a dark meshed head on a handle that leaves the crop; hair is bunches of thin curved
strokes. Each comes with its own alpha, so the truth follows the drawn pixels exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import cv2
import numpy as np

from engine.geometry.hull import hull_mask

SHIFT = 4  # fractional bits for cv2 drawing: smooth sub-pixel outlines
_ONE = 1 << SHIFT


@dataclass
class Occluded:
    """A face with occluders drawn over it, and its masks (all (S,S) float32 0/1 except `alpha`)."""

    image: np.ndarray  # (S,S,3) uint8 BGR
    truth: np.ndarray  # the face region minus the occluders: what a perfect mask would be
    hull: np.ndarray  # the face region alone (the landmark hull)
    alpha: np.ndarray  # the occluders' coverage, 0..1
    kinds: list[str]


def face_region(landmarks68: np.ndarray, size: int, brow_expand: float = 0.25) -> np.ndarray:
    """The landmark hull as a 0/1 mask (crop-pixel landmarks)."""
    return (hull_mask(landmarks68, (size, size), brow_expand) >= 0.5).astype(np.float32)


def _pts(points: np.ndarray) -> np.ndarray:
    return np.round(np.asarray(points, np.float64) * _ONE).astype(np.int32)


def _capsule(canvas: np.ndarray, a, b, width: float, value: float = 1.0) -> None:
    """A thick line with round ends (a finger, a handle, a strand) into a float canvas."""
    cv2.line(canvas, tuple(_pts(a)), tuple(_pts(b)), value, max(1, int(round(width))), cv2.LINE_AA, SHIFT)


def _ellipse(canvas: np.ndarray, centre, axes, angle_deg: float, value: float = 1.0) -> None:
    cv2.ellipse(canvas, tuple(_pts(centre)), tuple(_pts(axes)), angle_deg, 0, 360, value, -1, cv2.LINE_AA, SHIFT)


def _face_scale(lm: np.ndarray) -> float:
    return float(np.linalg.norm(lm[16] - lm[0]))


def skin_colour(image: np.ndarray, lm: np.ndarray) -> np.ndarray:
    """Median BGR of the cheeks and nose (inside the hull, away from eyes and mouth)."""
    region = np.zeros(image.shape[:2], np.uint8)
    cv2.fillConvexPoly(region, np.round(np.vstack([lm[1:4], lm[31:36], lm[13:16]])).astype(np.int32), 1)
    pixels = image[region > 0]
    return np.median(pixels, axis=0).astype(np.float32) if len(pixels) else np.array([120, 140, 180], np.float32)


def _shade(alpha: np.ndarray, colour: np.ndarray, rng: np.random.Generator, light: float = 0.35) -> np.ndarray:
    """Colour an occluder with a directional light and darker, softened edges (it looks round)."""
    s = alpha.shape[0]
    ys, xs = np.mgrid[0:s, 0:s].astype(np.float32) / s
    angle = rng.uniform(0, 2 * np.pi)
    ramp = 1.0 + light * ((xs - 0.5) * np.cos(angle) + (ys - 0.5) * np.sin(angle)) * 2
    inner = cv2.GaussianBlur(alpha, (0, 0), max(1.0, s / 60))
    edge = 0.75 + 0.25 * np.clip(inner, 0, 1)  # falls off towards the outline
    noise = cv2.resize(rng.normal(1.0, 0.04, (s // 8, s // 8)).astype(np.float32), (s, s))
    return colour[None, None, :] * (ramp * edge * noise)[..., None]


def add_hand(image: np.ndarray, lm: np.ndarray, rng: np.random.Generator,
             skin: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A hand (palm, four fingers, thumb, wrist to the crop's edge) over the lower or side face."""
    s, w = image.shape[0], _face_scale(lm)
    alpha = np.zeros((s, s), np.float32)
    target = lm[int(rng.choice([48, 54, 57, 8, 3, 13, 30]))] + rng.normal(0, 0.08 * w, 2)
    up = rng.uniform(-np.pi, 0)  # fingers point upward-ish; the wrist leaves the crop below/aside
    d = np.array([np.cos(up), np.sin(up)])
    side = np.array([-d[1], d[0]])
    scale = rng.uniform(0.8, 1.15) * w
    palm = target - d * 0.15 * scale
    _ellipse(alpha, palm, (0.2 * scale, 0.24 * scale), np.degrees(up) + 90)
    _capsule(alpha, palm, palm - d * 1.5 * s, 0.34 * scale)  # wrist and arm, out of the crop
    spread = rng.uniform(0.0, 0.25)
    creases = []
    for k in range(4):
        off = (k - 1.5) * 0.1 * scale
        base = palm + d * 0.16 * scale + side * off
        fd = d * np.cos(spread * (k - 1.5)) + side * np.sin(spread * (k - 1.5))
        length = scale * rng.uniform(0.25, 0.36) * (0.8 if k in (0, 3) else 1.0)
        if rng.random() < 0.2:
            length *= 0.45  # a bent finger
        _capsule(alpha, base, base + fd * length, 0.095 * scale)
        creases.append((base, base + fd * length * 0.9))
    thumb_side = 1 if rng.random() < 0.5 else -1
    t0 = palm + side * thumb_side * 0.15 * scale
    _capsule(alpha, t0, t0 + (side * thumb_side * 0.7 + d * 0.7) * 0.28 * scale, 0.11 * scale)
    colour = skin if skin is not None else skin_colour(image, lm)
    colour = np.clip(colour * rng.uniform(0.85, 1.15, 3), 10, 250).astype(np.float32)
    rgb = _shade(alpha, colour, rng)
    lines = np.zeros((s, s), np.float32)  # dark gaps between fingers
    for a, b in creases[1:]:
        _capsule(lines, a - side * 0.05 * scale, b - side * 0.05 * scale, max(1, 0.012 * scale))
    rgb *= (1 - 0.35 * cv2.GaussianBlur(lines, (0, 0), 1.0))[..., None]
    return rgb, alpha


def add_microphone(image: np.ndarray, lm: np.ndarray, rng: np.random.Generator,
                   skin: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A handheld microphone: meshed ball head near the mouth, handle leaving the crop."""
    s, w = image.shape[0], _face_scale(lm)
    alpha = np.zeros((s, s), np.float32)
    head = lm[int(rng.choice([57, 8, 48, 54]))] + rng.normal(0, 0.1 * w, 2)
    radius = rng.uniform(0.12, 0.2) * w
    angle = rng.uniform(0.3, np.pi - 0.3)  # the handle points down-ish
    d = np.array([np.cos(angle), np.sin(angle)])
    _capsule(alpha, head, head + d * 1.5 * s, radius * rng.uniform(0.6, 0.9))
    _ellipse(alpha, head, (radius, radius * rng.uniform(0.95, 1.15)), np.degrees(angle))
    ys, xs = np.mgrid[0:s, 0:s].astype(np.float32)
    on_head = ((xs - head[0]) ** 2 + (ys - head[1]) ** 2) <= (radius * 1.05) ** 2
    base = rng.uniform(25, 80)
    rgb = np.full((s, s, 3), base, np.float32) * rng.uniform(0.9, 1.1, 3).astype(np.float32)
    if rng.random() < 0.25:  # a coloured foam cover
        rgb[on_head] = rng.uniform(40, 200, 3)
    period = max(2.0, radius / rng.uniform(3, 6))
    mesh = (np.sin((xs + ys) / period * np.pi) * np.sin((xs - ys) / period * np.pi)) > 0.3
    rgb[on_head & mesh] *= 1.6
    shade = _shade(alpha, np.ones(3, np.float32), rng, light=0.5)
    return rgb * shade, alpha


def add_hair(image: np.ndarray, lm: np.ndarray, rng: np.random.Generator,
             skin: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Locks of hair: bunches of thin dark curved strokes falling over the forehead, an eye or a cheek."""
    s, w = image.shape[0], _face_scale(lm)
    alpha = np.zeros((s, s), np.float32)
    chin = lm[8]
    colour = np.array(rng.choice([[15, 15, 20], [20, 35, 55], [40, 70, 110], [90, 150, 190], [60, 60, 70]]),
                      np.float32) * rng.uniform(0.8, 1.2)
    for _ in range(int(rng.integers(1, 4))):
        brow = lm[int(rng.integers(17, 27))]
        start = brow + (brow - chin) * rng.uniform(0.35, 0.6) + rng.normal(0, 0.1 * w, 2)
        end = lm[int(rng.choice([36, 39, 42, 45, 30, 2, 14, 48, 54]))] + rng.normal(0, 0.12 * w, 2)
        bend = (end - start)[::-1] * np.array([1, -1]) * rng.uniform(-0.4, 0.4)
        width = rng.uniform(0.06, 0.16) * w  # the lock's width
        strands = int(rng.integers(10, 30))
        thick = rng.uniform(0.008, 0.016) * w
        t = np.linspace(0, 1, 24)[:, None]
        for k in range(strands):
            off = (rng.random() - 0.5) * width
            normal = (end - start)[::-1] * np.array([1, -1]) / (np.linalg.norm(end - start) + 1e-6)
            a = start + normal * off
            b = end + normal * off * rng.uniform(0.2, 0.8) + rng.normal(0, 0.02 * w, 2)
            c = (a + b) / 2 + bend + rng.normal(0, 0.03 * w, 2)
            curve = (1 - t) ** 2 * a + 2 * (1 - t) * t * c + t**2 * b
            cv2.polylines(alpha, [_pts(curve)], False, 1.0, max(1, int(round(thick))), cv2.LINE_AA, SHIFT)
    return _shade(alpha, colour, rng, light=0.2), alpha


OCCLUDERS: dict[str, Callable[..., tuple[np.ndarray, np.ndarray]]] = {
    "hand": add_hand, "microphone": add_microphone, "hair": add_hair,
}


def occlude(image: np.ndarray, lm: np.ndarray, rng: np.random.Generator, kinds: list[str] | None = None,
            skin: np.ndarray | None = None, brow_expand: float = 0.25) -> Occluded:
    """Draw one or two occluders (random kinds unless given) over a face crop with crop-pixel landmarks."""
    s = image.shape[0]
    if kinds is None:
        kinds = list(rng.choice(list(OCCLUDERS), size=int(rng.integers(1, 3)), replace=False))
    out = image.astype(np.float32)
    coverage = np.zeros((s, s), np.float32)
    for kind in kinds:
        rgb, alpha = OCCLUDERS[kind](image, lm, rng, skin)
        alpha = np.clip(alpha, 0, 1)
        out = out * (1 - alpha[..., None]) + np.clip(rgb, 0, 255) * alpha[..., None]
        coverage = np.maximum(coverage, alpha)
    hull = face_region(lm, s, brow_expand)
    truth = hull * (coverage < 0.5)
    return Occluded(np.clip(out + 0.5, 0, 255).astype(np.uint8), truth.astype(np.float32), hull, coverage,
                    [str(k) for k in kinds])


def iou(a: np.ndarray, b: np.ndarray, threshold: float = 0.5) -> float:
    """Intersection over union of two masks, each thresholded at `threshold`."""
    a, b = a >= threshold, b >= threshold
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0
