"""Evaluate stage: the PNG summary sheet an editor looks at to judge a swap.

One picture, read top to bottom: the headline figures (with a rough good/fair/poor dot each),
sample frames side by side (source | destination | swapped, with that frame's figures beside
them) and plots of the per-frame figures over time. Drawn with cv2 and numpy only, so the report
needs no plotting library; Hershey fonts are ASCII only, hence "dE" and "deg" in the units.
Frames with no value leave a gap in a line rather than a bridge between their neighbours, so a
lost face never looks like a smooth stretch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from engine.errors import EngineError
from engine.files import atomic_write

WIDTH = 1600
MARGIN = 24
CROP = 288  # sample crops are resized to this square
FONT = cv2.FONT_HERSHEY_SIMPLEX
BOLD = cv2.FONT_HERSHEY_DUPLEX
BACKGROUND = (26, 24, 22)
PANEL = (40, 37, 34)
GRID = (62, 58, 54)
AXIS = (140, 136, 130)
TEXT = (236, 236, 236)
DIM = (160, 156, 150)
RESULT = (60, 160, 255)  # orange: the swapped result
DESTINATION = (235, 170, 70)  # blue: the untouched destination
SOURCE = (190, 110, 250)  # pink: the source identity
GREEN, AMBER, RED = (110, 200, 90), (40, 190, 245), (80, 80, 235)
EXTRA = (120, 220, 230)  # a third series (pitch)

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


@dataclass
class Series:
    group: str  # the per_frame row's dict ("identity", "expression", ...)
    key: str
    label: str
    colour: tuple[int, int, int]


@dataclass
class Plot:
    title: str
    unit: str
    series: list[Series]
    min_top: float  # the y axis reaches at least this high, so noise near 0 is not blown up
    reference: tuple[float, str] | None = None  # a dashed level with its label


PLOTS = [
    Plot("Identity distance (lower = closer)", "distance", [
        Series("identity", "to_source", "to source", SOURCE),
        Series("identity", "to_destination", "to destination", DESTINATION)], 0.8, (0.6, "same person < 0.6")),
    Plot("Expression kept: landmark distance", "inter-ocular", [
        Series("expression", "landmarks", "68 points", RESULT),
        Series("expression", "inner", "without jaw", EXTRA)], 0.05),
    Plot("Head pose difference", "degrees", [
        Series("expression", "yaw", "yaw", RESULT),
        Series("expression", "pitch", "pitch", EXTRA),
        Series("expression", "roll", "roll", SOURCE)], 3.0),
    Plot("Flicker in the face region", "mean |dF| 0..255", [
        Series("flicker", "result", "swapped", RESULT),
        Series("flicker", "destination", "destination", DESTINATION)], 2.0),
    Plot("Seam colour step across the mask border", "CIE76 dE", [
        Series("seams", "colour", "swapped", RESULT),
        Series("seams", "colour_destination", "destination", DESTINATION)], 3.0),
    Plot("Seam gradient: swapped / destination", "ratio", [
        Series("seams", "gradient_ratio", "swapped / dest.", RESULT)], 1.5, (1.0, "as destination")),
]
PLOT_H = 300


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
    y = _draw_plots(image, report, [s.get("frame") for s in samples], y + 12)
    _text(image, "Dots are a rough guide (green good, amber fair, red poor); see docs/quality.md. "
          "Orange = swapped result, blue = destination, pink = source.", (MARGIN, height - 16), 0.45, DIM)
    return image


def _text(image: np.ndarray, text: str, origin: tuple[int, int], scale: float = 0.5,
          colour=TEXT, thickness: int = 1, max_width: int = 0, font: int = FONT) -> int:
    """Anti-aliased text, elided with "..." to fit max_width; returns the width drawn."""
    text = str(text).encode("ascii", "replace").decode("ascii")  # Hershey fonts draw ASCII only
    if max_width > 0 and _width(text, scale, thickness, font) > max_width:
        while len(text) > 1 and _width(text + "...", scale, thickness, font) > max_width:
            text = text[:-1]
        text = text.rstrip() + "..."
    cv2.putText(image, text, (int(origin[0]), int(origin[1])), font, scale, colour, thickness, cv2.LINE_AA)
    return _width(text, scale, thickness, font)


def _width(text: str, scale: float, thickness: int = 1, font: int = FONT) -> int:
    return cv2.getTextSize(text, font, scale, thickness)[0][0]


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
    _text(image, "Swapline quality report", (MARGIN, 44), 1.1, TEXT, 2, font=BOLD)
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
    _text(image, right, (WIDTH - MARGIN - _width(right, 0.55), 44), 0.55, DIM)
    # the inputs on one line; a long path loses its middle (its end names the file) before the others shrink
    sep, avail = "   |   ", WIDTH - 2 * MARGIN
    while _width(sep.join(parts), 0.55) > avail:
        i = max(range(len(parts)), key=lambda k: len(parts[k]))
        if len(parts[i]) < 16:
            break
        head, tail = parts[i].split("...", 1) if "..." in parts[i] else (parts[i][:len(parts[i]) // 2],
                                                                            parts[i][len(parts[i]) // 2:])
        parts[i] = f"{head[:-1]}...{tail[1:]}"
    _text(image, sep.join(parts), (MARGIN, 76), 0.55, DIM, max_width=avail)
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
        return f"{frames.get('result_faces', '?')} of {frames.get('destination_faces', '?')} frames"
    if key == "landmark_distance":
        inner = ((metrics.get("expression") or {}).get("inner") or {}).get("median")
        return f"without jaw: {_number(inner)}"
    if key.endswith("_difference"):
        p90 = ((metrics.get("expression") or {}).get(key.split("_")[0]) or {}).get("p90")
        return f"90th pct: {_number(p90, 'deg')}"
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
        _text(image, label, (x0 + 12, y0 + 26), 0.5, DIM, max_width=w - 36)
        value = headline.get(key)
        figure = _number(value, unit)
        _text(image, figure, (x0 + 12, y0 + 64), 0.95, DIM if figure == "n/a" else TEXT, 2, max_width=w - 24)
        _text(image, _card_note(key, report), (x0 + 12, y0 + 90), 0.42, DIM, max_width=w - 24)
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
    _text(image, "Sample frames", (MARGIN, y + 24), 0.75, TEXT, 1, font=BOLD)
    titles = ["source (reference)", "destination", "swapped"]
    for j, title in enumerate(titles):
        x = MARGIN + j * (CROP + 8)
        _text(image, title, (x + (CROP - _width(title, 0.55)) // 2, y + 56), 0.55, DIM)
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
                _text(image, gone, (x + (CROP - _width(gone, 0.6)) // 2, y + CROP // 2), 0.6, DIM)
            else:
                image[y:y + CROP, x:x + CROP] = crop
        _text(image, f"#{n}  frame {frame}", (text_x, y + 32), 0.85, TEXT, 2, font=BOLD)
        for i, (name, line) in enumerate(_frame_lines(rows.get(frame))):
            ly = y + 78 + i * 34
            _text(image, name, (text_x, ly), 0.55, DIM)
            _text(image, line, (text_x + 110, ly), 0.55, TEXT, max_width=WIDTH - MARGIN - text_x - 110)
        y += CROP + 16
    return y


def _ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round tick values (1, 2, 2.5, 5 x 10^n steps) covering lo..hi."""
    span = hi - lo
    if span <= 0:
        return [lo]
    raw = span / count
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    return [round(first + i * step, 10) for i in range(int((hi - first) / step + 1e-9) + 1)]


def _series(rows: list[dict], series: Series) -> list[list[tuple[float, float]]]:
    """The series' points, split into runs of consecutive frames that all have a value."""
    runs, run, last = [], [], None
    for row in rows:
        value = (row.get(series.group) or {}).get(series.key)
        frame = row.get("frame")
        ok = value is not None and frame is not None and math.isfinite(float(value))
        if not ok or last is None or frame != last + 1:
            if run:
                runs.append(run)
            run = []
        if ok:
            run.append((float(frame), float(value)))
        last = frame if ok else None
    if run:
        runs.append(run)
    return runs


def _dashed(image, p0, p1, colour, dash: int = 6) -> None:
    (x0, y0), (x1, y1) = p0, p1
    length = max(abs(x1 - x0), abs(y1 - y0))
    for s in range(0, length, 2 * dash):
        a, b = s / length, min(s + dash, length) / length
        cv2.line(image, (round(x0 + a * (x1 - x0)), round(y0 + a * (y1 - y0))),
                 (round(x0 + b * (x1 - x0)), round(y0 + b * (y1 - y0))), colour, 1, cv2.LINE_AA)


def _draw_plots(image: np.ndarray, report: dict, sample_frames: list, y: int) -> int:
    rows = sorted((r for r in report.get("per_frame") or [] if isinstance(r, dict) and r.get("frame") is not None),
                  key=lambda r: r["frame"])
    w = (WIDTH - 3 * MARGIN) // 2
    for i, plot in enumerate(PLOTS):
        x0, y0 = MARGIN + (i % 2) * (w + MARGIN), y + (i // 2) * (PLOT_H + MARGIN)
        panel = image[y0:y0 + PLOT_H, x0:x0 + w]
        _draw_plot(panel, plot, rows, sample_frames, _missing_reason(report, plot))
    return y + math.ceil(len(PLOTS) / 2) * (PLOT_H + MARGIN)


def _missing_reason(report: dict, plot: Plot) -> str:
    metric = ((report.get("metrics") or {}).get(plot.series[0].group) or {})
    if metric.get("available") is False:
        return f"not measured: {metric.get('reason') or 'unavailable'}"
    return "no values (no face found in these frames)"


def _draw_plot(panel: np.ndarray, plot: Plot, rows: list[dict], sample_frames: list, missing: str) -> None:
    """One plot drawn into `panel` (a view of the sheet): title, legend, axes, ticks, series."""
    h, w = panel.shape[:2]
    panel[:] = PANEL
    left, right, top, bottom = 74, 18, 68, 44
    _text(panel, plot.title, (14, 26), 0.62, TEXT, 1, max_width=w - 28, font=BOLD)
    lx = 14  # legend under the title: a swatch and a name per series
    for s in plot.series:
        cv2.line(panel, (lx, 42), (lx + 22, 42), s.colour, 3, cv2.LINE_AA)
        lx += 32 + _text(panel, s.label, (lx + 32, 47), 0.5, TEXT) + 20
    if plot.reference:
        _dashed(panel, (lx, 42), (lx + 22, 42), DIM)
        _text(panel, plot.reference[1], (lx + 32, 47), 0.5, DIM)
    runs = {s.label: _series(rows, s) for s in plot.series}
    values = [v for r in runs.values() for run in r for _, v in run]
    frames = [r["frame"] for r in rows]
    x_lo, x_hi = (min(frames), max(frames)) if frames else (0, 1)
    if x_hi - x_lo < 1:
        x_lo, x_hi = x_lo - 0.5, x_hi + 0.5
    top_value = max(values + [plot.min_top] + ([plot.reference[0]] if plot.reference else [])) * 1.08
    y_ticks = _ticks(0.0, top_value)
    step = y_ticks[1] - y_ticks[0] if len(y_ticks) > 1 else top_value
    y_hi = y_ticks[-1] if y_ticks[-1] >= top_value else y_ticks[-1] + step
    y_ticks = _ticks(0.0, y_hi)
    ax0, ax1, ay0, ay1 = left, w - right, top, h - bottom  # plot area in panel pixels

    def px(frame: float, value: float) -> tuple[float, float]:
        return (ax0 + (frame - x_lo) / (x_hi - x_lo) * (ax1 - ax0), ay1 - value / y_hi * (ay1 - ay0))

    for t in y_ticks:
        ty = round(px(x_lo, t)[1])
        cv2.line(panel, (ax0, ty), (ax1, ty), GRID, 1)
        label = f"{t:g}"
        _text(panel, label, (ax0 - 8 - _width(label, 0.45), ty + 5), 0.45, DIM)
    for t in _ticks(x_lo, x_hi, 8):
        if t != int(t):
            continue
        tx = round(px(t, 0)[0])
        cv2.line(panel, (tx, ay1), (tx, ay1 + 5), AXIS, 1)
        label = f"{int(t)}"
        _text(panel, label, (tx - _width(label, 0.45) // 2, ay1 + 20), 0.45, DIM)
    cv2.line(panel, (ax0, ay0), (ax0, ay1), AXIS, 1)
    cv2.line(panel, (ax0, ay1), (ax1, ay1), AXIS, 1)
    _text(panel, "frame", (ax1 - _width("frame", 0.45), h - 8), 0.45, DIM)
    _vertical_label(panel, plot.unit, 14, (ay0 + ay1) // 2)
    for n, frame in enumerate(sample_frames, 1):  # where the sample rows above were taken
        if frame is not None and x_lo <= frame <= x_hi:
            fx = round(px(frame, 0)[0])
            _dashed(panel, (fx, ay0), (fx, ay1), AXIS, 3)
            tag = f"#{n}"
            tx = fx + 3 if fx + 3 + _width(tag, 0.4) < w - 2 else fx - 3 - _width(tag, 0.4)
            _text(panel, tag, (tx, ay0 + 12), 0.4, DIM)
    if plot.reference:
        ry = round(px(x_lo, plot.reference[0])[1])
        _dashed(panel, (ax0, ry), (ax1, ry), DIM)
    # the first series (the swap's own figure) goes on top and thinnest, so where it equals the
    # destination's the wider line beneath still shows as an edge around it
    for k, s in reversed(list(enumerate(plot.series))):
        for run in runs[s.label]:
            pts = np.array([px(f, v) for f, v in run]) * 16  # 4 fractional bits: smooth anti-aliased lines
            if len(run) == 1:
                cv2.circle(panel, tuple(int(v) for v in pts[0]), (3 + k) * 16, s.colour, -1, cv2.LINE_AA, 4)
            else:
                cv2.polylines(panel, [np.round(pts).astype(np.int32)], False, s.colour, 2 + (k > 0),
                              cv2.LINE_AA, 4)
    if not values:
        mx, my = max(ax0 + 8, (ax0 + ax1 - _width(missing, 0.55)) // 2), (ay0 + ay1) // 2 - 20
        cv2.rectangle(panel, (mx - 8, my - 20), (min(ax1 - 4, mx + _width(missing, 0.55) + 8), my + 10), PANEL, -1)
        _text(panel, missing, (mx, my), 0.55, DIM, max_width=ax1 - ax0 - 16)


def _vertical_label(panel: np.ndarray, text: str, x: int, cy: int) -> None:
    """Text turned 90 degrees (bottom to top) centred on (x, cy): the y axis's unit."""
    tw, th = cv2.getTextSize(text, FONT, 0.45, 1)[0]
    strip = np.zeros((th + 8, tw + 4, 3), np.uint8)
    strip[:] = PANEL
    cv2.putText(strip, text, (2, th + 2), FONT, 0.45, DIM, 1, cv2.LINE_AA)
    strip = np.rot90(strip)
    sh, sw = strip.shape[:2]
    y0 = max(0, cy - sh // 2)
    sh = min(sh, panel.shape[0] - y0)
    panel[y0:y0 + sh, x - sw // 2:x - sw // 2 + sw] = strip[:sh]
