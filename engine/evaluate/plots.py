"""Evaluate stage: the summary sheet's plots of the per-frame figures over time.

Six small plots, two a row, each a few series of report["per_frame"] against the frame number, with
round ticks, a legend under the title and dashed marks where the sample rows above were taken.
Frames with no value leave a gap in a line rather than a bridge between their neighbours, so a lost
face never looks like a smooth stretch; a plot with no value at all says why across its middle.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from .canvas import (AXIS, BOLD, DESTINATION, DIM, EXTRA, FONT, GRID, MARGIN, PANEL, RESULT, SOURCE, TEXT, WIDTH,
                     dashed_line, put_text, text_width)


@dataclass
class Series:
    """One line of a plot: the per_frame figure it draws and its legend."""

    group: str  # the per_frame row's dict ("identity", "expression", ...)
    key: str
    label: str
    colour: tuple[int, int, int]


@dataclass
class Plot:
    """One plot of the sheet: its title, y unit, lines and optional reference level."""

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


def draw_plots(image: np.ndarray, report: dict, sample_frames: list, y: int) -> int:
    """The plots, two a row, into `image` from height `y`; returns the height below them."""
    rows = sorted((r for r in report.get("per_frame") or [] if isinstance(r, dict) and r.get("frame") is not None),
                  key=lambda r: r["frame"])
    w = (WIDTH - 3 * MARGIN) // 2
    for i, plot in enumerate(PLOTS):
        x0, y0 = MARGIN + (i % 2) * (w + MARGIN), y + (i // 2) * (PLOT_H + MARGIN)
        panel = image[y0:y0 + PLOT_H, x0:x0 + w]
        _draw_plot(panel, plot, rows, sample_frames, _missing_reason(report, plot))
    return y + math.ceil(len(PLOTS) / 2) * (PLOT_H + MARGIN)


def _missing_reason(report: dict, plot: Plot) -> str:
    """What an empty plot says: the metric's own reason when it was not measured at all."""
    metric = ((report.get("metrics") or {}).get(plot.series[0].group) or {})
    if metric.get("available") is False:
        return f"not measured: {metric.get('reason') or 'unavailable'}"
    return "no values (no face found in these frames)"


def _draw_plot(panel: np.ndarray, plot: Plot, rows: list[dict], sample_frames: list, missing: str) -> None:
    """One plot drawn into `panel` (a view of the sheet): title, legend, axes, ticks, series."""
    h, w = panel.shape[:2]
    panel[:] = PANEL
    left, right, top, bottom = 74, 18, 68, 44
    put_text(panel, plot.title, (14, 26), 0.62, TEXT, 1, max_width=w - 28, font=BOLD)
    lx = 14  # legend under the title: a swatch and a name per series
    for s in plot.series:
        cv2.line(panel, (lx, 42), (lx + 22, 42), s.colour, 3, cv2.LINE_AA)
        lx += 32 + put_text(panel, s.label, (lx + 32, 47), 0.5, TEXT) + 20
    if plot.reference:
        dashed_line(panel, (lx, 42), (lx + 22, 42), DIM)
        put_text(panel, plot.reference[1], (lx + 32, 47), 0.5, DIM)
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
        put_text(panel, label, (ax0 - 8 - text_width(label, 0.45), ty + 5), 0.45, DIM)
    for t in _ticks(x_lo, x_hi, 8):
        if t != int(t):
            continue
        tx = round(px(t, 0)[0])
        cv2.line(panel, (tx, ay1), (tx, ay1 + 5), AXIS, 1)
        label = f"{int(t)}"
        put_text(panel, label, (tx - text_width(label, 0.45) // 2, ay1 + 20), 0.45, DIM)
    cv2.line(panel, (ax0, ay0), (ax0, ay1), AXIS, 1)
    cv2.line(panel, (ax0, ay1), (ax1, ay1), AXIS, 1)
    put_text(panel, "frame", (ax1 - text_width("frame", 0.45), h - 8), 0.45, DIM)
    _vertical_label(panel, plot.unit, 14, (ay0 + ay1) // 2)
    for n, frame in enumerate(sample_frames, 1):  # where the sample rows above were taken
        if frame is not None and x_lo <= frame <= x_hi:
            fx = round(px(frame, 0)[0])
            dashed_line(panel, (fx, ay0), (fx, ay1), AXIS, 3)
            tag = f"#{n}"
            tx = fx + 3 if fx + 3 + text_width(tag, 0.4) < w - 2 else fx - 3 - text_width(tag, 0.4)
            put_text(panel, tag, (tx, ay0 + 12), 0.4, DIM)
    if plot.reference:
        ry = round(px(x_lo, plot.reference[0])[1])
        dashed_line(panel, (ax0, ry), (ax1, ry), DIM)
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
        mx, my = max(ax0 + 8, (ax0 + ax1 - text_width(missing, 0.55)) // 2), (ay0 + ay1) // 2 - 20
        cv2.rectangle(panel, (mx - 8, my - 20), (min(ax1 - 4, mx + text_width(missing, 0.55) + 8), my + 10), PANEL, -1)
        put_text(panel, missing, (mx, my), 0.55, DIM, max_width=ax1 - ax0 - 16)


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
