"""Shared piece: short test clips made from still portraits that ship inside installed packages.

The demo and the tests need two people on video without downloading anything: matplotlib ships a
public-domain photo of Grace Hopper, scikit-image one of astronaut Eileen Collins. A slow virtual
camera (pan, zoom, a little roll) and a lighting drift turn each into a clip.
"""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np

from ..errors import EngineError
from .encode import write_video


# Where each portrait's face is (fractions of width and height): the virtual camera frames it.
FACE_CENTRE = {"hopper": (0.5, 0.36), "astronaut": (0.45, 0.24)}


def portrait(name: str) -> np.ndarray:
    """BGR image of a bundled public-domain portrait: "hopper" or "astronaut"."""
    if name == "hopper":
        import matplotlib

        path = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    elif name == "astronaut":
        import skimage

        path = Path(skimage.__file__).parent / "data" / "astronaut.png"
    else:
        raise EngineError("bad_request", f"unknown portrait {name!r}; expected 'hopper' or 'astronaut'")
    image = cv2.imread(str(path))
    if image is None:
        raise EngineError("not_found", f"portrait {name!r} is missing from its package ({path})")
    return image


def camera_frames(image: np.ndarray, frames: int, size: tuple[int, int], seed: int = 0,
                  centre: tuple[float, float] = (0.5, 0.5), zoom: float = 1.6):
    """Yield frames of a virtual camera drifting around `centre` of `image` while the light changes."""
    rng = np.random.default_rng(seed)
    h, w = image.shape[:2]
    out_w, out_h = size
    phase = rng.uniform(0, 2 * math.pi, 4)
    base = max(out_w / w, out_h / h) * zoom
    for i in range(frames):
        t = i / max(frames - 1, 1)
        scale = base * (1.0 + 0.08 * math.sin(2 * math.pi * t + phase[0]))
        angle = 4.0 * math.sin(2 * math.pi * t * 0.8 + phase[1])
        cx = w * centre[0] + 0.04 * w * math.sin(2 * math.pi * t + phase[2])
        cy = h * centre[1] + 0.03 * h * math.sin(2 * math.pi * t * 1.3 + phase[3])
        m = cv2.getRotationMatrix2D((cx, cy), angle, scale)
        m[:, 2] += (out_w / 2 - cx, out_h / 2 - cy)
        frame = cv2.warpAffine(image, m, (out_w, out_h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        gain = 0.85 + 0.25 * t  # light comes up over the shot, warmer at the end
        tint = np.array([1.0 - 0.06 * t, 1.0, 1.0 + 0.06 * t], np.float32)
        yield np.clip(frame.astype(np.float32) * gain * tint, 0, 255).astype(np.uint8)


def tone(seconds: float, sample_rate: int = 48000) -> np.ndarray:
    """A quiet three-note chime, so a rendered edit shows that the destination's audio came along."""
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    notes = np.array([440.0, 554.37, 659.25])[(t * 3 / max(seconds, 1e-6) * 3).astype(int) % 3]
    return (0.2 * np.sin(2 * np.pi * notes * t)).astype(np.float32)


def make_clip(name: str, path: Path, seconds: float = 3.0, fps: float = 25.0, size=(640, 480), audio: bool = False,
              seed: int = 0) -> Path:
    frames = int(round(seconds * fps))
    shots = camera_frames(portrait(name), frames, size, seed, centre=FACE_CENTRE[name])
    return write_video(path, shots, fps, tone(seconds) if audio else None)
