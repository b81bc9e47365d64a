import cv2
import numpy as np

from engine.geometry.align import FACE_TYPES, align_transform, template_points
from engine.geometry.hull import hull_mask
from engine.merge.blend import paste_face, reinhard_transfer


def test_reinhard_moves_colour_statistics_inside_the_mask():
    rng = np.random.default_rng(0)
    face = rng.integers(60, 120, (64, 64, 3)).astype(np.uint8)
    target = rng.integers(140, 220, (64, 64, 3)).astype(np.uint8)
    mask = np.zeros((64, 64), np.float32)
    mask[16:48, 16:48] = 1
    out = reinhard_transfer(face, target, mask)
    inside = mask > 0.5
    lab = lambda im: cv2.cvtColor(im, cv2.COLOR_BGR2LAB).astype(np.float32)[inside]
    assert np.abs(lab(out).mean(0) - lab(target).mean(0)).max() < 3.0


def test_paste_face_changes_only_the_masked_region():
    frame = np.full((240, 320, 3), 90, np.uint8)
    tpl = template_points(128, FACE_TYPES["full"])
    frame_pts = tpl * 1.2 + [80, 30]
    m = align_transform(frame_pts, 128)
    face = np.full((128, 128, 3), 200, np.uint8)
    mask = hull_mask(tpl, (128, 128))
    out = paste_face(frame, face, mask, m)
    nose = frame_pts[30].astype(int)
    assert out[nose[1], nose[0]].tolist() == [200, 200, 200]
    assert (out[:10] == frame[:10]).all() and (out[:, -20:] == frame[:, -20:]).all()
