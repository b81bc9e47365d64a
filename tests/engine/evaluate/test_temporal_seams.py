"""The quality report's flicker meter and seam measures respond to what they measure: flicker added
inside the face, a colour step and a hard edge at the mask border; an untouched shot reads as 1."""

import cv2
import numpy as np
import pytest

from engine.errors import EngineError
from engine.evaluate.seams import border_mask, seam_row, seam_summary
from engine.evaluate.temporal import FlickerMeter, ratio
from engine.faces.cuts import CutDetector
from engine.geometry.align import FACE_TYPES, template_points
from engine.geometry.hull import feather, hull_mask
from engine.media.decode import iter_frames

OBAMA = "styletalk__samples_source_video_video_Obama_clip1.mp4"
NOEM = "styletalk__samples_source_video_video_KristiNoem.mp4"


def _ellipse(shape, centre=(128, 120), axes=(60, 80)) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    cv2.ellipse(mask, centre, axes, 0, 0, 360, 255, -1)
    return mask


def _frames(path, count: int, start: int = 0) -> list[np.ndarray]:
    return [f for _, f in iter_frames(path, start, start + count)]


def _texture(seed: int = 0, size: int = 256, spread: float = 25.0) -> np.ndarray:
    """A smooth skin-like picture with some detail (not flat: a flat one has no gradient to compare)."""
    rng = np.random.default_rng(seed)
    noise = cv2.GaussianBlur(rng.normal(0, 1, (size, size, 3)).astype(np.float32), (0, 0), 6)
    base = np.array([110, 140, 190], np.float32) + spread * noise / noise.std()
    return np.clip(base, 0, 255).astype(np.uint8)


def _offset(image: np.ndarray, mask: np.ndarray, bgr) -> np.ndarray:
    """`image` with `bgr` added where mask (0..1 float or 0..255) is set, weighted by it."""
    weight = mask.astype(np.float32) / (255.0 if mask.dtype == np.uint8 else 1.0)
    out = image.astype(np.float32) + weight[..., None] * np.asarray(bgr, np.float32)
    return np.clip(out, 0, 255).astype(np.uint8)


# ---- flicker ----------------------------------------------------------------------------------

def _meter_run(destination, result, region, indices=None) -> tuple[FlickerMeter, list]:
    meter = FlickerMeter()
    indices = indices or list(range(len(destination)))
    rows = [meter.step(i, d, r, region) for i, d, r in zip(indices, destination, result)]
    return meter, rows


def test_identical_result_and_destination_give_ratio_one(shared_clip):
    frames = _frames(shared_clip(OBAMA), 12)
    region = _ellipse(frames[0].shape[:2]) > 0
    meter, rows = _meter_run(frames, [f.copy() for f in frames], region)
    assert rows[0] is None, "the first frame has no previous one"
    assert all(r is not None and r["result"] == r["destination"] for r in rows[1:])
    summary = meter.summary()
    assert summary["ratio"] == pytest.approx(1.0)
    assert summary["result"]["count"] == summary["destination"]["count"] == 11
    assert summary["destination"]["median"] > 0.1, "a talking head moves: the destination has flicker of its own"
    assert summary["unit"].startswith("mean |F_t - F_t-1|")


def test_flickering_brightness_in_the_face_raises_the_ratio(shared_clip):
    frames = _frames(shared_clip(OBAMA), 12)
    mask = _ellipse(frames[0].shape[:2])
    # a pasted face whose brightness pulses by +-6 levels from frame to frame
    result = [_offset(f, mask, (6, 6, 6) if i % 2 else (-6, -6, -6)) for i, f in enumerate(frames)]
    steady = [_offset(f, mask, (6, 6, 6)) for f in frames]  # the same paste, but steady
    flickering = _meter_run(frames, result, mask > 0)[0].summary()
    held = _meter_run(frames, steady, mask > 0)[0].summary()
    assert flickering["ratio"] > 2.0
    assert flickering["result"]["median"] > flickering["destination"]["median"] + 8
    assert held["ratio"] == pytest.approx(1.0, abs=0.1), "a constant offset adds no flicker"
    # outside the face region nothing changed, so a region elsewhere sees no added flicker
    corner = np.zeros(mask.shape, bool)
    corner[:40, :40] = True
    assert _meter_run(frames, result, corner)[0].summary()["ratio"] == pytest.approx(1.0)


def test_steps_are_skipped_at_gaps_and_cuts(shared_clip):
    a, b = _frames(shared_clip(OBAMA), 4), _frames(shared_clip(NOEM), 3)
    region = _ellipse(a[0].shape[:2]) > 0
    frames = a + b
    _, rows = _meter_run(frames, frames, region, indices=[0, 1, 2, 3, 4, 5, 6])
    assert [r is None for r in rows] == [True, False, False, False, True, False, False], "a cut at frame 4"
    _, rows = _meter_run(a, a, region, indices=[0, 1, 5, 6])
    assert [r is None for r in rows] == [True, False, True, False], "a gap in frame numbers"


def test_cut_detector_on_synthetic_frames():
    cuts = CutDetector()
    shot = _texture(0)
    assert not cuts.step(shot)
    assert not cuts.step(np.roll(shot, 2, axis=1)), "a small camera move is no cut"
    assert not cuts.step(cv2.add(np.roll(shot, 2, axis=1), 40)), "nor a flash"
    other = np.zeros_like(shot)  # another shot: a white wall beside a dark blue coat
    other[:, :128] = 255
    other[:, 128:] = (120, 0, 0)
    assert cuts.step(other)


def test_flicker_edge_cases():
    shot = _texture(1, 64)
    meter = FlickerMeter()
    empty = np.zeros((64, 64), bool)
    assert meter.step(0, shot, shot, empty) is None
    assert meter.step(1, shot, shot, empty) is None, "no face in either frame: nothing to measure"
    full = np.ones((64, 64), bool)
    assert meter.step(2, shot, shot, full) == {"result": 0.0, "destination": 0.0}
    assert meter.summary()["ratio"] == 1.0, "both perfectly still: the swap adds nothing"
    with pytest.raises(EngineError) as err:
        meter.step(3, shot, shot[:32], full)
    assert err.value.code == "bad_request" and "64x64" in err.value.message
    with pytest.raises(EngineError):
        meter.step(3, shot, shot, full[:32])
    assert FlickerMeter().summary()["ratio"] is None and FlickerMeter().summary()["result"]["count"] == 0
    assert ratio(2.0, 0.0) is None and ratio(3.0, 2.0) == 1.5 and ratio(None, 1.0) is None


# ---- seams ------------------------------------------------------------------------------------

def test_border_mask_bands():
    mask = _ellipse((256, 256), (128, 128), (60, 60))
    inner, outer, contour = border_mask(mask, 5)
    inside = mask > 0
    assert inner.any() and outer.any() and contour.any()
    assert not (inner & ~inside).any() and not (outer & inside).any()
    # a ring of ~5 px around a circle of radius 60: about 2*pi*60*5 pixels each
    assert 0.8 < inner.sum() / (2 * np.pi * 60 * 5) < 1.2
    assert 0.8 < outer.sum() / (2 * np.pi * 62.5 * 5) < 1.2
    assert (contour & inside).any() and (contour & ~inside).any(), "the contour straddles the border"
    assert contour.sum() < inner.sum()
    # the frame's edge is no border: a mask running off the left edge has no band along it
    off = np.zeros((100, 100), np.uint8)
    off[20:80, :50] = 255
    inner, outer, contour = border_mask(off, 4)
    assert not inner[30:70, :5].any() and not contour[30:70, 0].any()
    assert inner[30:70, 46:50].all() and outer[30:70, 50:54].all()
    with pytest.raises(EngineError):
        border_mask(off, 0)


def test_untouched_frame_reads_as_its_own_reference(shared_clip):
    frame = _frames(shared_clip(OBAMA), 1, start=30)[0]
    mask = _ellipse(frame.shape[:2])
    row = seam_row(frame, frame.copy(), mask, face_size=160)
    assert row["colour"] == pytest.approx(row["colour_destination"])
    assert row["gradient_ratio"] == pytest.approx(1.0)
    assert row["sectors"] == 16 and row["width"] == round(0.04 * 160)
    assert row["colour_destination"] > 0, "a real frame has some step at any border"


def test_pasted_patch_with_a_colour_offset_shows_a_seam(shared_clip):
    frame = _frames(shared_clip(OBAMA), 1, start=30)[0]
    mask = _ellipse(frame.shape[:2])
    pasted = _offset(frame, mask, (-12, 8, 20))  # warmer and hard-edged
    row = seam_row(frame, pasted, mask, face_size=160)
    assert row["colour"] > row["colour_destination"] + 5
    assert row["gradient_ratio"] > 1.3
    # the same offset faded in over a wide feather keeps the colour change but draws no hard edge
    soft = cv2.GaussianBlur(mask.astype(np.float32) / 255, (0, 0), 12)
    blended = seam_row(frame, _offset(frame, soft, (-12, 8, 20)), mask, face_size=160)
    assert blended["gradient_ratio"] < row["gradient_ratio"] - 0.3
    assert blended["colour"] < row["colour"]


def test_another_face_pasted_through_a_feathered_hull(shared_clip):
    """A merge-like paste: another person's face blended in through the feathered face hull,
    measured at the matte the merge would have used (its half-way line)."""
    destination = _frames(shared_clip(OBAMA), 1, start=30)[0]
    other = _frames(shared_clip(NOEM), 1, start=30)[0]
    landmarks = template_points(destination.shape[0], FACE_TYPES["full"])
    matte = feather(hull_mask(landmarks, destination.shape[:2]), 4, 4)
    result = (destination * (1 - matte[..., None]) + other * matte[..., None]).astype(np.uint8)
    face_size = float(np.ptp(landmarks[:, 0]))
    row = seam_row(destination, result, (matte * 255).astype(np.uint8), face_size)
    assert row["colour"] > row["colour_destination"] + 5
    assert row["gradient_ratio"] > 1.5
    untouched = seam_row(destination, destination, matte, face_size)  # the float matte as it is
    assert untouched["gradient_ratio"] == 1.0 and untouched["colour"] == untouched["colour_destination"]


def test_sectors_keep_opposite_mismatches_from_cancelling(monkeypatch):
    frame = _texture(2, spread=6.0)
    mask = _ellipse(frame.shape[:2], (128, 128), (70, 90))
    left = np.zeros(mask.shape, np.uint8)
    left[:, :128] = mask[:, :128]
    right = mask - left
    # too bright on one side, too dark on the other: one mean over the whole ring would cancel out
    result = _offset(_offset(frame, left, (20, 20, 20)), right, (-20, -20, -20))
    row = seam_row(frame, result, mask, face_size=180)
    untouched = seam_row(frame, frame, mask, face_size=180)
    assert row["colour"] > untouched["colour"] + 3
    assert row["gradient_ratio"] > 1.5
    monkeypatch.setattr("engine.evaluate.seams.SECTORS", 1)  # the whole ring as one sector
    assert seam_row(frame, result, mask, face_size=180)["colour"] < untouched["colour"] + 1


def test_seam_row_inputs_and_empty_masks():
    frame = _texture(3, 64)
    empty = np.zeros((64, 64), np.uint8)
    assert seam_row(frame, frame, empty, 40) is None
    assert seam_row(frame, frame, np.full((64, 64), 255, np.uint8), 40) is None, "no outside to compare with"
    mask = _ellipse((64, 64), (32, 32), (15, 20))
    as_float = seam_row(frame, frame, mask.astype(np.float32) / 255, 40)  # a hull_mask is 0..1 float
    assert as_float == seam_row(frame, frame, mask, 40)
    for bad in ((frame, frame[:32], mask, 40), (frame, frame, mask[:32], 40), (frame, frame, mask, 0.0),
                (frame, frame, mask, float("nan"))):
        with pytest.raises(EngineError) as err:
            seam_row(*bad)
        assert err.value.code == "bad_request"


def test_seam_summary_skips_frames_without_a_row():
    rows = [{"colour": 4.0, "colour_destination": 2.0, "gradient_ratio": 1.5},
            None, {"colour": 6.0, "colour_destination": 2.0, "gradient_ratio": None}]
    summary = seam_summary(rows)
    assert summary["colour"]["median"] == 5.0 and summary["colour"]["count"] == 2
    assert summary["colour_destination"]["mean"] == 2.0
    assert summary["gradient_ratio"]["count"] == 1 and summary["gradient_ratio"]["median"] == 1.5
    assert seam_summary([])["colour"]["median"] is None
