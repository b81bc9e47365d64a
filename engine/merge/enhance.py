"""Merge stage: detail of the predicted face, matched to the destination's: sharpen or soften,
motion blur, and degradation (denoise, resolution, colour depth) toward a soft or compressed shot.

All work on the aligned crop (uint8 BGR); sizes are given for a 256 px crop and scale with the crop,
so a setting looks the same at any merge resolution. Every step is skipped when its amount is zero.
"""

from __future__ import annotations

import cv2
import numpy as np

from .settings import MergeSettings

_REF = 256  # the crop size the pixel radii below are tuned for
_SHARPEN_SIGMA = 1.5  # px: the detail an unsharp mask lifts (skin pores, lashes at 256 px)
_SOFTEN_SIGMA = 3.0  # px at full softening
_SHARPEN_GAIN = 2.0  # amount 1: the high frequencies lifted by this much (x3 in all)
_MAX_SHRINK = 4.0  # bicubic 1: shrink by this factor and enlarge again
_MAX_SMEAR = 0.25  # motion blur: a smear at most this fraction of the crop (a fast turn)


def sharpen(face: np.ndarray, mode: str, amount: float) -> np.ndarray:
    """`amount` > 0: unsharp mask (the face plus `amount` times its detail above a box or Gaussian
    blur); < 0: soften, a blur whose radius grows with -amount. 0 returns the face."""
    if amount == 0:
        return face
    if mode not in ("box", "gaussian"):
        raise ValueError(f"sharpen mode must be box or gaussian, not {mode!r}")
    scale = face.shape[0] / _REF
    sigma = (_SHARPEN_SIGMA if amount > 0 else _SOFTEN_SIGMA * -amount) * scale
    if sigma < 0.3:
        return face
    blurred = _blur(face, mode, sigma)
    if amount < 0:
        return blurred
    gain = _SHARPEN_GAIN * amount
    # uint8 arithmetic that saturates: face + gain * (face - blurred) in one pass, no float copies
    return cv2.addWeighted(face, 1.0 + gain, blurred, -gain, 0.0)


def _blur(image: np.ndarray, mode: str, sigma: float) -> np.ndarray:
    if mode == "gaussian":
        return cv2.GaussianBlur(image, (0, 0), sigma)
    # a box of the same variance as the Gaussian: width^2 / 12 = sigma^2
    width = max(2, int(round(sigma * np.sqrt(12))))
    return cv2.blur(image, (width, width))


def degrade(face: np.ndarray, denoise: float, bicubic: float, bits: int) -> np.ndarray:
    """Make the face as soft as its destination: an edge-preserving denoise (bilateral filter; 0..1),
    a loss of resolution (shrink by up to 4x and enlarge again, bicubic; 0..1) and fewer colour
    levels (`bits` per channel, 8 = unchanged), in that order, the order a camera and encoder lose them."""
    out = face
    scale = face.shape[0] / _REF
    if denoise > 0:
        # smooths noise and skin texture below sigma_color while keeping edges that rise above it
        diameter = 2 * max(1, int(round((1 + 3 * denoise) * scale))) + 1
        out = cv2.bilateralFilter(out, diameter, 10 + 60 * denoise, (1 + 3 * denoise) * scale)
    if bicubic > 0:
        h, w = out.shape[:2]
        factor = 1 + (_MAX_SHRINK - 1) * bicubic
        small = (max(1, int(round(w / factor))), max(1, int(round(h / factor))))
        # area averaging on the way down, as a sensor would: cubic shrinking aliases
        out = cv2.resize(cv2.resize(out, small, interpolation=cv2.INTER_AREA), (w, h), interpolation=cv2.INTER_CUBIC)
    if bits < 8:
        out = cv2.LUT(out, _levels(bits))
    return out


def _levels(bits: int) -> np.ndarray:
    """The 256-entry table that quantises to 2**bits levels spread over 0..255."""
    if not 1 <= bits <= 8:
        raise ValueError(f"bits must be 1..8, got {bits}")
    step = 255 / (2 ** bits - 1)
    return (np.round(np.round(np.arange(256) / step) * step)).astype(np.uint8)


def motion_blur(face: np.ndarray, velocity: tuple[float, float], strength: float) -> np.ndarray:
    """The face smeared along `velocity` (crop px per frame) over strength * |velocity| px, the way
    a shutter open for that fraction of a frame smears it. Under a pixel of smear changes nothing."""
    vx, vy = float(velocity[0]), float(velocity[1])
    speed = float(np.hypot(vx, vy))
    length = min(strength * speed, _MAX_SMEAR * face.shape[0])
    if length < 1.0:
        return face
    return cv2.filter2D(face, -1, _line_kernel(vx / speed, vy / speed, length), borderType=cv2.BORDER_REPLICATE)


def _line_kernel(dx: float, dy: float, length: float) -> np.ndarray:
    """A normalised, anti-aliased line of `length` px through the kernel's centre along (dx, dy):
    points every quarter pixel along it, each splatted bilinearly onto its four neighbours."""
    half = int(np.ceil(length / 2)) + 1
    size = 2 * half + 1
    t = np.linspace(-length / 2, length / 2, max(2, int(np.ceil(length * 4)) + 1))
    x, y = half + t * dx, half + t * dy
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    fx, fy = x - x0, y - y0
    kernel = np.zeros((size, size), np.float64)
    for ox, oy, wgt in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)), (0, 1, (1 - fx) * fy), (1, 1, fx * fy)):
        np.add.at(kernel, (y0 + oy, x0 + ox), wgt)
    return (kernel / kernel.sum()).astype(np.float32)


def enhance(face: np.ndarray, s: MergeSettings, velocity: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """All of the above per `s`: sharpen (a look chosen for the prediction), then motion blur (the
    destination's camera smears before it loses detail), then degradation (its sensor and encoder)."""
    out = sharpen(face, s.sharpen_mode, s.sharpen)
    out = motion_blur(out, velocity, s.motion_blur)
    return degrade(out, s.denoise, s.bicubic, s.colour_bits)
