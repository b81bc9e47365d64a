"""Sparse PNG: full-frame images that are zero outside a box, read back exactly by OpenCV and PIL."""

import io

import cv2
import numpy as np
import pytest
from PIL import Image

from engine.errors import EngineError
from engine.media import sparse_png
from engine.media.sparse_png import encode_sparse_png, write_sparse_png


def _face(h: int, w: int, channels: int, seed: int = 0) -> np.ndarray:
    """A smooth picture with noise (like a face) and a soft alpha disc, BGR(A) order."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([(xx * 255 // max(w - 1, 1)), (yy * 255 // max(h - 1, 1)), (xx + yy) % 256], -1)
    img = np.clip(base + rng.integers(-20, 20, (h, w, 3)), 0, 255).astype(np.uint8)
    if channels == 3:
        return img
    alpha = np.zeros((h, w), np.uint8)
    cv2.ellipse(alpha, (w // 2, h // 2), (max(1, w // 3), max(1, h // 3)), 0, 0, 360, 255, -1)
    alpha = cv2.GaussianBlur(alpha, (0, 0), 3)
    if channels == 1:
        return alpha
    return np.dstack([img, alpha])


def _full(height, width, box, roi):
    full = np.zeros((height, width) + roi.shape[2:], np.uint8)
    x0, y0, x1, y1 = box
    full[y0:y1, x0:x1] = roi
    return full


def _decode(png: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED)


@pytest.mark.parametrize("channels", [4, 3, 1])
@pytest.mark.parametrize("box", [(40, 30, 95, 100), (0, 0, 160, 120), (0, 0, 7, 5), (150, 110, 160, 120),
                                 (0, 50, 160, 51), (159, 0, 160, 120)])
def test_reads_back_exactly_with_opencv(channels, box):
    roi = _face(box[3] - box[1], box[2] - box[0], channels)
    back = _decode(encode_sparse_png(120, 160, box, roi))
    assert back.shape == _full(120, 160, box, roi).shape
    assert np.array_equal(back, _full(120, 160, box, roi))


def test_pil_reads_rgba_in_file_order_with_straight_alpha():
    box = (10, 20, 70, 90)
    roi = _face(70, 60, 4)
    image = Image.open(io.BytesIO(encode_sparse_png(100, 80, box, roi)))
    assert image.mode == "RGBA" and image.size == (80, 100)
    pixels = np.asarray(image)
    expected = _full(100, 80, box, roi)
    assert np.array_equal(pixels[..., :3], expected[..., 2::-1])  # BGR in, RGB in the file
    assert np.array_equal(pixels[..., 3], expected[..., 3])
    grey = Image.open(io.BytesIO(encode_sparse_png(100, 80, box, roi[..., 3])))
    assert grey.mode == "L" and np.array_equal(np.asarray(grey), expected[..., 3])


def test_big_frames_go_through_threaded_strips_and_stay_exact(monkeypatch):
    monkeypatch.setattr(sparse_png, "_STRIPS", 3)
    monkeypatch.setattr(sparse_png, "_STRIP_BYTES", 1 << 12)
    box = (300, 200, 750, 650)
    roi = _face(450, 450, 4, seed=3)
    png = encode_sparse_png(1080, 1920, box, roi)
    assert np.array_equal(_decode(png), _full(1080, 1920, box, roi))
    # the face's box compresses: the file is far smaller than the frame's 8 MB
    assert len(png) < roi.nbytes


@pytest.mark.parametrize("channels", [4, 1])
def test_empty_box_gives_a_blank_image(channels):
    shape = (0, 0, 4) if channels == 4 else (0, 0)
    back = _decode(encode_sparse_png(1080, 1920, (0, 0, 0, 0), np.zeros(shape, np.uint8)))
    assert back.shape[:2] == (1080, 1920) and not back.any()
    assert back.ndim == (3 if channels == 4 else 2)


def test_write_is_atomic_and_readable(tmp_path):
    path = tmp_path / "layer" / "frame_000007.png"
    box = (5, 5, 25, 30)
    roi = _face(25, 20, 4)
    write_sparse_png(path, 40, 50, box, roi)
    assert np.array_equal(cv2.imread(str(path), cv2.IMREAD_UNCHANGED), _full(40, 50, box, roi))
    assert [p.name for p in path.parent.iterdir()] == ["frame_000007.png"]  # no temp file left behind


@pytest.mark.parametrize("height, width, box, roi, words", [
    (100, 100, (0, 0, 10, 10), np.zeros((10, 10, 4), np.float32), "uint8"),
    (100, 100, (0, 0, 10, 10), np.zeros((10, 10, 2), np.uint8), "shape"),
    (100, 100, (0, 0, 10, 10), np.zeros((10, 12, 4), np.uint8), "the box is 10x10"),
    (100, 100, (90, 90, 110, 100), np.zeros((10, 20, 4), np.uint8), "outside"),
    (100, 100, (-1, 0, 9, 10), np.zeros((10, 10, 4), np.uint8), "outside"),
    (100, 100, (5, 5, 5, 9), np.zeros((4, 1, 4), np.uint8), "empty"),
    (0, 100, (0, 0, 0, 0), np.zeros((0, 0, 4), np.uint8), "positive"),
    (100, 100, (1, 2, 3), np.zeros((1, 2, 4), np.uint8), "box must be"),
])
def test_bad_input_is_a_bad_request(height, width, box, roi, words):
    with pytest.raises(EngineError) as err:
        encode_sparse_png(height, width, box, roi)
    assert err.value.code == "bad_request" and words in err.value.message


def test_encodes_on_many_threads_at_once_share_one_strip_pool(monkeypatch):
    import threading
    from concurrent.futures import ThreadPoolExecutor

    monkeypatch.setattr(sparse_png, "_STRIP_BYTES", 1 << 12)  # every encode goes through the strip threads
    before = {t.ident for t in threading.enumerate() if t.name.startswith("swapline-png-strip")}
    box = (300, 200, 620, 520)
    rois = [_face(320, 320, 4, seed=s) for s in range(8)]
    with ThreadPoolExecutor(8) as callers:
        pngs = list(callers.map(lambda roi: encode_sparse_png(720, 1280, box, roi), rois))
    for png, roi in zip(pngs, rois):
        assert np.array_equal(_decode(png), _full(720, 1280, box, roi))
    strips = {t.ident for t in threading.enumerate() if t.name.startswith("swapline-png-strip")}
    # one pool for the process: racing first encodes used to make one each, and their threads stayed
    assert len(strips | before) <= max(1, sparse_png._STRIPS - 1)
