"""The summary sheet: a synthetic report and random crops drawn into a PNG an editor can read."""

import math

import cv2
import numpy as np
import pytest

from engine.errors import EngineError
from engine.evaluate import canvas, plots, sheet
from engine.evaluate.types import HEADLINE_KEYS, SCHEMA, aggregate

FRAMES = 120
GAP = range(50, 70)  # no face in these frames: every plot must leave a hole there


def _report(per_frame: bool = True, identity: bool = True) -> dict:
    rng = np.random.default_rng(0)
    rows = []
    for f in range(FRAMES):
        lost = f in GAP
        rows.append({
            "frame": 10 + f,
            "identity": None if lost or not identity else
            {"to_source": 0.45 + 0.05 * math.sin(f / 7), "to_destination": 0.75, "closer_to_source": True},
            "expression": None if lost else {"landmarks": 0.04, "inner": 0.03, "yaw": 1.0 + rng.random(),
                                             "pitch": 2.0, "roll": 0.5},
            "flicker": None if lost or f == 0 else {"result": 2.5 + rng.random(), "destination": 2.0},
            "seams": None if lost else {"colour": 4.0 + rng.random(), "colour_destination": 2.5,
                                        "gradient_ratio": 1.1},
        })
    headline = {k: 0.5 for k in HEADLINE_KEYS}
    headline["ssim_destination_held_back"] = None  # "n/a", and the sheet must not trip on it
    metrics = {"identity": {"available": True, "to_source": aggregate([0.45]), "to_destination": aggregate([0.75]),
                            "closer_to_source": 1.0, "destination_to_source": aggregate([0.8]), "threshold": 0.6}
               if identity else {"available": False, "reason": "the identity extra is not installed"},
               "reconstruction": {"available": False, "reason": "no model"}}
    return {"schema": SCHEMA, "created": "2026-11-22T13:40:00+00:00", "seconds": 3.5,
            "inputs": {"source": {"kind": "video", "path": "/clips/source.mp4", "faces": 40},
                       "destination": "/clips/" + "very_long_destination_name_" * 6 + ".mp4",
                       "result": {"kind": "merge", "path": "/ws/merges/shot"}, "model": None},
            "frames": {"first": 10, "count": FRAMES, "destination_faces": FRAMES, "result_faces": FRAMES - len(GAP)},
            "headline": headline, "metrics": metrics, "per_frame": rows if per_frame else [],
            "samples": [20, 90], "sheet": "summary.png"}


def _samples() -> list[dict]:
    rng = np.random.default_rng(1)
    crop = lambda size: rng.integers(0, 255, (size, size, 3), np.uint8)  # noqa: E731
    return [{"frame": 20, "source": crop(64), "destination": crop(256), "result": crop(300)},
            {"frame": 90, "source": None, "destination": crop(128)[:, :, 0], "result": None}]


def _plot_origin(image_height: int, index: int, samples: int) -> tuple[int, int]:
    """Top-left of plot `index` on the sheet (mirrors render_sheet's layout)."""
    y = 96 + 2 * (104 + 12) + 12 + (66 + samples * (sheet.CROP + 16) if samples else 0) + 12
    w = (canvas.WIDTH - 3 * canvas.MARGIN) // 2
    return canvas.MARGIN + (index % 2) * (w + canvas.MARGIN), y + (index // 2) * (plots.PLOT_H + canvas.MARGIN)


def _near(image: np.ndarray, colour, tol: int = 40) -> np.ndarray:
    return np.abs(image.astype(np.int16) - np.array(colour, np.int16)).max(axis=-1) <= tol


def test_sheet_writes_a_readable_png(tmp_path):
    path = sheet.summary_sheet(_report(), _samples(), tmp_path / "out" / "summary.png")
    image = cv2.imread(str(path))
    assert image is not None and image.shape[1] == canvas.WIDTH and image.shape[0] > 1500
    assert [p.name for p in path.parent.iterdir()] == ["summary.png"]  # written atomically: no temp left
    # the sample rows hold the crops, resized to one size (the first destination crop was 256 px of noise)
    y0 = 96 + 2 * (104 + 12) + 12 + 66
    x_dst = canvas.MARGIN + sheet.CROP + 8
    assert image[y0:y0 + sheet.CROP, x_dst:x_dst + sheet.CROP].std() > 50
    # the second sample has no source: a placeholder panel, not noise
    y1 = y0 + sheet.CROP + 16
    assert image[y1 + 10:y1 + 100, canvas.MARGIN + 10:canvas.MARGIN + 100].std() < 5


def test_plots_draw_their_series_and_leave_gaps(tmp_path):
    full = sheet.render_sheet(_report(), _samples())
    empty = sheet.render_sheet(_report(per_frame=False), _samples())
    assert full.shape == empty.shape
    w = (canvas.WIDTH - 3 * canvas.MARGIN) // 2
    for i, plot in enumerate(plots.PLOTS):
        x0, y0 = _plot_origin(full.shape[0], i, 2)
        a = full[y0:y0 + plots.PLOT_H, x0:x0 + w]
        b = empty[y0:y0 + plots.PLOT_H, x0:x0 + w]
        assert (a != b).any(axis=-1).sum() > 500, plot.title  # the lines are there
        area = a[68:plots.PLOT_H - 44, 74:w - 18]  # the plot area inside the axes
        colour = plot.series[0].colour
        assert _near(area, colour).sum() > 200, plot.title
        # frames 10..129 map onto the area's width; the gap (frames 60..79) holds none of the series' colour
        cols = area.shape[1]
        column = lambda frame: round((frame - 10) / (FRAMES - 1) * cols)  # noqa: E731
        hole = area[:, column(10 + GAP.start) + 4:column(10 + GAP.stop - 1) - 4]
        assert not _near(hole, colour, 25).any(), f"{plot.title}: a line bridges the gap"
        before = area[:, column(30) - 3:column(30) + 3]
        assert _near(before, colour, 25).any(), plot.title


def test_missing_identity_says_why_instead_of_plotting():
    image = sheet.render_sheet(_report(identity=False), [])
    x0, y0 = _plot_origin(image.shape[0], 0, 0)
    w = (canvas.WIDTH - 3 * canvas.MARGIN) // 2
    area = image[y0 + 68:y0 + plots.PLOT_H - 44, x0 + 74:x0 + w - 18]
    assert not _near(area, canvas.SOURCE, 25).any()  # no identity line
    assert _near(area, canvas.DIM, 10).sum() > 100  # the reason, written across the plot
    assert plots._missing_reason(_report(identity=False), plots.PLOTS[0]).endswith("not installed")


def test_an_empty_report_still_draws():
    image = sheet.render_sheet({}, [])
    assert image.shape[1] == canvas.WIDTH and image.dtype == np.uint8


def test_crops_of_any_shape_become_one_square_size():
    rng = np.random.default_rng(2)
    for crop in (rng.integers(0, 255, (50, 80, 3), np.uint8), rng.integers(0, 255, (400, 400, 4), np.uint8),
                 rng.integers(0, 255, (90, 90), np.uint8), rng.random((64, 64, 3)) * 255):
        out = sheet._fit(crop, 3)
        assert out.shape == (sheet.CROP, sheet.CROP, 3) and out.dtype == np.uint8
    assert sheet._fit(None, 3) is None
    with pytest.raises(EngineError) as err:
        sheet._fit(np.zeros((4,)), 7)
    assert err.value.code == "bad_request" and "frame 7" in err.value.message


def test_figures_are_formatted_with_units_and_ratings():
    assert sheet._number(None) == "n/a" and sheet._number(float("nan"), "deg") == "n/a"
    assert sheet._number(0.973, "%") == "97 %"
    assert sheet._number(1.256, "x") == "1.26x"
    assert sheet._number(2.04, "deg") == "2.0 deg"
    assert sheet._number(4.56, "dE") == "4.6 dE"
    assert sheet._number(0.0412, "IOD") == "0.041 IOD"
    assert sheet._rating("closer_to_source", 0.97, {}) == canvas.GREEN
    assert sheet._rating("identity_to_source", 0.75, {}) == canvas.RED
    assert sheet._rating("seam_gradient_ratio", 0.7, {}) == canvas.AMBER  # too smooth counts too
    assert sheet._rating("seam_colour", 4.0, {"seam_colour_destination": 3.0}) == canvas.GREEN
    assert sheet._rating("seam_colour", 4.0, {}) is None  # nothing to compare with
    assert sheet._rating("seam_colour_destination", 3.0, {}) is None
    assert sheet._rating("flicker_ratio", None, {}) is None


def test_ticks_are_round_and_cover_the_range():
    assert plots._ticks(0, 0.86) == [0, 0.2, 0.4, 0.6, 0.8]
    assert plots._ticks(0, 6.5) == [0, 2, 4, 6]
    ticks = plots._ticks(10, 129, 8)
    assert ticks[0] >= 10 and ticks[-1] <= 129 and all(t == int(t) for t in ticks)
    assert plots._ticks(3, 3) == [3]


def test_series_split_at_missing_values_and_skipped_frames():
    rows = [{"frame": f, "flicker": {"result": 1.0}} for f in (0, 1, 2, 5, 6)]  # frames 3, 4 not analysed
    runs = plots._series(rows, plots.Series("flicker", "result", "x", (0, 0, 0)))
    assert [[int(f) for f, _ in run] for run in runs] == [[0, 1, 2], [5, 6]]
    rows = [{"frame": 0, "seams": {"colour": 1.0}}, {"frame": 1, "seams": None}, {"frame": 2, "seams": {"colour": 2.0}}]
    runs = plots._series(rows, plots.Series("seams", "colour", "x", (0, 0, 0)))
    assert [[int(f) for f, _ in run] for run in runs] == [[0], [2]]


def test_every_headline_figure_has_a_card():
    assert list(sheet.CARDS) != [] and set(sheet.CARDS) == set(HEADLINE_KEYS)


def test_pose_cards_tell_a_steady_offset():
    report = _report()
    assert sheet._card_note("pitch_difference", report) == "90th pct: n/a"  # an older report: no offset
    report["metrics"]["expression"] = {"pitch": aggregate([5.0, 5.5, 7.0]), "offset": {"pitch": 5.5}}
    assert sheet._card_note("pitch_difference", report) == "offset +5.5 deg, p90 7.0"


def test_faces_found_counts_frames_with_a_face_in_both():
    report = _report()
    report["frames"] = {"first": 0, "count": 6, "destination_faces": 5, "result_faces": 6}  # one only swapped
    report["headline"]["faces_found"] = 4 / 5
    assert sheet._card_note("faces_found", report) == "4 of 5 frames"
    report["headline"]["faces_found"] = None
    assert sheet._card_note("faces_found", report) == "no destination face"
