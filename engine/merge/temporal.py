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


def _lab(face: np.ndarray) -> np.ndarray:
    """float32 Lab of a BGR uint8 image (L 0..100, a and b about -128..127): no rounding to 8 bits,
    so a shift of a fraction of a level survives the round trip."""
    return cv2.cvtColor(face.astype(np.float32) * np.float32(1 / 255), cv2.COLOR_BGR2LAB)


def masked_mean(face: np.ndarray, mask: np.ndarray, channels: str = "lab") -> np.ndarray | None:
    """The mask-weighted mean Lab (or L only, channels="l") of a BGR uint8 face; None under an
    empty mask (nothing of the face is shown, so nothing to measure)."""
    w = np.asarray(mask, np.float32)
    total = float(w.sum())
    if total < 1.0:
        return None
    rows, cols = np.flatnonzero(w.any(1)), np.flatnonzero(w.any(0))  # convert only the mask's box
    box = slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)
    w = w[box]
    lab = _lab(face[box])[..., : CHANNELS[channels]]
    return (lab.reshape(-1, lab.shape[-1]).T @ w.reshape(-1)).astype(np.float64) / total


def steady_means(means: dict[int, np.ndarray], sigma: float) -> dict[int, np.ndarray]:
    """Per-frame mean colours averaged over neighbouring frames by a Gaussian of `sigma` frames,
    within runs of consecutive frames (a gap is a cut or a lost face: never smoothed across).
    A plain weighted mean, not a line fit: lighting that drifts is followed, a flicker is not."""
    return steady_series(means, sigma, line=False)


def shift_mean(face: np.ndarray, mask: np.ndarray, current: np.ndarray, target: np.ndarray) -> np.ndarray:
    """`face` (BGR uint8) with its Lab mean moved from `current` to `target` (3 values: L, a, b;
    1 value: L only, the brightness). Only the box where `mask` > 0 is converted: the rest of the
    crop is never shown, so it is returned as it was."""
    delta = np.asarray(target, np.float32) - np.asarray(current, np.float32)
    if not np.any(np.abs(delta) > 1e-3):
        return face
    ys, xs = np.nonzero(np.asarray(mask) > 0)
    if len(ys) == 0:
        return face
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    lab = _lab(face[y0:y1, x0:x1])
    lab[..., : len(delta)] += delta
    bgr = cv2.cvtColor(lab, cv2.COLOR_LAB2BGR)
    out = face.copy()
    out[y0:y1, x0:x1] = np.clip(bgr * 255 + 0.5, 0, 255).astype(np.uint8)
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
