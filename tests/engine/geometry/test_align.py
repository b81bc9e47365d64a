import cv2
import numpy as np
import pytest

from engine.geometry.align import (FACE_TYPES, align_transform, face_type, invert, rescale, template_points,
                                   transform_points, umeyama)
from engine.geometry.hull import feather, hull_mask


def test_umeyama_recovers_a_similarity():
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 100, (30, 2))
    a, s, t = 0.3, 1.7, np.array([12.0, -4.0])
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    dst = src @ (s * rot).T + t
    m = umeyama(src, dst)
    np.testing.assert_allclose(transform_points(m, src), dst, atol=1e-9)
    np.testing.assert_allclose(transform_points(invert(m), dst), src, atol=1e-9)


def test_face_types_grow_in_coverage():
    sides = []
    for name in ("half", "mid_full", "full", "whole_face", "head"):
        pts = template_points(256, face_type(name))
        sides.append(np.ptp(pts[17:, 0]))
    assert sides == sorted(sides, reverse=True)  # wider coverage → smaller face in the crop
    with pytest.raises(ValueError):
        face_type("torso")


def test_alignment_maps_a_moved_face_onto_the_template():
    tpl = template_points(256, FACE_TYPES["full"])
    frame_pts = tpl * 0.8 + [50, 70]
    m = align_transform(frame_pts, 256, "full")
    np.testing.assert_allclose(transform_points(m, frame_pts), tpl, atol=1e-6)
    np.testing.assert_allclose(rescale(m, 0.25)[:, :2], m[:, :2] * 0.25)


def test_hull_mask_covers_the_face_and_feathers():
    tpl = template_points(128, FACE_TYPES["full"])
    mask = hull_mask(tpl, (128, 128))
    assert mask[int(tpl[30, 1]), int(tpl[30, 0])] == 1.0  # nose tip inside
    assert mask[2, 2] == 0.0
    soft = feather(mask, 4, 6)
    assert soft.sum() < mask.sum() and 0 < soft[int(tpl[8, 1]) - 3, int(tpl[8, 0])] < 1
