"""Merge stage: how a shot is merged (MergeSettings), strict, with values animated over frames.

Every control of DeepFaceLab's merger has a field here. Numeric fields can be animated: `keys`
maps a field to (frame, value) pairs and `at(frame)` gives the settings of one frame, linearly
interpolated between keys and held before the first and after the last. The add-on samples Blender's
F-curves into these keys, so a keyframed erosion in the timeline is the erosion the engine uses.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..config import check_types, from_dict
from ..errors import EngineError

MODES = ("overlay", "hist-match", "seamless", "seamless-hist", "raw-patch", "raw-predict")
MASK_TERMS = ("hull", "pred", "dst", "seg-pred", "seg-dst")  # a mask is one term or a product "pred*dst"
COLOUR_METHODS = ("none", "rct", "lct", "mkl", "idt", "sot", "hist")
SHARPEN_MODES = ("box", "gaussian")
SIDES = ("top", "bottom", "left", "right")


@dataclass(frozen=True)
class MergeSettings:
    """One shot's merge: blend mode, mask, colour, detail and temporal steadiness."""

    mode: str = "overlay"
    # hist-match modes: the face's quantiles map to the destination's scaled by this / 255 (below
    # 255 the destination's brightest highlights are left unused)
    hist_threshold: int = 238
    hist_masked: bool = True  # hist-match modes: statistics from inside the mask only
    # Which mask blends the face: "hull" (destination landmarks), "pred" (the model's predicted
    # mask), "dst" (the destination face's drawn, learned or imported mask; the hull where it has
    # none), "seg-pred"/"seg-dst" (the segmentation model `seg_model` run on the prediction or the
    # destination crop), or a product of terms, "pred*dst".
    mask: str = "dst"
    seg_model: str = ""  # the mask model the seg-* terms use
    forehead: float = 0.1  # hull: how far above the brows, fraction of brow-to-chin
    # Erosion (negative: dilation) and feathering, fractions of the aligned crop. Each side adds to
    # the uniform value; top is the forehead side of the upright aligned face.
    erode: float = 0.04
    erode_top: float = 0.0
    erode_bottom: float = 0.0
    erode_left: float = 0.0
    erode_right: float = 0.0
    blur: float = 0.06
    blur_top: float = 0.0
    blur_bottom: float = 0.0
    blur_left: float = 0.0
    blur_right: float = 0.0
    colour: str = "rct"
    colour_masked: bool = True  # colour statistics from inside the mask only
    colour_strength: float = 1.0  # 0 keeps the prediction's colours, 1 is the full transfer
    face_scale: float = 0.0  # -0.5..0.5: the pasted face this much larger (or smaller)
    motion_blur: float = 0.0  # 0..1: blur along the face's motion between neighbouring frames
    sharpen_mode: str = "gaussian"
    sharpen: float = 0.0  # -1..1: positive sharpens the face, negative softens it
    denoise: float = 0.0  # 0..1: degrade to match a soft destination: edge-preserving denoise
    bicubic: float = 0.0  # 0..1: degrade: shrink by up to 4x and enlarge again
    colour_bits: int = 8  # 1..8: degrade: bits per channel
    # grayscale models: flatten the face's brightness over smooth_colour frames (3 when that is 0)
    stabilise_brightness: bool = True
    smooth_placement: float = 1.5  # frames (Gaussian sigma) the face placement is smoothed over; 0 = off
    smooth_colour: float = 3.0  # frames (Gaussian sigma) the colour statistics are smoothed over; 0 = off
    keys: dict = field(default_factory=dict)  # field -> [[frame, value], ...], see `at`

    def __post_init__(self) -> None:
        check_types(self, "merge option")
        self._check()

    def _check(self) -> None:
        def fail(message: str) -> None:
            raise EngineError("bad_request", message)

        if self.mode not in MODES:
            fail(f"mode must be one of {', '.join(MODES)}, not {self.mode!r}")
        terms = self.mask.split("*")
        bad = [t for t in terms if t not in MASK_TERMS]
        if bad or not self.mask:
            fail(f"mask must be one of {', '.join(MASK_TERMS)} or a product like 'pred*dst', not {self.mask!r}")
        if any(t.startswith("seg-") for t in terms) and not self.seg_model:
            fail(f"mask {self.mask!r} uses the segmentation model: name it in 'seg_model'")
        if self.colour not in COLOUR_METHODS:
            fail(f"colour must be one of {', '.join(COLOUR_METHODS)}, not {self.colour!r}")
        if self.sharpen_mode not in SHARPEN_MODES:
            fail(f"sharpen_mode must be one of {', '.join(SHARPEN_MODES)}, not {self.sharpen_mode!r}")
        for name, lo, hi in RANGES:
            value = getattr(self, name)
            if not lo <= value <= hi:
                fail(f"{name} must be between {lo} and {hi}, not {value}")
        for name, pairs in self.keys.items():
            if name not in ANIMATABLE:
                fail(f"{name!r} cannot be animated; these can: {', '.join(sorted(ANIMATABLE))}")
            ok = isinstance(pairs, (list, tuple)) and pairs and all(
                isinstance(p, (list, tuple)) and len(p) == 2 and all(isinstance(v, (int, float)) and
                                                                      not isinstance(v, bool) for v in p)
                for p in pairs)
            if not ok:
                fail(f"keys[{name!r}] must be a non-empty list of [frame, value] pairs")
            frames = [p[0] for p in pairs]
            if frames != sorted(frames):
                fail(f"keys[{name!r}] must be in frame order")
            lo, hi = _RANGE_OF.get(name, (-np.inf, np.inf))
            if any(not lo <= p[1] <= hi for p in pairs):
                fail(f"keys[{name!r}] values must be between {lo} and {hi}")

    @classmethod
    def from_dict(cls, d: dict) -> "MergeSettings":
        return from_dict(cls, d, "merge option")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @property
    def animated(self) -> bool:
        return bool(self.keys)

    def at(self, frame: float) -> "MergeSettings":
        """The settings of one frame: each keyed field interpolated, everything else as it is."""
        if not self.keys:
            return self
        values: dict[str, Any] = {}
        for name, pairs in self.keys.items():
            xs = np.array([p[0] for p in pairs], np.float64)
            ys = np.array([p[1] for p in pairs], np.float64)
            value = float(np.interp(frame, xs, ys))
            values[name] = int(round(value)) if isinstance(getattr(self, name), int) else value
        return dataclasses.replace(self, keys={}, **values)

    def digest(self) -> str:
        """A short stable hash of every value: the key of caches of merged frames."""
        text = json.dumps(self.to_dict(), sort_keys=True, default=str)
        return hashlib.sha1(text.encode()).hexdigest()[:16]

    @property
    def mask_terms(self) -> tuple[str, ...]:
        return tuple(self.mask.split("*"))


RANGES = (
    ("hist_threshold", 0, 255), ("forehead", 0.0, 0.5),
    ("erode", -0.5, 0.5), ("erode_top", -0.5, 0.5), ("erode_bottom", -0.5, 0.5),
    ("erode_left", -0.5, 0.5), ("erode_right", -0.5, 0.5),
    ("blur", 0.0, 0.5), ("blur_top", -0.5, 0.5), ("blur_bottom", -0.5, 0.5),
    ("blur_left", -0.5, 0.5), ("blur_right", -0.5, 0.5),
    ("colour_strength", 0.0, 1.0), ("face_scale", -0.5, 0.5), ("motion_blur", 0.0, 1.0),
    ("sharpen", -1.0, 1.0), ("denoise", 0.0, 1.0), ("bicubic", 0.0, 1.0), ("colour_bits", 1, 8),
    ("smooth_placement", 0.0, 25.0), ("smooth_colour", 0.0, 25.0),
)
_RANGE_OF = {name: (lo, hi) for name, lo, hi in RANGES}
# Numbers that can change over a shot; placement and colour smoothing are properties of the whole shot.
ANIMATABLE = frozenset(name for name, _, _ in RANGES) - {"smooth_placement", "smooth_colour"}
