"""Merge stage: colour transfer and compositing of a predicted face into its frame."""

from __future__ import annotations

import cv2
import numpy as np

from ..geometry.align import invert


def reinhard_transfer(face: np.ndarray, target: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Move `face`'s colour statistics (mean, std per Lab channel) onto `target`'s, inside `mask`.

    Both are BGR uint8 crops of the same aligned face; the statistics come from the masked region
    only, so background and hair do not pull the skin tone (Reinhard et al. 2001).
    """
    weights = (mask > 0.5).reshape(-1)
    if weights.sum() < 16:
        return face
    src = cv2.cvtColor(face, cv2.COLOR_BGR2LAB).astype(np.float32).reshape(-1, 3)
    dst = cv2.cvtColor(target, cv2.COLOR_BGR2LAB).astype(np.float32).reshape(-1, 3)
    s_mean, s_std = src[weights].mean(0), src[weights].std(0) + 1e-3
    d_mean, d_std = dst[weights].mean(0), dst[weights].std(0) + 1e-3
    out = (src - s_mean) * (d_std / s_std) + d_mean
    out = np.clip(out, 0, 255).astype(np.uint8).reshape(face.shape)
    return cv2.cvtColor(out, cv2.COLOR_LAB2BGR)


def paste_face(frame: np.ndarray, face: np.ndarray, mask: np.ndarray, transform: np.ndarray) -> np.ndarray:
    """Warp an aligned face and its 0..1 mask back through the inverse of `transform` and blend.

    Only the frame region the crop lands on is warped (a face is a small part of a 4K frame).
    Blending is done in float with the warped mask as alpha: outside the mask the frame's pixels are
    returned unchanged, bit for bit.
    """
    h, w = frame.shape[:2]
    back = invert(transform)
    size = face.shape[0]
    corners = np.array([[0, 0], [size, 0], [0, size], [size, size]], np.float64) @ back[:, :2].T + back[:, 2]
    x0, y0 = np.maximum(np.floor(corners.min(0)).astype(int) - 1, 0)
    x1, y1 = np.minimum(np.ceil(corners.max(0)).astype(int) + 1, [w, h])
    out = frame.copy()
    if x1 <= x0 or y1 <= y0:
        return out
    roi = back.copy()
    roi[:, 2] -= (x0, y0)  # same warp, expressed in the region's own pixel coordinates
    rw, rh = int(x1 - x0), int(y1 - y0)
    face_f = cv2.warpAffine(face, roi, (rw, rh), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
    alpha = cv2.warpAffine(mask.astype(np.float32), roi, (rw, rh), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    a = np.clip(alpha, 0.0, 1.0)[..., None]
    region = frame[y0:y1, x0:x1].astype(np.float32) * (1 - a) + face_f.astype(np.float32) * a
    out[y0:y1, x0:x1] = np.where(a > 0, np.clip(region + 0.5, 0, 255), frame[y0:y1, x0:x1]).astype(np.uint8)
    return out
