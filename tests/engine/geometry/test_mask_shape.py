"""Mask shaping: each side moves by the asked amount and no other, exclusions stay out, smoothing
over time has no lag, and edge_change measures what it says."""

import numpy as np
import pytest

from engine.geometry.mask_shape import MaskShape, edge_change, edge_length, shape_mask
from engine.geometry.polygons import fill

SIDE = 200
BOX = (50.3, 60.0, 150.0, 140.7)  # left, top, right, bottom (continuous pixels)


def _box(left=BOX[0], top=BOX[1], right=BOX[2], bottom=BOX[3], side=SIDE) -> np.ndarray:
    return fill([[left, top], [right, top], [right, bottom], [left, bottom]], (side, side))


def _edges(m: np.ndarray) -> tuple[float, float, float, float]:
    """Left, top, right, bottom edge positions read exactly off the middle row and column."""
    row, col = m[100], m[:, 100]
    return ((1 - row[:100]).sum(), (1 - col[:100]).sum(), 100 + row[100:].sum(), 100 + col[100:].sum())


@pytest.mark.parametrize("side, amount, index, direction", [
    ("top", 0.05, 1, 1), ("top", -0.0375, 1, -1), ("bottom", 0.0115, 3, -1), ("bottom", -0.05, 3, 1),
    ("left", 0.0333, 0, 1), ("left", -0.02, 0, -1), ("right", 0.1, 2, -1), ("right", -0.0061, 2, 1),
])
def test_one_side_moves_by_the_amount_and_the_others_stay(side, amount, index, direction):
    before = _edges(_box())
    after = _edges(shape_mask(_box(), MaskShape(**{side: amount})))
    moved = np.subtract(after, before)
    assert moved[index] == pytest.approx(direction * abs(amount) * SIDE, abs=0.05)
    others = np.delete(moved, index)
    np.testing.assert_allclose(others, 0, atol=0.05)


@pytest.mark.parametrize("amount", [0.03, 0.0127, -0.025, -0.0061])
def test_uniform_erode_and_dilate_move_every_edge(amount):
    moved = np.subtract(_edges(shape_mask(_box(), MaskShape(erode=amount))), _edges(_box()))
    px = amount * SIDE
    np.testing.assert_allclose(moved, [px, px, -px, -px], atol=0.05)


def test_sides_combine_and_a_mask_cut_by_the_crop_keeps_its_cut_edge():
    m = shape_mask(_box(), MaskShape(top=0.02, bottom=0.02, left=-0.01, right=-0.01))
    np.testing.assert_allclose(np.subtract(_edges(m), _edges(_box())), [-2, 4, 2, -4], atol=0.05)
    cut = _box(top=-10)  # the face goes on above the crop: eroding the top has no edge to move
    assert shape_mask(cut, MaskShape(top=0.05))[0, 100] == 1.0


def test_blur_softens_the_edge_but_keeps_its_place():
    m = shape_mask(_box(), MaskShape(blur=0.1))
    np.testing.assert_allclose(_edges(m), _edges(_box()), atol=0.05)
    assert 0.3 < m[100, int(BOX[0])] < 0.7 and m[100, 100] == pytest.approx(1.0, abs=1e-3)
    assert (m[100, 30:70] > 0.01).sum() > 10  # the fade is several pixels wide


def test_exclusions_stay_excluded_after_dilation_and_blur():
    zone = _box(left=90, top=90, right=130, bottom=170)  # a hand over the lower face, past the edge
    m = shape_mask(_box(), MaskShape(erode=-0.05, bottom=-0.05, blur=0.08), exclude=zone)
    assert m[zone == 1].max() == 0
    assert m[100, 60] == pytest.approx(1.0, abs=1e-3) and m[95, 95] == 0
    assert np.array_equal(shape_mask(_box(), MaskShape()), _box())  # nothing asked, nothing changed


@pytest.mark.parametrize("bad", [{"erode": 0.6}, {"top": -0.7}, {"blur": -0.1}, {"blur": float("nan")},
                                 {"erode": True}, {"erode": "0.1"}, {"tops": 0.1}, [1]])
def test_bad_shapes_are_refused(bad):
    with pytest.raises(ValueError):
        MaskShape.from_dict(bad)


def test_shape_from_dict():
    assert MaskShape.from_dict({"erode": 0.1, "top": -0.02, "blur": 0}) == MaskShape(erode=0.1, top=-0.02)


def test_edge_change_is_the_mean_edge_displacement():
    a = np.linspace(0, 2 * np.pi, 400, endpoint=False)
    ring = np.stack([np.cos(a), np.sin(a)], 1)
    c1, c2 = fill(100 + 40 * ring, (SIDE, SIDE)), fill(100 + 41.5 * ring, (SIDE, SIDE))
    assert edge_change(c1, c2) == pytest.approx(1.5, abs=0.05)
    assert edge_length(c1) == pytest.approx(2 * np.pi * 40, rel=0.02)
    # a 100 x 80 box moved 2 px sideways: its left and right edges (160 of 360 px) moved by 2
    assert edge_change(_box(50, 60, 150, 140), _box(52, 60, 152, 140)) == pytest.approx(2 * 160 / 360, abs=0.02)
    assert edge_change(np.zeros((8, 8)), np.zeros((8, 8))) == 0.0
    assert edge_change(c1, c1) == 0.0


def test_a_large_erosion_moves_every_edge_to_within_half_a_pixel():
    moved = np.subtract(_edges(shape_mask(_box(), MaskShape(erode=0.1))), _edges(_box()))
    np.testing.assert_allclose(moved, [0.1 * SIDE, 0.1 * SIDE, -0.1 * SIDE, -0.1 * SIDE], atol=0.5)
    grown = np.subtract(_edges(shape_mask(_box(), MaskShape(erode=-0.09))), _edges(_box()))
    np.testing.assert_allclose(grown, [-0.09 * SIDE, -0.09 * SIDE, 0.09 * SIDE, 0.09 * SIDE], atol=0.5)
