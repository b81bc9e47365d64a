"""Evaluate stage: the PNG summary sheet an editor looks at to judge a swap.

One picture, read top to bottom: the headline figures as cards (with a rough good/fair/poor dot
each), sample frames side by side (source | destination | swapped, with that frame's figures beside
them) and plots of the per-frame figures over time (plots.py). Drawn with cv2 and numpy only
(canvas.py), so the report needs no plotting library; Hershey fonts are ASCII only, hence "dE" and
"deg" in the units. This module lays out the page and draws its cards and sample rows.
"""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np

from engine.errors import EngineError
from engine.files import atomic_write

from .canvas import (AMBER, BACKGROUND, BOLD, DIM, EXTRA, GREEN, MARGIN, PANEL, RED, RESULT, SOURCE, TEXT, WIDTH,
                     put_text, text_width)
from .plots import PLOT_H, PLOTS, draw_plots

CROP = 288  # sample crops are resized to this square

# headline key -> (card label, unit, group, rough guide behind the card's dot: which way is better,
# the good and the fair bound). A guide for the eye, not a verdict: dlib calls two faces the same
# person below 0.6; 2.3 dE is about the smallest colour step people notice, so the swap's seam is
# judged by how much it adds to the destination's own step; a ratio of 1 is "as the destination was".
CARDS = {
    "closer_to_source": ("closer to source", "%", "identity", ("high", 0.9, 0.6)),
    "identity_to_source": ("distance to source", "", "identity", ("low", 0.6, 0.7)),
    "identity_to_destination": ("distance to dest.", "", "identity", ("high", 0.6, 0.5)),
    "faces_found": ("faces found", "%", "identity", ("high", 0.95, 0.8)),
    "landmark_distance": ("landmark distance", "IOD", "expression", ("low", 0.05, 0.10)),
    "yaw_difference": ("yaw difference", "deg", "expression", ("low", 3.0, 6.0)),
    "pitch_difference": ("pitch difference", "deg", "expression", ("low", 3.0, 6.0)),
    "roll_difference": ("roll difference", "deg", "expression", ("low", 3.0, 6.0)),
    "flicker_ratio": ("flicker ratio", "x", "stability", ("low", 1.25, 2.0)),
    "seam_colour": ("seam colour step", "dE", "stability", ("added", 2.3, 5.0)),
    "seam_colour_destination": ("seam colour (dest.)", "dE", "stability", None),
    "seam_gradient_ratio": ("seam gradient ratio", "x", "stability", ("near1", 1.25, 1.6)),
    "ssim_source_held_back": ("SSIM source unseen", "", "reconstruction", ("high", 0.8, 0.6)),
    "ssim_destination_held_back": ("SSIM dest. unseen", "", "reconstruction", ("high", 0.8, 0.6)),
}
GROUP_COLOURS = {"identity": SOURCE, "expression": EXTRA, "stability": RESULT, "reconstruction": GREEN}


def summary_sheet(report: dict, samples: list[dict], path: Path) -> Path:
    """Draw the sheet for `report` (report.json's layout) and `samples` and write it to `path` as PNG.

    samples: [{"frame": i, "source": BGR crop | None, "destination": BGR crop, "result": BGR crop}].
    Written atomically, so the add-on never loads half a picture.
    """
    image = render_sheet(report, samples)
    ok, png = cv2.imencode(".png", image)
    if not ok:
        raise EngineError("internal", "the summary sheet could not be encoded as PNG")
    path = Path(path)
    atomic_write(path, png.tobytes())
    return path


def render_sheet(report: dict, samples: list[dict]) -> np.ndarray:
    """The sheet as a BGR uint8 image WIDTH pixels wide."""
    plots_h = math.ceil(len(PLOTS) / 2) * (PLOT_H + MARGIN)
    samples_h = 66 + len(samples) * (CROP + 16) if samples else 0
    height = 96 + 2 * (104 + 12) + 12 + samples_h + 12 + plots_h + 40
    image = np.full((height, WIDTH, 3), BACKGROUND, np.uint8)
    y = _draw_header(image, report)
    y = _draw_cards(image, report, y)
    y = _draw_samples(image, report, samples, y + 12)
    y = draw_plots(image, report, [s.get("frame") for s in samples], y + 12)
    put_text(image, "Dots are a rough guide (green good, amber fair, red poor); see docs/quality.md. "
             "Orange = swapped result, blue = destination, pink = source.", (MARGIN, height - 16), 0.45, DIM)
    return image


def _number(value, unit: str = "", decimals: int | None = None) -> str:
    """A figure with its unit; "n/a" when not measured. "%" units take a share 0..1."""
    if value is None or not math.isfinite(float(value)):
        return "n/a"
    value = float(value)
    if unit == "%":
        return f"{100 * value:.0f} %"
    if decimals is None:
        decimals = {"x": 2, "deg": 1, "dE": 1}.get(unit, 3 if abs(value) < 10 else 1)
    if unit == "x":
        return f"{value:.{decimals}f}x"
    return f"{value:.{decimals}f} {unit}".strip()


def _rating(key: str, value, headline: dict) -> tuple[int, int, int] | None:
    """The card's dot colour by CARDS' rough guide; None where there is nothing to judge by."""
    guide = CARDS.get(key, ("", "", "", None))[3]
    if guide is None or value is None or not math.isfinite(float(value)):
        return None
    way, good, fair = guide
    v = float(value)
    if way == "added":  # judged against the destination's own step at the same border
        base = headline.get("seam_colour_destination")
        if base is None:
            return None
        v -= float(base)
    if way == "near1":
        v = max(v, 1 / v) if v > 0 else math.inf
    if way == "high":
        return GREEN if v >= good else AMBER if v >= fair else RED
    return GREEN if v <= good else AMBER if v <= fair else RED


def _draw_header(image: np.ndarray, report: dict) -> int:
    put_text(image, "Swapline quality report", (MARGIN, 44), 1.1, TEXT, 2, font=BOLD)
    inputs = report.get("inputs") or {}
    frames = report.get("frames") or {}
    source = inputs.get("source") or {}
    src = source.get("name") or Path(str(source.get("path") or "?")).name
    src = f"{source.get('kind', '')} {src}".strip() + (f" ({source['faces']} faces)" if source.get("faces") else "")
    result = inputs.get("result") or {}
    res = f"{result.get('kind', '')} {Path(str(result.get('path') or '?')).name}".strip()
    parts = [f"source: {src}", f"destination: {Path(str(inputs.get('destination') or '?')).name}",
             f"result: {res}"]
    if inputs.get("model"):
        parts.append(f"model: {inputs['model']}")
    first, count = frames.get("first"), frames.get("count")
    span = f"frames {first}-{first + count - 1} ({count})" if first is not None and count else "no frames"
    when = str(report.get("created") or "")[:19].replace("T", " ")
    seconds = report.get("seconds")
    took = f"   {seconds:.0f} s" if isinstance(seconds, (int, float)) and seconds > 0 else ""
    right = f"{span}   {when} UTC{took}" if when else span
    put_text(image, right, (WIDTH - MARGIN - text_width(right, 0.55), 44), 0.55, DIM)
    # the inputs on one line; a long path loses its middle (its end names the file) before the others shrink
    sep, avail = "   |   ", WIDTH - 2 * MARGIN
    while text_width(sep.join(parts), 0.55) > avail:
        i = max(range(len(parts)), key=lambda k: len(parts[k]))
        if len(parts[i]) < 16:
            break
        head, tail = parts[i].split("...", 1) if "..." in parts[i] else (parts[i][:len(parts[i]) // 2],
                                                                            parts[i][len(parts[i]) // 2:])
        parts[i] = f"{head[:-1]}...{tail[1:]}"
    put_text(image, sep.join(parts), (MARGIN, 76), 0.55, DIM, max_width=avail)
    return 96


def _card_note(key: str, report: dict) -> str:
    """A short context line under a card's figure: what it compares with."""
    metrics = report.get("metrics") or {}
    frames = report.get("frames") or {}
    if key == "identity_to_source":
        return "same person below 0.60"
    if key == "identity_to_destination":
        base = ((metrics.get("identity") or {}).get("destination_to_source") or {}).get("median")
        return f"dest. vs source: {_number(base)}" if base is not None else "higher = less of the dest."
    if key == "closer_to_source":
        return "frames nearer the source"
    if key == "faces_found":
        # the figure counts frames with a face in both; result_faces alone would also count a face
        # found in a swapped frame whose destination had none ("6 of 5")
        share, faces = (report.get("headline") or {}).get("faces_found"), frames.get("destination_faces")
        if share is None or not faces:
            return "no destination face"
        return f"{round(share * faces)} of {faces} frames"
    if key == "landmark_distance":
        inner = ((metrics.get("expression") or {}).get("inner") or {}).get("median")
        return f"without jaw: {_number(inner)}"
    if key.endswith("_difference"):
        # a steady offset is the swapped face's shape read as pose (expression.py), not a lost head turn
        axis = key.split("_")[0]
        expression = metrics.get("expression") or {}
        p90 = (expression.get(axis) or {}).get("p90")
        offset = (expression.get("offset") or {}).get(axis)
        if offset is None:
            return f"90th pct: {_number(p90, 'deg')}"
        return f"offset {offset:+.1f} deg, p90 {_number(p90, decimals=1)}"
    if key == "flicker_ratio":
        f = metrics.get("flicker") or {}
        r, d = (f.get("result") or {}).get("mean"), (f.get("destination") or {}).get("mean")
        return f"{_number(r, decimals=2)} vs {_number(d, decimals=2)} per frame"
    if key == "seam_colour":
        return "step at the mask border"
    if key == "seam_colour_destination":
        return "same border, untouched"
    if key == "seam_gradient_ratio":
        return "1.00 = as the destination"
    if key.startswith("ssim_"):
        recon = metrics.get("reconstruction") or {}
        side = recon.get(key.split("_")[1]) or {}
        seen = ((side.get("seen") or {}).get("ssim") or {}).get("median")
        if seen is None:
            return recon.get("reason") or side.get("reason") or "no held-back faces"
        return f"seen: {_number(seen)} ({(side.get('held_back') or {}).get('faces', 0)} unseen)"
    return ""


def _draw_cards(image: np.ndarray, report: dict, y: int) -> int:
    headline = report.get("headline") or {}
    per_row, gap, h = 7, 12, 104
    w = (WIDTH - 2 * MARGIN - (per_row - 1) * gap) // per_row
    for i, key in enumerate(CARDS):
        label, unit, group, _ = CARDS[key]
        x0, y0 = MARGIN + (i % per_row) * (w + gap), y + (i // per_row) * (h + gap)
        cv2.rectangle(image, (x0, y0), (x0 + w, y0 + h), PANEL, -1)
        cv2.rectangle(image, (x0, y0), (x0 + w, y0 + 3), GROUP_COLOURS[group], -1)
        put_text(image, label, (x0 + 12, y0 + 26), 0.5, DIM, max_width=w - 36)
        value = headline.get(key)
        figure = _number(value, unit)
        put_text(image, figure, (x0 + 12, y0 + 64), 0.95, DIM if figure == "n/a" else TEXT, 2, max_width=w - 24)
        put_text(image, _card_note(key, report), (x0 + 12, y0 + 90), 0.42, DIM, max_width=w - 24)
        dot = _rating(key, value, headline)
        if dot is not None:
            cv2.circle(image, (x0 + w - 16, y0 + 20), 7, dot, -1, cv2.LINE_AA)
    return y + 2 * (h + gap)


def _fit(crop, frame) -> np.ndarray | None:
    """A crop as a CROP x CROP BGR square (letterboxed if it is not square)."""
    if crop is None:
        return None
    crop = np.asarray(crop)
    if crop.ndim not in (2, 3) or crop.size == 0:
        raise EngineError("bad_request", f"the sample crop of frame {frame} is not an image (shape {crop.shape})")
    if crop.dtype != np.uint8:
        crop = np.clip(crop, 0, 255).astype(np.uint8)
    if crop.ndim == 2 or crop.shape[2] == 1:
        crop = cv2.cvtColor(crop.reshape(crop.shape[:2]), cv2.COLOR_GRAY2BGR)
    elif crop.shape[2] == 4:
        crop = cv2.cvtColor(crop, cv2.COLOR_BGRA2BGR)
    h, w = crop.shape[:2]
    s = CROP / max(h, w)
    size = (max(1, round(w * s)), max(1, round(h * s)))
    crop = cv2.resize(crop, size, interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC)
    out = np.full((CROP, CROP, 3), PANEL, np.uint8)
    oy, ox = (CROP - size[1]) // 2, (CROP - size[0]) // 2
    out[oy:oy + size[1], ox:ox + size[0]] = crop
    return out


def _frame_lines(row: dict | None) -> list[tuple[str, str]]:
    """That frame's figures, as (name, text) lines beside its crops."""
    row = row or {}
    idt, exp, fl, sm = (row.get(k) or {} for k in ("identity", "expression", "flicker", "seams"))
    lines = []
    if idt:
        nearer = "source" if idt.get("closer_to_source") else "destination"
        lines.append(("identity", f"to source {_number(idt.get('to_source'))}, to dest. "
                                  f"{_number(idt.get('to_destination'))}: nearer the {nearer}"))
    else:
        lines.append(("identity", "n/a"))
    lines.append(("landmarks", f"{_number(exp.get('landmarks'), 'IOD')} (without jaw {_number(exp.get('inner'))})"
                  if exp else "n/a (no face in one of the frames)"))
    lines.append(("pose diff", "  ".join(f"{k} {_number(exp.get(k), 'deg')}" for k in ("yaw", "pitch", "roll"))
                  if exp else "n/a"))
    lines.append(("flicker", f"swapped {_number(fl.get('result'), decimals=2)}, "
                             f"destination {_number(fl.get('destination'), decimals=2)}"
                  if fl else "n/a (first frame, cut or gap)"))
    lines.append(("seam", f"colour {_number(sm.get('colour'), 'dE')} "
                          f"(dest. {_number(sm.get('colour_destination'), 'dE')}), "
                          f"gradient {_number(sm.get('gradient_ratio'), 'x')}" if sm else "n/a"))
    return lines


def _draw_samples(image: np.ndarray, report: dict, samples: list[dict], y: int) -> int:
    if not samples:
        return y
    rows = {r.get("frame"): r for r in report.get("per_frame") or [] if isinstance(r, dict)}
    put_text(image, "Sample frames", (MARGIN, y + 24), 0.75, TEXT, 1, font=BOLD)
    titles = ["source (reference)", "destination", "swapped"]
    for j, title in enumerate(titles):
        x = MARGIN + j * (CROP + 8)
        put_text(image, title, (x + (CROP - text_width(title, 0.55)) // 2, y + 56), 0.55, DIM)
    y += 66
    text_x = MARGIN + 3 * (CROP + 8) + 16
    for n, sample in enumerate(samples, 1):
        frame = sample.get("frame")
        for j, key in enumerate(("source", "destination", "result")):
            x = MARGIN + j * (CROP + 8)
            crop = _fit(sample.get(key), frame)
            if crop is None:
                cv2.rectangle(image, (x, y), (x + CROP - 1, y + CROP - 1), PANEL, -1)
                gone = "no source face" if key == "source" else "no face found"
                put_text(image, gone, (x + (CROP - text_width(gone, 0.6)) // 2, y + CROP // 2), 0.6, DIM)
            else:
                image[y:y + CROP, x:x + CROP] = crop
        put_text(image, f"#{n}  frame {frame}", (text_x, y + 32), 0.85, TEXT, 2, font=BOLD)
        for i, (name, line) in enumerate(_frame_lines(rows.get(frame))):
            ly = y + 78 + i * 34
            put_text(image, name, (text_x, ly), 0.55, DIM)
            put_text(image, line, (text_x + 110, ly), 0.55, TEXT, max_width=WIDTH - MARGIN - text_x - 110)
        y += CROP + 16
    return y


