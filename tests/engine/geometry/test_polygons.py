"""Mask labels: validation of untrusted polygons, exact rasterising, face <-> frame mapping."""

import math

import cv2
import numpy as np
import pytest

from engine.geometry.align import align_transform, template_points, FACE_TYPES
from engine.geometry.polygons import (check_polygons, exclusion, face_to_frame, fill, frame_to_face, rasterize,
                                      rasterize_pixels)

SQUARE = [[0.25, 0.25], [0.75, 0.25], [0.75, 0.75], [0.25, 0.75]]


@pytest.mark.parametrize("bad, words", [
    ("nope", "must be a list"),
    ([{"include": True, "points": SQUARE}] * 257, "more than"),
    (["poly"], "must be a map"),
    ([{"include": True, "points": SQUARE, "colour": 1}], "unknown key"),
    ([{"include": "yes", "points": SQUARE}], "'include'"),
    ([{"include": True, "points": SQUARE[:2]}], "3 to 4096"),
    ([{"include": True, "points": [[0, 0]] * 4097}], "3 to 4096"),
    ([{"include": True, "points": [[0, 0], [1, 0], [1]]}], "pair of numbers"),
    ([{"include": True, "points": [[0, 0], [1, 0], [True, 1]]}], "pair of numbers"),
    ([{"include": True, "points": [[0, 0], [1, 0], ["1", 1]]}], "pair of numbers"),
    ([{"include": True, "points": [[0, 0], [1, 0], [math.nan, 1]]}], "finite"),
    ([{"include": True, "points": [[0, 0], [1, 0], [math.inf, 1]]}], "finite"),
    ([{"include": True, "points": [[0, 0], [1, 0], [2e6, 1]]}], "finite"),
])
def test_bad_labels_are_refused_with_a_reason(bad, words):
    with pytest.raises(ValueError, match=words):
        check_polygons(bad)


def test_a_good_label_comes_back_clean():
    got = check_polygons([{"include": False, "points": [[0, 0], [1, 0], (1, 1)]}, {"points": SQUARE}])
    assert got == [{"include": False, "points": [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0]]},
                   {"include": True, "points": SQUARE}]
    assert isinstance(got[0]["points"][0][0], float)
    assert check_polygons([]) == []


def test_fill_is_exact_to_a_fraction_of_a_pixel():
    rng = np.random.default_rng(0)
    for _ in range(20):
        x0, y0 = rng.uniform(3, 10, 2)
        x1, y1 = rng.uniform(20, 37, 2)
        area = fill([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], (40, 40)).sum()
        assert abs(area - (x1 - x0) * (y1 - y0)) < 0.1 * 2 * (x1 - x0 + y1 - y0)  # < 0.1 px per edge
        c, r = rng.uniform(15, 25, 2), rng.uniform(5, 12)
        a = np.linspace(0, 2 * np.pi, 400, endpoint=False)
        circle = fill(c + r * np.stack([np.cos(a), np.sin(a)], 1), (40, 40))
        assert abs(circle.sum() - np.pi * r * r) < 0.1 * 2 * np.pi * r
    # an edge half way through a pixel covers half of it; a polygon far outside is clipped, not bent
    m = fill([[10.5, 0], [30, 0], [30, 20], [10.5, 20]], (20, 40))
    assert abs(m[5, 10] - 0.5) < 0.07 and m[5, 11] == 1 and m[5, 9] == 0
    huge = fill([[-5e5, -5e5], [5e5, -5e5], [5e5, 5e5], [-5e5, 5e5]], (16, 16))
    assert huge.min() == 1.0
    # a diagonal edge from far away keeps its slope inside the canvas: x = 16 - y/2 crosses it
    tri = fill([[-1e5, -1e5], [16 + 5e4, -1e5], [16 - 5e4, 1e5]], (16, 16))
    assert abs(tri.sum() - (16 * 16 - 16 * 8 / 2)) < 0.5


def test_polygons_apply_in_order():
    outer = {"include": True, "points": [[0.1, 0.1], [0.9, 0.1], [0.9, 0.9], [0.1, 0.9]]}
    hole = {"include": False, "points": SQUARE}
    dot = {"include": True, "points": [[0.4, 0.4], [0.6, 0.4], [0.6, 0.6], [0.4, 0.6]]}
    m = rasterize([outer, hole, dot], 100)
    assert m[15, 15] == 1 and m[30, 30] == 0 and m[50, 50] == 1 and m[95, 95] == 0
    assert abs(m.sum() - (80 * 80 - 50 * 50 + 20 * 20)) < 2
    # the same hole drawn first is overwritten by the include that follows
    assert rasterize([hole, outer], 100)[50, 50] == 1
    ex = exclusion([outer, hole, dot], 100)
    assert ex[30, 30] == 1 and ex[50, 50] == 0 and ex[15, 15] == 0
    assert exclusion([outer], 100) is None
    assert rasterize([], 50).shape == (50, 50) and rasterize([], 50).max() == 0


def _face_transform(size: int) -> np.ndarray:
    """A rotated, scaled face in a 320x240 frame."""
    tpl = template_points(100, FACE_TYPES["full"])
    a = np.radians(17)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    frame_pts = (tpl - 50) @ rot.T * 1.3 + [170, 115]
    return align_transform(frame_pts, size, "full")


def test_face_frame_round_trip():
    m = _face_transform(256)
    rng = np.random.default_rng(1)
    polys = [{"include": bool(i % 2), "points": rng.uniform(-0.2, 1.2, (7, 2)).tolist()} for i in range(4)]
    back = frame_to_face(face_to_frame(polys, m, 256), m, 256)
    for a, b in zip(polys, back):
        assert a["include"] == b["include"]
        np.testing.assert_allclose(a["points"], b["points"], atol=1e-9)


def test_crop_corners_map_to_where_opencv_samples_them():
    """Face (0,0) is the crop's top-left corner: half a crop pixel before the first pixel's centre."""
    m = _face_transform(64)
    corner = face_to_frame([{"include": True, "points": [[0, 0], [1, 1], [0.5 / 64, 0.5 / 64]]}], m, 64)[0]["points"]
    inv = cv2.invertAffineTransform(m)
    centre0 = inv @ [0, 0, 1] + 0.5  # crop pixel (0,0)'s centre in continuous frame coordinates
    np.testing.assert_allclose(corner[2], centre0, atol=1e-9)
    np.testing.assert_allclose(corner[0], inv @ [-0.5, -0.5, 1] + 0.5, atol=1e-9)
    np.testing.assert_allclose(corner[1], inv @ [63.5, 63.5, 1] + 0.5, atol=1e-9)


def test_a_label_drawn_on_the_frame_matches_the_frame_raster_warped_into_the_crop():
    size = 128
    m = _face_transform(size)
    star = [[170 + 45 * np.cos(t) * (1 if i % 2 else 0.45), 115 + 45 * np.sin(t) * (1 if i % 2 else 0.45)]
            for i, t in enumerate(np.linspace(0, 2 * np.pi, 14, endpoint=False))]
    polys = [{"include": True, "points": star},
             {"include": False, "points": [[160, 105], [185, 108], [175, 130]]}]
    frame_mask = rasterize_pixels(polys, (240, 320))
    warped = cv2.warpAffine(frame_mask, m, (size, size), flags=cv2.INTER_LINEAR)
    face = rasterize(frame_to_face(polys, m, size), size)
    diff = np.abs(face - warped)
    assert diff.mean() < 0.01 and (diff > 0.5).sum() <= 3
    # and the centroid agrees to a small fraction of a crop pixel
    ys, xs = np.mgrid[:size, :size]
    for a, b in ((face, warped),):
        np.testing.assert_allclose([(a * xs).sum() / a.sum(), (a * ys).sum() / a.sum()],
                                   [(b * xs).sum() / b.sum(), (b * ys).sum() / b.sum()], atol=0.05)
