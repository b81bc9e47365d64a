"""Tests for engine.merge.compose: colour matching, blend modes, patches laid over frames and layers."""

import cv2
import numpy as np
import pytest

from engine.colour import transfer_colour
from engine.errors import EngineError
from engine.geometry.align import FACE_TYPES, align_transform, template_points
from engine.geometry.hull import hull_mask
from engine.merge.compose import CROP, FacePatch, apply_patches, colour_face, compose_face, layer_canvas
from engine.merge.masks import shape_mask
from engine.merge.settings import MergeSettings

H, W = 360, 480
TEMPLATE = template_points(CROP, FACE_TYPES["full"])


def _frame(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:H, 0:W]
    base = np.stack([60 + x / 8, 90 + y / 6, 120 + 0 * x], -1) + rng.normal(0, 4, (H, W, 3))
    return np.clip(base, 0, 255).astype(np.uint8)


def _placement(scale: float = 0.8, offset=(120, 40), angle: float = 12.0) -> tuple[np.ndarray, np.ndarray]:
    """Frame landmarks of a face (the template, turned and scaled) and the transform frame -> crop."""
    a = np.deg2rad(angle)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    pts = (TEMPLATE - CROP / 2) @ rot.T * scale + CROP / 2 * scale + np.asarray(offset, float)
    return pts, align_transform(pts, CROP)


def _face(seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = np.full((CROP, CROP, 3), (90, 140, 210), np.float64) + rng.normal(0, 8, (CROP, CROP, 3))
    img[100:110, 60:200] = (40, 60, 90)  # some structure (brows)
    return np.clip(cv2.GaussianBlur(img, (5, 5), 0), 0, 255).astype(np.uint8)


FRAME = _frame()
PTS, M = _placement()
CROP_IMG = cv2.warpAffine(FRAME, M, (CROP, CROP), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE)
FACE = _face()
MASK = shape_mask(hull_mask(TEMPLATE, (CROP, CROP), 0.1), MergeSettings())


def _compose(mode: str = "overlay", frame=FRAME, m=M, face=FACE, mask=MASK, **kw) -> FacePatch:
    crop = cv2.warpAffine(frame, m, (CROP, CROP), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE)
    raw = kw.pop("raw", None)
    return compose_face(frame, crop, face, mask, m, MergeSettings(mode=mode, **kw), raw=raw)


def _uncovered(patches: list[FacePatch], shape=(H, W)) -> np.ndarray:
    """Frame pixels no patch covers at all."""
    out = np.ones(shape, bool)
    for p in patches:
        if not p.empty:
            x0, y0, x1, y1 = p.box
            out[y0:y1, x0:x1] &= p.alpha == 0
    return out


# colour_face

def test_colour_strength_mixes_the_prediction_and_the_transfer():
    full = colour_face(FACE, CROP_IMG, MASK, MergeSettings(colour="rct", colour_strength=1.0))
    whole = transfer_colour(FACE, CROP_IMG, "rct", MASK, MASK)
    seen = MASK > 0
    # only the mask's box is recoloured, with the same statistics (read from another subsample: +-2)
    assert np.abs(full[seen].astype(int) - whole[seen]).max() <= 2
    assert np.array_equal(full[~seen.any(1)], FACE[~seen.any(1)])
    square = colour_face(FACE, CROP_IMG, MASK, MergeSettings(colour="rct", mode="raw-patch"))
    assert np.array_equal(square, whole)  # a raw patch shows the whole square: all of it is recoloured
    assert colour_face(FACE, CROP_IMG, MASK, MergeSettings(colour="rct", colour_strength=0.0)) is FACE
    assert colour_face(FACE, CROP_IMG, MASK, MergeSettings(colour="none")) is FACE
    half = colour_face(FACE, CROP_IMG, MASK, MergeSettings(colour="rct", colour_strength=0.5)).astype(float)
    assert np.abs(half - (FACE.astype(float) + full) / 2).max() <= 1


@pytest.mark.parametrize("method", ["rct", "lct", "mkl", "idt", "sot", "hist"])
def test_every_method_moves_the_face_toward_the_destination_inside_the_mask(method):
    out = colour_face(FACE, CROP_IMG, MASK, MergeSettings(colour=method))
    inside = MASK > 0.5
    before = np.abs(FACE[inside].mean(0) - CROP_IMG[inside].mean(0)).mean()
    after = np.abs(out[inside].astype(float).mean(0) - CROP_IMG[inside].mean(0)).mean()
    assert after < 0.2 * before
    unmasked = colour_face(FACE, CROP_IMG, MASK, MergeSettings(colour=method, colour_masked=False))
    assert not np.array_equal(unmasked, out)  # the whole crop's statistics differ from the face's


# compose_face and apply_patches

def test_overlay_changes_only_covered_pixels_and_never_touches_the_frame():
    frame = FRAME.copy()
    patch = _compose(frame=frame)
    assert np.array_equal(frame, FRAME)  # compose_face only reads the frame
    x0, y0, x1, y1 = patch.box
    assert 0 <= x0 < x1 <= W and 0 <= y0 < y1 <= H
    assert patch.rgb.shape == (y1 - y0, x1 - x0, 3) and patch.alpha.shape == (y1 - y0, x1 - x0)
    assert patch.alpha.dtype == np.float32 and patch.alpha.min() >= 0 and patch.alpha.max() <= 1
    out = apply_patches(frame, [patch])
    keep = _uncovered([patch])
    assert np.array_equal(out[keep], FRAME[keep])
    nose = np.round(PTS[30]).astype(int)
    assert np.abs(out[nose[1], nose[0]].astype(int) - FACE[int(TEMPLATE[30][1]), int(TEMPLATE[30][0])]).max() < 20
    # the box is tight: every edge row and column has some coverage
    assert patch.alpha[0].any() and patch.alpha[-1].any() and patch.alpha[:, 0].any() and patch.alpha[:, -1].any()


def test_full_coverage_shows_the_face_exactly_and_order_matters():
    red = np.full((CROP, CROP, 3), (0, 0, 255), np.uint8)
    blue = np.full((CROP, CROP, 3), (255, 0, 0), np.uint8)
    first, second = _compose("raw-patch", face=red), _compose("raw-patch", face=blue)
    out = apply_patches(FRAME, [first, second])
    nose = np.round(PTS[30]).astype(int)
    assert out[nose[1], nose[0]].tolist() == [255, 0, 0]
    assert apply_patches(FRAME, [second, first])[nose[1], nose[0]].tolist() == [0, 0, 255]


def test_raw_patch_covers_the_whole_square_whatever_the_mask():
    patch = _compose("raw-patch", mask=np.zeros((CROP, CROP), np.float32))
    # every crop pixel's centre, mapped to the frame, is fully covered (inside the square's border)
    inner = np.mgrid[2:CROP - 2:16, 2:CROP - 2:16].reshape(2, -1).T[:, ::-1].astype(float)
    back = cv2.invertAffineTransform(M)
    pts = inner @ back[:, :2].T + back[:, 2]
    x0, y0 = patch.box[:2]
    cols, rows = np.round(pts[:, 0]).astype(int) - x0, np.round(pts[:, 1]).astype(int) - y0
    assert (patch.alpha[rows, cols] == 1.0).all()
    # and the footprint is the square's: about CROP^2 / scale^2 frame pixels
    area = patch.alpha.sum()
    assert abs(area - (CROP * 0.8) ** 2) < 0.02 * (CROP * 0.8) ** 2


def test_raw_predict_uses_the_raw_prediction_with_full_coverage():
    raw = np.full((CROP, CROP, 3), 7, np.uint8)
    patch = _compose("raw-predict", raw=raw)
    assert (patch.rgb[patch.alpha == 1] == 7).all()
    with pytest.raises(EngineError) as err:
        _compose("raw-predict")
    assert err.value.code == "bad_request"


def _hist(threshold: int) -> FacePatch:
    """A hist-match merge: colour_face does the matching (before temporal smoothing), compose_face the overlay."""
    s = MergeSettings(mode="hist-match", colour="none", hist_threshold=threshold)
    return compose_face(FRAME, CROP_IMG, colour_face(FACE, CROP_IMG, MASK, s), MASK, M, s)


def test_hist_match_mode_matches_the_face_to_the_destination():
    over, hist = _compose("overlay"), _hist(255)
    # compose_face itself lays the face as given: matching twice would undo temporal smoothing
    plain = compose_face(FRAME, CROP_IMG, FACE, MASK, M, MergeSettings(mode="hist-match", colour="none"))
    assert np.array_equal(plain.rgb, _compose("overlay").rgb)
    assert over.box == hist.box
    covered = hist.alpha > 0.9
    target = FRAME[hist.box[1]:hist.box[3], hist.box[0]:hist.box[2]][covered].astype(float).mean(0)
    assert np.abs(hist.rgb[covered].mean(0) - target).mean() < 0.3 * np.abs(over.rgb[covered].mean(0) - target).mean()
    # a lower threshold keeps away from the destination's brightest values: a darker face
    low = _hist(180)
    assert low.rgb[covered].mean() < hist.rgb[covered].mean()


@pytest.mark.parametrize("mode", ["seamless", "seamless-hist"])
def test_seamless_changes_the_face_region_and_keeps_the_rest(mode):
    over, seam = _compose("overlay"), _compose(mode)
    # the same coverage (the region is padded for the solver, so the warp's 1/32 px grid may round apart)
    assert seam.box == over.box and np.abs(seam.alpha - over.alpha).max() < 0.05
    covered = seam.alpha > 0.5
    assert np.abs(seam.rgb[covered].astype(float) - over.rgb[covered]).mean() > 10
    out = apply_patches(FRAME, [seam])
    keep = _uncovered([seam])
    assert np.array_equal(out[keep], FRAME[keep])
    # Poisson cloning takes the frame's colours at the mask's edge: near it the face is close to the frame
    x0, y0, x1, y1 = seam.box
    region = FRAME[y0:y1, x0:x1].astype(float)
    rim = (seam.alpha > 0.05) & (seam.alpha < 0.3)
    assert np.abs(seam.rgb[rim] - region[rim]).mean() < 0.5 * np.abs(over.rgb[rim] - region[rim]).mean()
    # the gradients inside are the face's: its detail (the brows' edge, the noise) survives
    inner = (seam.alpha[1:] > 0.9) & (seam.alpha[:-1] > 0.9)
    grad = lambda img: np.abs(np.diff(img.astype(float), axis=0))[inner].mean()
    assert grad(seam.rgb) > 0.7 * grad(over.rgb)


def test_seamless_at_the_frame_edge_and_with_a_tiny_mask():
    pts, m = _placement(scale=0.8, offset=(-60, -50))  # the face's top-left is off the frame
    patch = _compose("seamless", m=m)
    assert patch.box[0] == 0 and patch.box[1] == 0 and not patch.empty
    tiny = np.zeros((CROP, CROP), np.float32)
    tiny[128:131, 128:131] = 1
    small = _compose("seamless", mask=tiny)
    assert np.array_equal(small.rgb, _compose("overlay", mask=tiny).rgb)  # too small to solve: overlaid


def test_a_face_off_the_frame_gives_an_empty_patch():
    pts, m = _placement(offset=(2000, 2000))
    patch = _compose(m=m)
    assert patch.empty and patch.rgb.shape == (0, 0, 3)
    assert np.array_equal(apply_patches(FRAME, [patch]), FRAME)
    box, roi = layer_canvas([patch], H, W)
    assert box == (0, 0, 0, 0) and roi.shape == (0, 0, 4)


def test_face_scale_grows_the_pasted_face_about_its_centre():
    _, m = _placement(scale=0.6, offset=(160, 100))  # room around it for the larger face
    base, big = _compose("raw-patch", m=m), _compose("raw-patch", m=m, face_scale=0.2)
    assert big.alpha.sum() == pytest.approx(base.alpha.sum() * 1.2 ** 2, rel=0.03)
    centre = lambda p: np.array([p.box[0] + p.box[2], p.box[1] + p.box[3]]) / 2
    assert np.abs(centre(big) - centre(base)).max() <= 1.0


def test_bad_inputs_are_refused():
    with pytest.raises(EngineError):
        _compose(face=FACE[:100])
    with pytest.raises(EngineError):
        _compose(mask=MASK[:100])


# layer_canvas

def test_layer_canvas_of_one_face_is_its_patch_as_rgba():
    patch = _compose()
    box, roi = layer_canvas([patch], H, W)
    assert box == patch.box and roi.shape == patch.rgb.shape[:2] + (4,) and roi.dtype == np.uint8
    assert np.abs(roi[..., 3].astype(int) - np.round(patch.alpha * 255)).max() <= 1  # ties may round apart
    on = roi[..., 3] > 0
    assert np.array_equal(roi[..., :3][on], patch.rgb[on])
    assert not roi[..., :3][~on].any()


def test_layer_canvas_of_two_faces_spans_both_and_lays_the_second_over_the_first():
    red = np.full((CROP, CROP, 3), (0, 0, 255), np.uint8)
    blue = np.full((CROP, CROP, 3), (255, 0, 0), np.uint8)
    _, m2 = _placement(offset=(220, 90))
    a, b = _compose("raw-patch", face=red), _compose("raw-patch", face=blue, m=m2)
    box, roi = layer_canvas([a, b], H, W)
    assert box == (min(a.box[0], b.box[0]), min(a.box[1], b.box[1]), max(a.box[2], b.box[2]), max(a.box[3], b.box[3]))
    # where both cover fully the second shows; where only the first does, the first
    both = np.zeros(roi.shape[:2], bool)
    only_a = np.zeros(roi.shape[:2], bool)
    sa = (slice(a.box[1] - box[1], a.box[3] - box[1]), slice(a.box[0] - box[0], a.box[2] - box[0]))
    sb = (slice(b.box[1] - box[1], b.box[3] - box[1]), slice(b.box[0] - box[0], b.box[2] - box[0]))
    full_a, full_b = np.zeros_like(both), np.zeros_like(both)
    full_a[sa], full_b[sb] = a.alpha == 1, b.alpha == 1
    both, only_a = full_a & full_b, full_a.copy()
    only_a[sb] &= b.alpha == 0
    assert both.any() and only_a.any()
    assert (roi[both] == (255, 0, 0, 255)).all() and (roi[only_a] == (0, 0, 255, 255)).all()
    # the layer over the frame equals the patches over the frame (up to 8-bit alpha)
    layered = FRAME.copy()
    x0, y0, x1, y1 = box
    alpha = roi[..., 3:].astype(float) / 255
    layered[y0:y1, x0:x1] = np.round(FRAME[y0:y1, x0:x1] * (1 - alpha) + roi[..., :3] * alpha)
    assert np.abs(layered.astype(int) - apply_patches(FRAME, [a, b])).max() <= 2


@pytest.mark.parametrize("scale", [0.45, 1.0, 2.0])
def test_the_face_lands_where_the_transform_puts_it_at_any_scale(scale):
    # a smooth blob at a known crop position; enlarging and shrinking resize first, then warp
    y, x = np.mgrid[0:CROP, 0:CROP]
    blob = np.exp(-((x - 100.0) ** 2 + (y - 60.0) ** 2) / (2 * 6.0 ** 2)) * 250
    face = np.repeat(blob[..., None], 3, 2).astype(np.uint8)
    frame = np.zeros((700, 800, 3), np.uint8)
    _, m = _placement(scale=scale, offset=(30, 20), angle=25.0)
    patch = _compose("raw-patch", frame=frame, m=m, face=face)
    weights = patch.rgb[..., 0].astype(float) * (patch.alpha == 1)
    ys, xs = np.mgrid[patch.box[1]:patch.box[3], patch.box[0]:patch.box[2]]
    centroid = np.array([(xs * weights).sum(), (ys * weights).sum()]) / weights.sum()
    back = cv2.invertAffineTransform(m)
    assert np.abs(centroid - (back[:, :2] @ [100.0, 60.0] + back[:, 2])).max() < 0.3


def test_raw_predict_skips_colour_work():
    assert colour_face(FACE, CROP_IMG, MASK, MergeSettings(mode="raw-predict", colour="rct")) is FACE
    with pytest.raises(EngineError):
        _compose("raw-predict", raw=FACE[:, :100])


def test_mask_touching_the_crop_edge_takes_the_separate_warp_and_agrees():
    # a mask that is 0 along the crop's edge is warped packed with the face (BGRA); one that is not,
    # apart; both must give the same patch
    packed = _compose()
    edged = MASK.copy()
    edged[0, 0] = 1e-4
    apart = _compose(mask=edged)
    ours = (slice(packed.box[1] - apart.box[1], packed.box[3] - apart.box[1]),
            slice(packed.box[0] - apart.box[0], packed.box[2] - apart.box[0]))
    # (this face is shrunk: the packed mask is area-averaged first, the lone one sampled bilinearly)
    assert np.abs(apart.alpha[ours] - packed.alpha).max() < 0.02
    solid = packed.alpha > 0.1
    assert np.abs(apart.rgb[ours][solid].astype(int) - packed.rgb[solid]).max() <= 2
    # and a mask of ones covers the whole square, fully inside it
    full = _compose(mask=np.ones((CROP, CROP), np.float32))
    square = _compose("raw-patch")
    assert full.box == square.box and np.array_equal(full.alpha, square.alpha)


def test_a_uint8_mask_means_the_same_as_its_float():
    as_bytes = _compose(mask=np.round(MASK * 255).astype(np.uint8))
    as_float = _compose(mask=np.round(MASK * 255).astype(np.float32) / 255)
    assert as_bytes.box == as_float.box and np.abs(as_bytes.alpha - as_float.alpha).max() < 1e-6
