import time

import cv2
import numpy as np
import pytest

from engine.faces.quality import face_quality, gray_histogram, histogram_distance
from engine.media.synthetic import portrait


@pytest.fixture(scope="module")
def face():
    return cv2.resize(portrait("hopper")[40:552], (256, 256), interpolation=cv2.INTER_AREA)


def test_sharpness_falls_with_blur(face):
    scores = [face_quality(cv2.GaussianBlur(face, (0, 0), s) if s else face)[0] for s in (0, 1, 2, 4)]
    assert scores == sorted(scores, reverse=True) and scores[0] > 10 * scores[-1]


def test_sharpness_hardly_depends_on_crop_size(face):
    at = {size: face_quality(cv2.resize(face, (size, size), interpolation=cv2.INTER_AREA)) for size in (128, 256)}
    at[512] = face_quality(cv2.resize(portrait("hopper")[40:552], (512, 512)))
    sharp = [s for s, _ in at.values()]
    assert max(sharp) < 1.3 * min(sharp)
    assert max(b for _, b in at.values()) - min(b for _, b in at.values()) < 2


def test_brightness_is_the_face_luma(face):
    _, base = face_quality(face)
    _, brighter = face_quality(cv2.convertScaleAbs(face, alpha=1.0, beta=40))
    assert 60 < base < 200 and brighter == pytest.approx(base + 40, abs=3)
    assert face_quality(np.full((128, 128, 3), 200, np.uint8)) == (0.0, pytest.approx(200))


def test_mask_picks_the_region(face):
    # the left half bright and flat, the right half the face: a mask on the right measures the face
    crop = face.copy()
    crop[:, :128] = 250
    mask = np.zeros((64, 64), np.uint8)  # any size: it is scaled to the crop
    mask[8:56, 36:60] = 1
    sharp, bright = face_quality(crop, mask)
    face_sharp, _ = face_quality(face)
    assert bright < 200 and sharp > face_sharp / 3
    assert face_quality(crop, np.zeros((8, 8))) == face_quality(crop)  # an empty mask: central square
    as_image = np.repeat((mask * 255)[..., None], 3, axis=2)  # a mask saved as an image: same region
    assert face_quality(crop, as_image) == pytest.approx((sharp, bright))
    assert face_quality(crop, mask.astype(bool)) == pytest.approx((sharp, bright))


def test_gray_histogram_compares_faces(face):
    h = gray_histogram(face)
    assert h.shape == (64,) and h.dtype == np.float32 and h.sum() == pytest.approx(1)
    shifted = cv2.resize(portrait("hopper")[44:556, 3:515], (256, 256), interpolation=cv2.INTER_AREA)
    blue = np.zeros_like(face)
    blue[..., 0] = 255
    near, far = histogram_distance(h, gray_histogram(shifted)), histogram_distance(h, gray_histogram(blue))
    assert histogram_distance(h, h) == pytest.approx(0, abs=1e-3)
    assert near < 0.1 < 0.8 < far
    assert histogram_distance(np.stack([h, h]), np.stack([h, h, h])).shape == (2, 3)


def test_face_quality_is_fast(face):
    crop = cv2.resize(face, (512, 512))
    face_quality(crop)
    n = 200
    start = time.perf_counter()
    for _ in range(n):
        face_quality(crop)
    # under 1 ms on a 512 px crop is the target; leave room for a loaded test machine
    assert (time.perf_counter() - start) / n < 5e-3
