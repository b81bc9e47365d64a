"""Landmark masks: the face hull, eyes and mouth, for every face type."""

import numpy as np
import pytest

from engine.geometry.align import FACE_TYPES, template_points
from engine.geometry.hull import eyes_mask, eyes_mouth_mask, hull_mask, mouth_mask

SIZE = 256
# index of each point's mirror image in the 68-point layout
MIRROR = np.array(
    list(range(16, -1, -1)) + list(range(26, 16, -1)) + [27, 28, 29, 30] + [35, 34, 33, 32, 31]
    + [45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40]
    + [54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55] + [64, 63, 62, 61, 60, 67, 66, 65])


def _symmetric(pts: np.ndarray) -> np.ndarray:
    """The face averaged with its mirror image: exactly symmetric about the crop's centre line."""
    mirrored = pts.copy()
    mirrored[:, 0] = (SIZE - 1) - mirrored[:, 0]  # pixel centres at integers: flipping the array
    return (pts + mirrored[MIRROR]) / 2


def _rows(mask: np.ndarray) -> np.ndarray:
    return np.nonzero(mask.max(1) > 0.5)[0]


def test_mirror_table_is_an_involution():
    assert sorted(MIRROR) == list(range(68))
    np.testing.assert_array_equal(MIRROR[MIRROR], np.arange(68))


@pytest.mark.parametrize("name", list(FACE_TYPES))
def test_masks_sit_where_the_face_is_for_every_face_type(name):
    pts = template_points(SIZE, FACE_TYPES[name])
    hull, eyes, mouth = hull_mask(pts, (SIZE, SIZE)), eyes_mask(pts, (SIZE, SIZE)), mouth_mask(pts, (SIZE, SIZE))
    both = eyes_mouth_mask(pts, (SIZE, SIZE))
    for m in (hull, eyes, mouth, both):
        assert m.dtype == np.float32 and m.shape == (SIZE, SIZE) and 0 <= m.min() and m.max() == 1.0
    # eyes and mouth lie inside the crop (no row or column at the border), and inside the hull;
    # a half crop ends at the lower lip, so there only the ungrown mouth fits
    inside = mouth_mask(pts, (SIZE, SIZE), grow=0.0) if name == "half" else mouth
    for m in (eyes, inside):
        assert m[0].max() == m[-1].max() == m[:, 0].max() == m[:, -1].max() == 0
        assert ((m > 0.5) & (hull < 0.5)).sum() <= 0.02 * (m > 0.5).sum()
    assert _rows(eyes).max() < _rows(mouth).min()  # eyes above the mouth, with skin between
    np.testing.assert_allclose(both, np.maximum(eyes, mouth), atol=1 / 255)
    # the eyes cover both eye centres, the mouth the lips' centre, not the nose tip
    for c in (pts[36:42].mean(0), pts[42:48].mean(0)):
        assert eyes[int(round(c[1])), int(round(c[0]))] == 1.0
    lips = pts[48:60].mean(0)
    assert mouth[int(round(lips[1])), int(round(lips[0]))] == 1.0
    nose = pts[30]
    assert eyes[int(round(nose[1])), int(round(nose[0]))] == 0 and mouth[int(round(nose[1])), int(round(nose[0]))] == 0
    # areas scale with the face: eyes and mouth are a small part of the hull
    assert 0.02 < eyes.sum() / hull.sum() < 0.25 and 0.02 < mouth.sum() / hull.sum() < 0.25
    if name not in ("half", "mid_full"):  # narrow crops cut off the jaw and forehead
        assert hull[0].max() == 0 and hull[-1].max() == 0


@pytest.mark.parametrize("name", list(FACE_TYPES))
def test_a_symmetric_face_gives_symmetric_masks(name):
    pts = _symmetric(template_points(SIZE, FACE_TYPES[name]))
    for fn in (hull_mask, eyes_mask, mouth_mask, eyes_mouth_mask):
        m = fn(pts, (SIZE, SIZE))
        diff = np.abs(m - m[:, ::-1])
        assert diff.max() < 0.1 and diff.mean() < 1e-3, fn.__name__


def test_grow_widens_eyes_and_a_closed_mouth_still_has_area():
    pts = template_points(SIZE, FACE_TYPES["full"])
    assert eyes_mask(pts, (SIZE, SIZE), grow=1.0).sum() > eyes_mask(pts, (SIZE, SIZE), grow=0.5).sum() \
        > eyes_mask(pts, (SIZE, SIZE), grow=0.0).sum() > 0
    closed = pts.copy()
    closed[48:60, 1] = pts[48:60, 1].mean()  # lips pressed into a line
    closed[36:48, 1] = np.repeat([pts[36:42, 1].mean(), pts[42:48, 1].mean()], 6)
    assert mouth_mask(closed, (SIZE, SIZE)).sum() > 0.3 * mouth_mask(pts, (SIZE, SIZE)).sum()
    assert eyes_mask(closed, (SIZE, SIZE)).sum() > 0.3 * eyes_mask(pts, (SIZE, SIZE)).sum()


def test_masks_follow_the_landmarks_at_any_crop_size():
    small = template_points(64, FACE_TYPES["whole_face"])
    big = template_points(512, FACE_TYPES["whole_face"])
    for fn in (eyes_mask, mouth_mask):
        a, b = fn(small, (64, 64)), fn(big, (512, 512))
        assert abs(a.sum() * 64 - b.sum()) / b.sum() < 0.08  # area scales with the square of the side
