"""Merge stage: one merged face into its frame: colour matching, then the blend mode, giving a
FacePatch (the face's pixels and coverage over a small box of the frame) that is laid over the frame
or written as a face layer.

Only the frame region the crop lands on is touched: a face is a small part of a 1080p or 4K frame,
and a full-frame pass costs more than everything else a face needs. `compose_face` never copies the
frame; `apply_patches` copies it once.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ..colour.transfer import hist_match, transfer_colour
from ..errors import EngineError
from ..geometry.align import compose, invert
from .settings import MergeSettings

CROP = 256  # aligned crop size faces are merged at; the model's output is resized to it

_SEAMLESS_PAD = 8  # px of frame around the face for Poisson cloning: the mask never touches the region's edge
_SEAMLESS_MIN = 64  # a mask of fewer pixels than this (a face far away, mostly off-frame) is overlaid instead
_SEAMLESS_LEVEL = 0.05  # Poisson clones where the mask is above this; the feather then fades the clone
_SEAMLESS_SIDE = 96  # px: the Poisson correction is solved at most this large, then enlarged
_SQUARE_MODES = ("raw-patch", "raw-predict")  # the whole crop square is pasted, whatever the mask


@dataclass
class FacePatch:
    """One merged face, in frame coordinates."""

    box: tuple[int, int, int, int]  # x0, y0, x1, y1 in the frame (x1, y1 exclusive), clipped to the frame
    rgb: np.ndarray  # (y1-y0, x1-x0, 3) uint8 BGR: the face's pixels (straight alpha)
    alpha: np.ndarray  # (y1-y0, x1-x0) float32 0..1: how much of the face covers the frame

    @property
    def empty(self) -> bool:
        return self.box[2] <= self.box[0] or self.box[3] <= self.box[1]


def colour_face(face: np.ndarray, crop: np.ndarray, mask: np.ndarray, s: MergeSettings) -> np.ndarray:
    """The predicted face recoloured toward the destination crop by `s.colour` ("none": as it is),
    with statistics from inside `mask` when `s.colour_masked`, mixed with the prediction by
    `s.colour_strength` (0: the prediction, 1: the full transfer); then, in the hist-match modes,
    histogram-matched to the crop (inside `mask` when `s.hist_masked`, `s.hist_threshold`).
    All colour work happens here, before the merge measures the face's colour for temporal
    smoothing: matching after it would bring back each frame's own statistics."""
    if s.mode == "raw-predict":  # raw-predict shows no colour work
        return face
    face = _transfer(face, crop, mask, s)
    if s.mode in ("hist-match", "seamless-hist"):
        weights = mask if s.hist_masked else None
        face = hist_match(face, crop, weights, weights, s.hist_threshold)
    return face


def _transfer(face: np.ndarray, crop: np.ndarray, mask: np.ndarray, s: MergeSettings) -> np.ndarray:
    if s.colour == "none" or s.colour_strength <= 0:
        return face
    if s.colour_masked and s.mode not in _SQUARE_MODES and crop.shape == face.shape:
        # only the mask's box is ever seen, and its statistics are the whole crop's: recolour that
        # box alone (a third or more less work; the rest of the face keeps the prediction's colours)
        x, y, w, h = cv2.boundingRect((mask > 0).astype(np.uint8))
        if w * h == 0:
            return face
        box = (slice(y, y + h), slice(x, x + w))
        out = face.copy()
        out[box] = _recolour(face[box], crop[box], mask[box], s)
        return out
    return _recolour(face, crop, mask if s.colour_masked else None, s)


def _recolour(face: np.ndarray, crop: np.ndarray, weights: np.ndarray | None, s: MergeSettings) -> np.ndarray:
    out = transfer_colour(np.ascontiguousarray(face), np.ascontiguousarray(crop), s.colour, weights, weights)
    if s.colour_strength >= 1:
        return out
    k = float(s.colour_strength)
    return cv2.addWeighted(face, 1.0 - k, out, k, 0.0)


def compose_face(frame: np.ndarray, crop: np.ndarray, face: np.ndarray, mask: np.ndarray, m: np.ndarray,
                 s: MergeSettings, raw: np.ndarray | None = None) -> FacePatch:
    """The face of one frame as a FacePatch, by `s.mode`.

    `face` is the colour-corrected (colour_face: transfer and, for the hist-match modes, histogram
    matching), enhanced prediction and `mask` its shaped mask, both in the crop
    `m` cuts from `frame` (`crop` is that cut, the destination face); `raw` is the untouched
    prediction, used by raw-predict. The patch's box is the frame region where the face has any
    coverage; `frame` itself is only read (seamless modes read the region around the face).
    """
    size = face.shape[0]
    if face.shape != (size, size, 3) or face.dtype != np.uint8:
        raise EngineError("bad_request", f"the face must be a square uint8 BGR crop, got {face.shape} {face.dtype}")
    if mask.shape != (size, size):
        raise EngineError("bad_request", f"the mask must be {(size, size)}, got {mask.shape}")
    if mask.dtype == np.uint8:
        mask = mask.astype(np.float32) * np.float32(1 / 255)
    mask = mask.astype(np.float32, copy=False)
    mode = s.mode
    if mode == "raw-predict":
        if raw is None or raw.shape != face.shape or raw.dtype != np.uint8:
            raise EngineError("bad_request", "mode raw-predict needs the raw prediction, a crop like the face")
        face = raw
    square = mode in _SQUARE_MODES
    seamless = mode in ("seamless", "seamless-hist")

    # the frame region under the covered part of the crop: the mask's box (a hull covers about half
    # the square, so half the warping), or the whole square
    covered = (0, 0, size, size) if square else cv2.boundingRect((mask > 0).astype(np.uint8))
    back = _back_transform(m, size, s.face_scale)
    x0, y0, x1, y1 = _footprint(back, covered, frame.shape, _SEAMLESS_PAD if seamless else 1)
    if x1 <= x0 or y1 <= y0:
        return _empty_patch()
    roi = back.copy()
    roi[:, 2] -= (x0, y0)  # the same warp, in the region's own pixel coordinates
    region = (x1 - x0, y1 - y0)
    if not square and not (mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any()):
        # the usual case (a shaped mask is 0 at the crop's edge): face and mask warped together as
        # BGRA, ~0.8 ms less than two warps; alpha in 1/255 steps, as the face layer stores it
        warped = _warp_face(cv2.merge([face, cv2.multiply(mask, 255.0, dtype=cv2.CV_8U)]), roi, region)
        rgb = cv2.cvtColor(warped, cv2.COLOR_BGRA2BGR)
        alpha = cv2.extractChannel(warped, 3).astype(np.float32)
        alpha *= np.float32(1 / 255)
    else:
        # the face's edge pixels are replicated outward, the coverage ends at the square's edge
        rgb = _warp_face(face, roi, region)
        cover = np.ones((size, size), np.float32) if square else mask.astype(np.float32, copy=False)
        alpha = cv2.warpAffine(cover, roi, region, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        np.clip(alpha, 0.0, 1.0, out=alpha)
    if seamless:
        rgb = _seamless(frame[y0:y1, x0:x1], rgb, alpha)
    # trim to where the face covers anything: a smaller layer, less to blend and to encode
    rows, cols = np.flatnonzero(alpha.any(1)), np.flatnonzero(alpha.any(0))
    if not len(rows):
        return _empty_patch()
    r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    return FacePatch((int(x0 + c0), int(y0 + r0), int(x0 + c1), int(y0 + r1)),
                     np.ascontiguousarray(rgb[r0:r1, c0:c1]), np.ascontiguousarray(alpha[r0:r1, c0:c1]))


def _warp_face(face: np.ndarray, roi: np.ndarray, region: tuple[int, int]) -> np.ndarray:
    """The face warped into the region by `roi`. A warp that changes the scale first resizes the
    face to the frame's scale (bicubic up, area-averaged down) and then rotates it bilinearly: a
    bicubic warpAffine costs ~6 ms for a 1080p face against ~1.5 ms this way, bilinear enlarging
    alone looks soft and bilinear shrinking aliases."""
    size = face.shape[0]
    k = float(np.sqrt(abs(np.linalg.det(roi[:, :2]))))  # crop px to frame px
    if k > 1.15 or k < 0.85:
        n = max(1, int(round(size * k)))
        face = cv2.resize(face, (n, n), interpolation=cv2.INTER_CUBIC if k > 1 else cv2.INTER_AREA)
        k = n / size
        # resized pixel p' = k p + (k - 1) / 2 (pixel centres at integers): undo it before `roi`
        roi = compose(roi, np.array([[1 / k, 0.0, (1 - k) / (2 * k)], [0.0, 1 / k, (1 - k) / (2 * k)]]))
    return cv2.warpAffine(face, roi, region, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def _back_transform(m: np.ndarray, size: int, face_scale: float) -> np.ndarray:
    """Crop to frame: the inverse of `m`, the face first scaled by 1 + face_scale about the crop's
    centre (pixel centres are at integers, so the centre is (size - 1) / 2)."""
    back = invert(m)
    if face_scale == 0:
        return back
    k = 1.0 + face_scale
    c = (size - 1) / 2
    return compose(back, np.array([[k, 0.0, c * (1 - k)], [0.0, k, c * (1 - k)]]))


def _footprint(back: np.ndarray, rect: tuple[int, int, int, int], shape: tuple[int, ...],
               pad: int) -> tuple[int, int, int, int]:
    """The frame box the crop's pixels `rect` (x, y, w, h) land on, `pad` px wider, clipped to the frame."""
    h, w = shape[:2]
    x, y, rw, rh = rect
    if rw <= 0 or rh <= 0:
        return 0, 0, 0, 0
    left, top, right, bottom = x - 0.5, y - 0.5, x + rw - 0.5, y + rh - 0.5  # pixel edges, not centres
    corners = np.array([[left, top], [right, top], [left, bottom], [right, bottom]])
    pts = corners @ back[:, :2].T + back[:, 2]
    x0, y0 = np.maximum(np.floor(pts.min(0)).astype(int) - pad, 0)
    x1, y1 = np.minimum(np.ceil(pts.max(0)).astype(int) + pad + 1, [w, h])
    return int(x0), int(y0), int(x1), int(y1)


def _empty_patch() -> FacePatch:
    return FacePatch((0, 0, 0, 0), np.zeros((0, 0, 3), np.uint8), np.zeros((0, 0), np.float32))


def _seamless(region: np.ndarray, rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """The face Poisson-cloned into the frame region: its own gradients, the frame's colours at the
    mask's edge. A mask too small to solve for returns the face as it is (plain overlay).

    The clone is the face plus a correction that is harmonic inside the mask (smooth: it only
    carries the colour difference at the edge inwards), so it is solved on the region shrunk to at
    most _SEAMLESS_SIDE px and enlarged back: cv2.seamlessClone costs ~120 ms on a 1080p face's
    region (its solver grows much faster than the area) and ~5 ms this way; the result differs from
    the full-size clone by ~0.2 levels on average, and the feather hides the coarser edge."""
    h, w = alpha.shape
    d = max(1.0, max(h, w) / _SEAMLESS_SIDE)
    size = (max(1, round(w / d)), max(1, round(h / d)))
    small_face, small_frame, small_alpha = (cv2.resize(x, size, interpolation=cv2.INTER_AREA) if d > 1 else x
                                            for x in (rgb, region, alpha))
    inside = (small_alpha > _SEAMLESS_LEVEL).astype(np.uint8)
    # the region's edge is frame (padding) or the frame's own edge: clear it so the solver always
    # has frame pixels around the face
    inside[:2], inside[-2:], inside[:, :2], inside[:, -2:] = 0, 0, 0, 0
    if int(inside.sum()) * d * d < _SEAMLESS_MIN:
        return rgb
    x, y, bw, bh = cv2.boundingRect(inside)
    if bw < 4 or bh < 4:
        return rgb
    # cv2 centres the mask's bounding box on this point: place it where it already is
    centre = (x + bw // 2, y + bh // 2)
    cloned = cv2.seamlessClone(small_face, np.ascontiguousarray(small_frame), inside * 255, centre, cv2.NORMAL_CLONE)
    if d == 1:
        return cloned
    correction = cv2.subtract(cloned, small_face, dtype=cv2.CV_16S)
    correction = cv2.resize(correction.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    return cv2.add(rgb.astype(np.float32), correction, dtype=cv2.CV_8U)  # rounds and saturates


def apply_patches(frame: np.ndarray, patches: list[FacePatch]) -> np.ndarray:
    """A copy of `frame` with each patch laid over it in turn (alpha over, straight alpha).

    Pixels where no patch has coverage stay bit for bit; where the coverage is 1 the face's pixels
    replace the frame's."""
    out = frame.copy()
    for p in patches:
        if p.empty:
            continue
        x0, y0, x1, y1 = p.box
        base = out[y0:y1, x0:x1].astype(np.float32)
        # base + 0 * (face - base) is base exactly and base + 1 * (face - base) the face exactly, so
        # truncating after + 0.5 leaves uncovered pixels bit for bit without a separate test
        mixed = cv2.subtract(p.rgb.astype(np.float32), base)
        mixed *= p.alpha[..., None]
        mixed += base
        mixed += 0.5
        out[y0:y1, x0:x1] = mixed.astype(np.uint8)
    return out


def layer_canvas(patches: list[FacePatch], height: int, width: int) -> tuple[tuple[int, int, int, int], np.ndarray]:
    """The faces as one straight-alpha RGBA layer: the union box of the patches (x0, y0, x1, y1, within a
    `height` x `width` frame) and its (y1-y0, x1-x0, 4) uint8 BGRA pixels, alpha = 255 * coverage
    (colour 0 where the coverage rounds to 0). No face: box (0, 0, 0, 0) and an empty ROI."""
    live = [p for p in patches if not p.empty]
    if not live:
        return (0, 0, 0, 0), np.zeros((0, 0, 4), np.uint8)
    x0 = max(0, min(p.box[0] for p in live))
    y0 = max(0, min(p.box[1] for p in live))
    x1 = min(width, max(p.box[2] for p in live))
    y1 = min(height, max(p.box[3] for p in live))
    if len(live) == 1:
        colour, cover = live[0].rgb, live[0].alpha
    else:
        # "over" in premultiplied form, then back to straight colour
        premult = np.zeros((y1 - y0, x1 - x0, 3), np.float32)
        cover = np.zeros((y1 - y0, x1 - x0), np.float32)
        for p in live:
            sl = (slice(p.box[1] - y0, p.box[3] - y0), slice(p.box[0] - x0, p.box[2] - x0))
            a = p.alpha[..., None]
            premult[sl] = premult[sl] * (1 - a) + p.rgb.astype(np.float32) * a
            cover[sl] = cover[sl] * (1 - p.alpha) + p.alpha
        colour = np.clip(premult / np.maximum(cover, 1e-6)[..., None] + 0.5, 0, 255).astype(np.uint8)
    a8 = cv2.multiply(cover, 255.0, dtype=cv2.CV_8U)  # rounds and saturates
    bgra = cv2.cvtColor(colour, cv2.COLOR_BGR2BGRA)
    bgra[..., 3] = a8
    roi = cv2.bitwise_and(bgra, bgra, mask=a8)  # colour 0 where nothing covers: cleaner, smaller PNGs
    return (x0, y0, x1, y1), roi
