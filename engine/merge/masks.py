"""Merge stage: the mask that blends one face, in the aligned crop: sources multiplied, then shaped.

Shaping is erosion (or dilation) and feathering, each a uniform amount plus an amount per side of
the upright aligned face (top is the forehead). Outside the crop counts as "not face": a mask that
reaches the crop's edge is eroded and feathered away from it, so the pasted square never shows.

Cost at 256 px (one core): ~1.5 ms in all at the defaults, whatever the amounts: erosion is a
distance transform (the same for any radius) and wide feathers run on a shrunk mask; a side with
its own amount adds a 1-D pass.
"""

from __future__ import annotations

import cv2
import numpy as np

from ..errors import EngineError
from .settings import MergeSettings, SIDES


def combine(sources: dict[str, np.ndarray], terms: tuple[str, ...]) -> np.ndarray:
    """The product of the named masks (float32 0..1, (H, W)): "pred*dst" keeps what both keep."""
    if not terms:
        raise EngineError("bad_request", "a mask needs at least one term")
    missing = [t for t in terms if t not in sources]
    if missing:
        have = ", ".join(sources) or "none"
        raise EngineError("bad_request", f"no {', '.join(missing)} mask for this face (have {have})")
    out = _unit(sources[terms[0]]).copy()
    for term in terms[1:]:
        other = sources[term]
        if other.shape != out.shape:
            raise EngineError("bad_request", f"mask {term!r} is {other.shape}, {terms[0]!r} is {out.shape}")
        out *= _unit(other)
    return np.clip(out, 0.0, 1.0, out=out)


def _unit(mask: np.ndarray) -> np.ndarray:
    """A mask as float32 0..1 (uint8 masks are 0..255)."""
    if mask.dtype == np.uint8:
        return mask.astype(np.float32) * np.float32(1 / 255)
    return mask.astype(np.float32, copy=False)


def shape_mask(mask: np.ndarray, s: MergeSettings, exclusion: np.ndarray | None = None) -> np.ndarray:
    """`mask` (H, W) eroded or dilated and feathered per `s`; float32 0..1.

    Amounts are fractions of the crop side; each side's is the uniform one plus its own. Erosion
    happens before dilation (a positive uniform erosion with one side dilated opens the mask, it
    does not fill small holes). `exclusion` (1 = must stay out: an occluder the destination's own
    mask leaves out) is cut out after dilation and feathering, so a hand stays in front of the face.
    """
    if mask.ndim != 2:
        raise EngineError("bad_request", f"a mask is (H, W), got {mask.shape}")
    size = mask.shape[0]
    out = np.clip(mask.astype(np.float32, copy=False), 0.0, 1.0)
    sides = {side: getattr(s, f"erode_{side}") * size for side in SIDES}
    uniform = s.erode * size
    if uniform > 0:
        out = _erode_disc(out, uniform)
    out = _shift_sides(out, sides, erode=True)
    out = _shift_sides(out, sides, erode=False)
    if uniform < 0:
        out = _dilate_disc(out, -uniform)
    widths = {side: max(0.0, s.blur + getattr(s, f"blur_{side}")) * size for side in SIDES}
    out = _feather(out, widths)
    if exclusion is not None:
        if exclusion.shape != out.shape:
            raise EngineError("bad_request", f"exclusion is {exclusion.shape}, the mask {out.shape}")
        keep = 1.0 - np.clip(exclusion.astype(np.float32, copy=False), 0.0, 1.0)
        out = out * keep
    return np.clip(out, 0.0, 1.0, out=out)  # out is never the caller's array (the first clip copied it)


def _erode_disc(mask: np.ndarray, radius: float) -> np.ndarray:
    """The mask's half-level edge moved `radius` px inward (sub-pixel, anti-aliased); values inside
    stay as they were. A distance transform costs the same for any radius (an elliptic kernel's
    erosion grows with its area: ~3 ms at 10 px, float)."""
    inside = cv2.copyMakeBorder((mask > 0.5).astype(np.uint8), 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)
    # distance to the nearest outside pixel, or the crop's edge (the zero border)
    dist = cv2.distanceTransform(inside, cv2.DIST_L2, 5)[1:-1, 1:-1]
    # a pixel at distance d has its centre d - 1/2 inside the edge: it keeps what lies beyond `radius`
    return np.minimum(mask, np.clip(dist - np.float32(radius), 0.0, 1.0))


def _dilate_disc(mask: np.ndarray, radius: float) -> np.ndarray:
    """The mask's half-level edge moved `radius` px outward, the new band fully on."""
    outside = (mask <= 0.5).astype(np.uint8)
    if not outside.all():
        dist = cv2.distanceTransform(outside, cv2.DIST_L2, 5)  # to the nearest inside pixel
        return np.maximum(mask, np.clip(np.float32(radius + 1) - dist, 0.0, 1.0))
    return mask


def _shift_sides(mask: np.ndarray, sides: dict[str, float], erode: bool) -> np.ndarray:
    """Per-side extra erosion (or dilation): grey-level morphology with a line kernel that reaches
    only towards the sides that move. Eroding with offsets [-top, bottom] along y moves the top edge
    down by `top` and the bottom edge up by `bottom`; a negative amount moves that edge outward.
    One pass per axis covers any mix of signs: its net sign picks erosion or dilation."""
    for axis, (a, b) in ((0, ("top", "bottom")), (1, ("left", "right"))):
        lo_amount, hi_amount = int(round(sides[a])), int(round(sides[b]))
        net = lo_amount + hi_amount
        if (lo_amount == 0 and hi_amount == 0) or (net >= 0) != erode or (net == 0 and not erode):
            continue
        # erosion: min over offsets [-lo, hi]; dilation: max over offsets [hi, -lo] (the reflected kernel)
        lo, hi = (-lo_amount, hi_amount) if erode else (hi_amount, -lo_amount)
        pad = max(abs(lo), abs(hi))
        length = hi - lo + 1
        kernel = np.ones((length, 1) if axis == 0 else (1, length), np.uint8)
        if axis == 0:
            padded = cv2.copyMakeBorder(mask, pad, pad, 0, 0, cv2.BORDER_CONSTANT, value=0)
        else:
            padded = cv2.copyMakeBorder(mask, 0, 0, pad, pad, cv2.BORDER_CONSTANT, value=0)
        op = cv2.erode if erode else cv2.dilate
        # anchor at the kernel's first cell: out[z] = op over padded[z .. z + length - 1]
        moved = op(padded, kernel, anchor=(0, 0), borderType=cv2.BORDER_CONSTANT, borderValue=0)
        start = pad + lo
        mask = moved[start:start + mask.shape[0]] if axis == 0 else moved[:, start:start + mask.shape[1]]
    return np.ascontiguousarray(mask)


_ONE = np.ones((1, 1), np.float32)
_FINE = 7  # a feather wider than this many px runs on a mask shrunk along that axis, at this half-width


def _sigma(n: int) -> float:
    """The Gaussian's sigma for a kernel of half-width n (cv2's own choice for size 2n+1)."""
    return 0.3 * (n - 1) + 0.8


def _blur_axis(image: np.ndarray, width: float, axis: int) -> np.ndarray:
    """A 1-D Gaussian feather of half-width `width` px along `axis` (0: y), outside the crop counting as 0.

    Wide ones are computed on the mask shrunk d times along the axis and enlarged back: a feather is
    smooth, and the cost stays that of a 2*_FINE+1 kernel (a 0.5-crop feather is ~9 ms otherwise).
    The shrink (a box of d) and the enlargement (a tent of d) add d^2 / 4 to the variance; the kernel
    gives up that much."""
    n = int(round(width))
    if n <= 0:
        return image
    d = min(max(1, n // _FINE), 8)
    sigma = _sigma(n)
    if d > 1:
        sigma = np.sqrt(max(sigma ** 2 - d ** 2 / 4, 0.25)) / d
        n = int(np.ceil(3.3 * sigma))  # as far out as the full kernel reaches
    kernel = cv2.getGaussianKernel(2 * n + 1, sigma).astype(np.float32)
    kx, ky = (_ONE, kernel) if axis == 0 else (kernel, _ONE)
    if d == 1:
        return cv2.sepFilter2D(image, -1, kx, ky, borderType=cv2.BORDER_CONSTANT)
    h, w = image.shape
    small = (w, max(1, round(h / d))) if axis == 0 else (max(1, round(w / d)), h)
    shrunk = cv2.resize(image, small, interpolation=cv2.INTER_AREA)
    blurred = cv2.sepFilter2D(shrunk, -1, kx, ky, borderType=cv2.BORDER_CONSTANT)
    return cv2.resize(blurred, (w, h), interpolation=cv2.INTER_LINEAR)


def _feather(mask: np.ndarray, widths: dict[str, float]) -> np.ndarray:
    """Separable Gaussian feather with its own width on each side.

    Along y the mask is blurred once with the top width and once with the bottom one, and the two
    are mixed by a ramp across the mask's centre (where the mask is flat, so the mix shows no seam);
    likewise along x. Equal widths cost one pass per axis."""
    if not mask.any():
        return mask
    m = cv2.moments(mask)
    h, w = mask.shape
    out = mask
    for axis, (a, b) in ((0, ("top", "bottom")), (1, ("left", "right"))):
        wa, wb = int(round(widths[a])), int(round(widths[b]))
        if wa == wb:
            out = _blur_axis(out, wa, axis)
            continue
        # centre and spread of the mask along this axis, from its moments
        centre = m["m01" if axis == 0 else "m10"] / m["m00"]
        spread = max(np.sqrt(m["mu02" if axis == 0 else "mu20"] / m["m00"]), 1.0)
        coords = np.arange(h if axis == 0 else w, dtype=np.float32)
        ramp = np.clip(0.5 - (coords - centre) / (2 * spread), 0.0, 1.0)  # 1 on side a, 0 on side b
        ramp = ramp[:, None] if axis == 0 else ramp[None, :]
        first, second = _blur_axis(out, wa, axis), _blur_axis(out, wb, axis)
        out = second + (first - second) * ramp
    return out


