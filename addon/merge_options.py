"""Blender layer, without bpy: every merge option the Merge panel offers, with its tooltip.

One table mirrors the engine's MergeSettings field by field (a test checks names, defaults, ranges,
choices and which ones may be animated): merge_settings.py builds the destination strip's Blender
properties from it, merge_panels.py draws it group by group, and `settings_for` there turns the
property values (and their F-curves) back into the settings dict the engine takes.
"""

from __future__ import annotations

from typing import Any, NamedTuple

GROUPS = ("Mode", "Mask", "Erode & Blur", "Colour", "Detail", "Degrade", "Temporal")


class Option(NamedTuple):
    name: str  # the MergeSettings field and the property name
    group: str
    default: Any
    label: str
    tip: str  # what it does and when to use it
    extra: dict = {}  # min/max/soft_min/soft_max/items/precision/step for the Blender property
    animatable: bool = False  # may change over the shot (keyframes become the engine's `keys`)


MODE_ITEMS = [
    ("overlay", "Overlay", "Paste the colour-corrected face through the feathered mask: the usual choice, fastest"),
    ("hist-match", "Histogram Match", "Match the face's histogram to the destination face before pasting: for "
     "strongly different lighting that colour transfer alone leaves off"),
    ("seamless", "Seamless", "Poisson blending: the face takes the destination's surrounding tones at its edge. "
     "Hides seams on even skin; can bleed colour from hair or shadows; slower"),
    ("seamless-hist", "Seamless + Histogram", "Histogram match, then Poisson blending"),
    ("raw-patch", "Raw Patch", "The whole predicted square pasted as is, no mask: to inspect what the model "
     "draws around the face"),
    ("raw-predict", "Raw Prediction", "The model's untouched output (no colour transfer, no mask): to judge the "
     "training itself"),
]
MASK_ITEMS = [
    ("dst", "Destination Mask", "The destination face's drawn, learned or imported mask (the landmark hull where "
     "it has none): keeps hands and hair in front of the swap. The usual choice"),
    ("hull", "Landmark Hull", "The face outline from the destination's landmarks: quick, ignores occluders"),
    ("pred", "Predicted Mask", "The mask the model draws with its face: follows the swapped face's own shape"),
    ("pred*dst", "Predicted × Destination", "Only where both agree: the tightest mask, fewest edge artefacts"),
    ("seg-dst", "Segmenter on Destination", "The mask model run on the destination crop: occluders the faceset "
     "was never labelled for (needs a mask model)"),
    ("seg-pred", "Segmenter on Prediction", "The mask model run on the swapped face (needs a mask model)"),
    ("seg-pred*seg-dst", "Segmenter on Both", "The mask model on both faces, multiplied: the strictest learned "
     "mask (needs a mask model)"),
    ("pred*seg-dst", "Predicted × Segmenter", "The model's mask where the mask model finds the destination face "
     "(needs a mask model)"),
    ("custom", "Custom", "Any product of hull, pred, dst, seg-pred and seg-dst, typed in the Custom Mask field "
     "(e.g. hull*pred*seg-dst)"),
]
CUSTOM_MASK = "custom"  # the Mask choice that takes its product from the Custom Mask text (not an engine value)
MASK_TERMS = ("hull", "pred", "dst", "seg-pred", "seg-dst")  # the engine's MergeSettings.MASK_TERMS (a test checks)
COLOUR_ITEMS = [
    ("none", "None", "Keep the prediction's colours: right when the model already matches the shot"),
    ("rct", "RCT", "Reinhard: matches mean and spread of colour; quick and safe, the usual pick"),
    ("lct", "LCT", "Linear: also matches how the colours vary together"),
    ("mkl", "MKL", "Monge-Kantorovich: a closer match for strongly different lighting"),
    ("idt", "IDT", "Iterative distribution transfer: the closest match, the slowest"),
    ("sot", "SOT", "Sliced optimal transport: close match with fewer colour artefacts than IDT"),
    ("hist", "Histogram", "Per-channel histogram matching: for high-contrast or stylised grades"),
]
SHARPEN_ITEMS = [
    ("gaussian", "Gaussian", "A soft unsharp mask: natural-looking detail"),
    ("box", "Box", "A hard-edged unsharp mask: crisper, can ring on edges"),
]


def _side(name: str, what: str, side: str, low: float = -0.5) -> Option:
    base = "erode" if what == "Erode" else "blur"
    verb = ("Erode (negative: dilate) the mask's {side} side too, added to the uniform value. Use it when one "
            "edge shows a seam or a sliver of the destination's face") if base == "erode" else (
        "Feather the {side} side more (negative: less), added to the uniform blur. Use it for a soft forehead "
        "or hair line while the jaw stays crisp")
    side_text = {"top": "top (forehead)", "bottom": "bottom (chin)", "left": "left", "right": "right"}[side]
    return Option(f"{base}_{side}", "Erode & Blur", 0.0, f"{what} {side.capitalize()}",
                  verb.format(side=side_text) + ". Fraction of the aligned face",
                  {"min": low, "max": 0.5, "soft_min": -0.25, "soft_max": 0.25, "precision": 3, "step": 0.5},
                  animatable=True)


OPTIONS: tuple[Option, ...] = (
    # --- Mode: how the face goes into the frame
    Option("mode", "Mode", "overlay", "Mode", "How the merged face is blended into the frame; Overlay unless seams "
           "or lighting call for another",
           {"items": MODE_ITEMS}),
    Option("hist_threshold", "Mode", 238, "Histogram Threshold", "Histogram-match modes: bins above this are "
           "clipped, so highlights keep their own brightness. Lower it if skin highlights blow out",
           {"min": 0, "max": 255}, animatable=True),
    Option("hist_masked", "Mode", True, "Histogram Inside Mask", "Histogram-match modes: take the statistics from "
           "inside the mask only, so background and hair do not pull the face's tones"),
    # --- Mask
    Option("mask", "Mask", "dst", "Mask", "Which mask cuts the face out of the prediction; pick per shot by what "
           "covers the face", {"items": MASK_ITEMS}),
    Option("seg_model", "Mask", "", "Mask Model", "The trained mask model the segmenter masks use (the "
           "Masks panel's model, e.g. xseg). Needed only for the segmenter masks"),
    Option("forehead", "Mask", 0.1, "Forehead", "Landmark hull: how far the mask reaches above the brows, as a "
           "fraction of brow-to-chin. Raise it for whole-face models; keep it low when a fringe or hat covers "
           "the forehead", {"min": 0.0, "max": 0.5, "precision": 3, "step": 0.5}, animatable=True),
    # --- Erode & blur: fractions of the aligned crop
    Option("erode", "Erode & Blur", 0.04, "Erode", "Shrink the mask (negative: grow it), as a fraction of the "
           "aligned face: keeps the seam inside the face. Raise it when the destination's face edge shows "
           "around the swap; lower it when the swap looks too small",
           {"min": -0.5, "max": 0.5, "soft_min": -0.2, "soft_max": 0.2, "precision": 3, "step": 0.5},
           animatable=True),
    *(_side("Erode", "Erode", side) for side in ("top", "bottom", "left", "right")),
    Option("blur", "Erode & Blur", 0.06, "Blur", "Feather the mask edge, as a fraction of the aligned face: hides "
           "the seam. Raise it for a visible edge; too much lets the destination's face show through",
           {"min": 0.0, "max": 0.5, "soft_max": 0.25, "precision": 3, "step": 0.5}, animatable=True),
    *(_side("Blur", "Blur", side) for side in ("top", "bottom", "left", "right")),
    # --- Colour
    Option("colour", "Colour", "rct", "Colour Transfer", "How the face's colours are matched to the destination "
           "face", {"items": COLOUR_ITEMS}),
    Option("colour_masked", "Colour", True, "Inside Mask Only", "Take the colour statistics from inside the mask "
           "only: hair, background and teeth do not tint the skin. Usually on"),
    Option("colour_strength", "Colour", 1.0, "Strength", "How much of the colour transfer to apply: 0 keeps the "
           "prediction's colours, 1 the full transfer. Lower it when the transfer overshoots (e.g. lips go grey)",
           {"min": 0.0, "max": 1.0, "precision": 3}, animatable=True),
    # --- Detail
    Option("face_scale", "Detail", 0.0, "Face Scale", "Paste the face this much larger (negative: smaller): when "
           "the swap looks too narrow or too wide for the head", {"min": -0.5, "max": 0.5, "soft_min": -0.2,
                                                                   "soft_max": 0.2, "precision": 3, "step": 0.5},
           animatable=True),
    Option("motion_blur", "Detail", 0.0, "Motion Blur", "Blur the face along its motion between neighbouring "
           "frames, as the camera blurred the rest of the shot: for fast head turns", {"min": 0.0, "max": 1.0,
                                                                                       "precision": 3},
           animatable=True),
    Option("sharpen_mode", "Detail", "gaussian", "Sharpen Filter", "The filter Sharpen uses: Gaussian looks natural, "
           "Box is crisper",
           {"items": SHARPEN_ITEMS}),
    Option("sharpen", "Detail", 0.0, "Sharpen", "Positive sharpens the face (a soft model on a crisp shot), "
           "negative softens it (a crisp face on a soft shot)", {"min": -1.0, "max": 1.0, "precision": 3},
           animatable=True),
    # --- Degrade: make a clean face match a soft, noisy or compressed destination
    Option("denoise", "Degrade", 0.0, "Denoise", "Edge-preserving smoothing of the face: when the destination is "
           "soft and the swap looks too clean", {"min": 0.0, "max": 1.0, "precision": 3}, animatable=True),
    Option("bicubic", "Degrade", 0.0, "Bicubic Degrade", "Shrink the face by up to 4x and enlarge it again: "
           "matches a low-resolution or upscaled destination", {"min": 0.0, "max": 1.0, "precision": 3},
           animatable=True),
    Option("colour_bits", "Degrade", 8, "Colour Bits", "Bits per colour channel: fewer posterise the face to "
           "match a heavily compressed destination. 8 leaves it alone", {"min": 1, "max": 8}, animatable=True),
    # --- Temporal: steadiness over the shot
    Option("stabilise_brightness", "Temporal", True, "Stabilise Brightness", "Grayscale models: flatten the "
           "face's brightness over the shot so it does not pulse from frame to frame"),
    Option("smooth_placement", "Temporal", 1.5, "Smooth Placement", "Frames (Gaussian sigma) over which the "
           "face's placement is smoothed, so a still head gives a still face. 0 = off; lower it if the face "
           "lags behind fast motion", {"min": 0.0, "max": 25.0, "soft_max": 8.0, "precision": 2}),
    Option("smooth_colour", "Temporal", 3.0, "Smooth Colour", "Frames (Gaussian sigma) over which the colour "
           "transfer's statistics are smoothed, so the face's colour does not flicker. 0 = off; lower it for "
           "fast lighting changes", {"min": 0.0, "max": 25.0, "soft_max": 10.0, "precision": 2}),
)

BY_NAME = {o.name: o for o in OPTIONS}
ANIMATABLE = frozenset(o.name for o in OPTIONS if o.animatable)


def group(name: str) -> list[Option]:
    return [o for o in OPTIONS if o.group == name]


def plain(option: Option, value: Any) -> Any:
    """A property value as the engine wants it (Blender hands floats back for float properties, ints
    for int ones; enums and strings as str)."""
    if isinstance(option.default, bool):
        return bool(value)
    if isinstance(option.default, int):
        return int(value)
    if isinstance(option.default, float):
        return tidy(value)
    return str(value)


def custom_mask(text: str, seg_model: str) -> str:
    """The engine mask a Custom Mask text names ("pred * dst" -> "pred*dst"), checked as the engine checks
    it; ValueError with what is wrong and what is allowed."""
    terms = [t.strip() for t in text.split("*")]
    if not text.strip() or not all(terms):
        raise ValueError(f"Custom mask {text!r}: give one or more of {', '.join(MASK_TERMS)} joined by '*'")
    bad = [t for t in terms if t not in MASK_TERMS]
    if bad:
        raise ValueError(f"Custom mask {text!r}: unknown {', '.join(map(repr, bad))}; "
                         f"use {', '.join(MASK_TERMS)} joined by '*'")
    if any(t.startswith("seg-") for t in terms) and not seg_model.strip():
        raise ValueError(f"Custom mask {text!r} uses the mask model: set Mask Model")
    return "*".join(terms)


def tidy(value: float) -> float:
    """A Blender float (single precision: 0.1 reads back as 0.10000000149) as the decimal it was typed
    as, so the engine's settings and their digest read as the user set them."""
    return float(f"{float(value):.7g}")


def clamp(option: Option, value: float) -> float:
    """A sampled F-curve value kept inside the option's range (a Bezier curve can overshoot its keys)."""
    low, high = option.extra.get("min", -float("inf")), option.extra.get("max", float("inf"))
    return tidy(min(max(value, low), high))


def simplify(pairs: list[list[float]], tolerance: float = 1e-6) -> list[list[float]]:
    """[frame, value] samples without the points that linear interpolation between their neighbours
    gives back (a constant or linear stretch keeps only its ends); the engine interpolates linearly."""
    if len(pairs) <= 2:
        return [list(p) for p in pairs]
    kept = [list(pairs[0])]
    for index in range(1, len(pairs) - 1):
        (f0, v0), (f1, v1), (f2, v2) = kept[-1], pairs[index], pairs[index + 1]
        expected = v0 + (v2 - v0) * (f1 - f0) / (f2 - f0)
        if abs(expected - v1) > tolerance * max(1.0, abs(v1)):
            kept.append(list(pairs[index]))
    kept.append(list(pairs[-1]))
    return kept
