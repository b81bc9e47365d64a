"""Merge stage: steadiness over time: colour statistics smoothed across frames, the face's motion,
and the flicker measure.

A face merged frame by frame gets its colour transfer from that frame's statistics alone, and
those jitter (a blink, a hand near the face, the mask's edge moving by a pixel): the pasted face
pulses in brightness while the destination holds still. The fix is measured, not guessed: each
frame's coloured face has a masked Lab mean; the means are smoothed over the track with a centred
Gaussian (runs of consecutive frames only: no smoothing across a cut), and each frame's face is
moved from its own mean to the smoothed one.
"""

from __future__ import annotations

import cv2
import numpy as np

from ..geometry.align import invert
from ..geometry.steady import steady_series

CHANNELS = {"lab": 3, "l": 1}
CENTRE = 128.0  # the centre of the merge's 256 px aligned crop (compose.CROP)


def _to_lab(bgr: np.ndarray) -> np.ndarray:
    """Lab (L 0..100, a and b about -128..127) of one BGR colour in 0..255."""
    pixel = np.asarray(bgr, np.float32).reshape(1, 1, 3) * np.float32(1 / 255)
    return cv2.cvtColor(pixel, cv2.COLOR_BGR2LAB).reshape(3).astype(np.float64)


def _to_bgr(lab: np.ndarray) -> np.ndarray:
    pixel = np.asarray(lab, np.float32).reshape(1, 1, 3)
    return cv2.cvtColor(pixel, cv2.COLOR_LAB2BGR).reshape(3).astype(np.float64) * 255


def _box(mask: np.ndarray) -> tuple[slice, slice] | None:
    """The bounding box of mask > 0, or None for an empty mask."""
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    if not len(rows):
        return None
    return slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)


def masked_mean(face: np.ndarray, mask: np.ndarray, channels: str = "lab") -> np.ndarray | None:
    """The Lab colour (or its L only, channels="l") of the mask-weighted mean BGR of a uint8 face;
    None under an empty mask (nothing of the face is shown, so nothing to measure). The mean is
    taken in BGR and converted once: a per-pixel Lab conversion cost more than the rest of the
    temporal step, and the smoothing only needs a steady measure that shift_mean moves exactly."""
    w = np.asarray(mask, np.float32)
    total = float(w.sum())
    box = _box(w) if total >= 1.0 else None
    if box is None:
        return None
    pixels = face[box].reshape(-1, 3).astype(np.float32)
    # einsum, not @: a BLAS call here wakes OpenBLAS's second thread, which then spins a whole core
    mean = np.einsum("i,ij->j", w[box].reshape(-1), pixels).astype(np.float64) / total
    return _to_lab(mean)[: CHANNELS[channels]]


def steady_means(means: dict[int, np.ndarray], sigma: float) -> dict[int, np.ndarray]:
    """Per-frame mean colours averaged over neighbouring frames by a Gaussian of `sigma` frames,
    within runs of consecutive frames (a gap is a cut or a lost face: never smoothed across).
    A plain weighted mean, not a line fit: lighting that drifts is followed, a flicker is not."""
    return steady_series(means, sigma, line=False)


def shift_mean(face: np.ndarray, mask: np.ndarray, current: np.ndarray, target: np.ndarray) -> np.ndarray:
    """`face` (BGR uint8) with its masked mean colour (masked_mean's measure) moved from `current`
    to `target`: 3 values L, a, b; 1 value: L only, the brightness, the colour kept. The move is
    one BGR offset per channel (the difference of the two colours), applied by lookup tables over
    the box where `mask` > 0; the rest of the crop is never shown and is returned as it was."""
    current, target = np.asarray(current, np.float64), np.asarray(target, np.float64)
    if not np.any(np.abs(target - current) > 1e-3):
        return face
    box = _box(np.asarray(mask))
    if box is None:
        return face
    if len(current) < 3:  # brightness only: the face's own colour fills in a and b
        full = masked_mean(face, mask)
        current, target = np.r_[current, full[len(current):]], np.r_[target, full[len(target):]]
    delta = _to_bgr(target) - _to_bgr(current)
    lut = np.clip(np.arange(256, dtype=np.float64)[:, None] + delta[None] + 0.5, 0, 255).astype(np.uint8)
    out = face.copy()
    out[box] = cv2.LUT(face[box], lut.reshape(256, 1, 3))
    return out


def face_velocity(transforms: dict[int, np.ndarray], frame: int) -> tuple[float, float]:
    """How fast the face moves at `frame`, in crop pixels per frame (x, y), from where the crop's
    centre lands in the frame one frame before and after (central difference; one-sided at a run's
    end; (0, 0) alone). `transforms` are one track's frame -> crop transforms by frame."""
    m = transforms.get(frame)
    if m is None:
        return 0.0, 0.0
    before, after = transforms.get(frame - 1), transforms.get(frame + 1)
    if before is None and after is None:
        return 0.0, 0.0

    def centre(t: np.ndarray) -> np.ndarray:  # the frame pixel under the crop's centre
        back = invert(t)
        return back[:, :2] @ np.array([CENTRE, CENTRE]) + back[:, 2]

    a = centre(before if before is not None else m)
    b = centre(after if after is not None else m)
    steps = (before is not None) + (after is not None)
    motion = m[:, :2] @ (b - a) / steps  # frame pixels -> crop pixels: the linear part only
    return float(motion[0]), float(motion[1])


def flicker(frames: list[np.ndarray], regions: list[np.ndarray]) -> float:
    """Mean absolute change from each frame to the next inside the face region (the union of the
    region at t and at t-1), over all channels, on the 0..255 scale; 0 for fewer than two frames.
    Compared with the same measure on the untouched destination, it says how much a merge adds."""
    total, count = 0.0, 0
    for t in range(1, len(frames)):
        region = (np.asarray(regions[t]) > 0) | (np.asarray(regions[t - 1]) > 0)
        n = int(region.sum())
        if not n:
            continue
        diff = cv2.absdiff(frames[t], frames[t - 1])
        total += float(diff[region].sum())
        count += n * (diff.shape[2] if diff.ndim == 3 else 1)
    return total / count if count else 0.0
