"""Tests for engine.merge.masks: product of sources, per-side erosion and feathering, exclusions."""

import cv2
import numpy as np
import pytest

from engine.errors import EngineError
from engine.merge.masks import combine, shape_mask
from engine.merge.settings import MergeSettings

SIZE = 256
SHARP = dict(erode=0.0, blur=0.0)


def _square(lo: int = 64, hi: int = 192) -> np.ndarray:
    m = np.zeros((SIZE, SIZE), np.float32)
    m[lo:hi, lo:hi] = 1
    return m


def _edges(mask: np.ndarray) -> tuple[int, int, int, int]:
    """First and last row (through the middle column) and column (through the middle row) over 0.5."""
    rows, cols = np.flatnonzero(mask[:, SIZE // 2] > 0.5), np.flatnonzero(mask[SIZE // 2] > 0.5)
    return rows[0], rows[-1], cols[0], cols[-1]


def test_combine_is_the_product_of_the_named_masks():
    a, b = _square(), np.full((SIZE, SIZE), 0.5, np.float32)
    out = combine({"hull": a, "dst": b, "pred": np.zeros_like(a)}, ("hull", "dst"))
    assert out.dtype == np.float32 and np.allclose(out, a * 0.5)
    as_bytes = combine({"hull": (a * 255).astype(np.uint8)}, ("hull",))
    assert np.array_equal(as_bytes, a)
    assert combine({"hull": a}, ("hull",)) is not a  # never the caller's array


def test_combine_refuses_a_missing_term_and_mismatched_shapes():
    with pytest.raises(EngineError) as err:
        combine({"hull": _square()}, ("hull", "pred"))
    assert err.value.code == "bad_request"
    with pytest.raises(EngineError):
        combine({"hull": _square(), "dst": np.ones((8, 8), np.float32)}, ("hull", "dst"))


def test_uniform_erosion_and_dilation_move_every_edge_alike():
    e = _edges(shape_mask(_square(), MergeSettings(erode=0.04, blur=0.0)))  # 0.04 * 256 = 10 px
    assert e == (74, 181, 74, 181)
    d = _edges(shape_mask(_square(), MergeSettings(erode=-0.04, blur=0.0)))
    assert d == (54, 201, 54, 201)


@pytest.mark.parametrize("side, expected", [
    ("top", (74, 191, 64, 191)), ("bottom", (64, 181, 64, 191)),
    ("left", (64, 191, 74, 191)), ("right", (64, 191, 64, 181))])
def test_per_side_erosion_moves_only_that_side(side, expected):
    out = shape_mask(_square(), MergeSettings(**SHARP, **{f"erode_{side}": 0.04}))
    assert _edges(out) == expected


def test_per_side_amounts_add_to_the_uniform_one_with_either_sign():
    # uniform 10 px in; top 10 px back out (net 0), bottom 5 px further in (net 15), left dilated 5 px (net 5)
    s = MergeSettings(erode=10 / SIZE, erode_top=-10 / SIZE, erode_bottom=5 / SIZE, erode_left=-5 / SIZE, blur=0.0)
    assert _edges(shape_mask(_square(), s)) == (64, 176, 69, 181)
    # top eroded while bottom is dilated: the whole mask moves down
    s = MergeSettings(**SHARP, erode_top=0.04, erode_bottom=-0.04)
    assert _edges(shape_mask(_square(), s)) == (74, 201, 64, 191)


def test_erosion_keeps_soft_values_inside_and_is_subpixel():
    soft = _square() * 0.7
    out = shape_mask(soft, MergeSettings(erode=0.02, blur=0.0))
    assert np.isclose(out[128, 128], 0.7)
    half = shape_mask(_square(), MergeSettings(erode=0.5 / SIZE, blur=0.0))  # half a pixel
    assert 0.3 < half[64, 128] < 0.7 and half[65, 128] == 1.0


def test_the_crop_edge_counts_as_outside():
    full = np.ones((SIZE, SIZE), np.float32)
    out = shape_mask(full, MergeSettings(erode=0.04, blur=0.02))
    assert out[0].max() < 0.01 and out[:, -1].max() < 0.01 and out[128, 128] == pytest.approx(1.0)


def test_feather_is_symmetric_and_a_side_feathers_only_its_own_edge():
    def width(profile: np.ndarray) -> int:
        return int(((profile > 0.02) & (profile < 0.98)).sum())

    even = shape_mask(_square(), MergeSettings(erode=0.0, blur=0.06))
    col = even[:, 128]
    assert width(col[:128]) == width(col[128:][::-1]) > 10
    assert np.allclose(even, even.T, atol=1e-5)
    top = shape_mask(_square(), MergeSettings(erode=0.0, blur=0.06, blur_top=0.06))
    t, b = top[:, 128], even[:, 128]
    assert width(t[:128]) > 1.5 * width(b[:128])  # the top edge fades over a wider band
    assert np.allclose(t[150:], b[150:], atol=1e-4)  # the bottom one did not change
    assert np.allclose(top[128, :], even[128, :], atol=1e-4)  # nor the sides at mid-height
    # a negative side amount makes that edge sharper
    sharp = shape_mask(_square(), MergeSettings(erode=0.0, blur=0.06, blur_bottom=-0.06))
    assert width(sharp[128:, 128]) == 0 and width(sharp[:128, 128]) == width(col[:128])


def test_exclusion_stays_out_after_dilation_and_blur():
    exclusion = np.zeros((SIZE, SIZE), np.float32)
    exclusion[100:140, 180:230] = 1  # a hand reaching over the face's right edge
    out = shape_mask(_square(), MergeSettings(erode=-0.1, blur=0.1), exclusion)
    assert out[100:140, 180:230].max() == 0.0
    assert out[128, 128] > 0.9 and out[60, 200] > 0.5  # the dilated mask around the hand is there


def test_empty_and_flat_masks_shape_safely():
    zero = shape_mask(np.zeros((SIZE, SIZE), np.float32), MergeSettings(blur_top=0.1))
    assert zero.dtype == np.float32 and not zero.any()
    out = shape_mask(_square(), MergeSettings())
    assert out.dtype == np.float32 and out.min() >= 0 and out.max() <= 1


@pytest.mark.parametrize("blur", [0.06, 0.15, 0.5])
def test_feathers_narrow_and_wide_are_the_gaussian_of_their_width(blur):
    # wide feathers run on a shrunk mask; they must still be the Gaussian the width names
    n = int(round(blur * SIZE))
    exact = cv2.GaussianBlur(_square(), (2 * n + 1, 2 * n + 1), 0.3 * (n - 1) + 0.8, borderType=cv2.BORDER_CONSTANT)
    out = shape_mask(_square(), MergeSettings(erode=0.0, blur=blur))
    assert np.abs(out - exact).max() < 0.01
