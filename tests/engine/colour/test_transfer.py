"""Tests for engine.colour.transfer: each method moves the masked colour statistics to the target's."""

import cv2
import numpy as np
import pytest

from engine.colour import METHODS, transfer_colour


def _crop(size: int, face_bgr: tuple, spread: tuple, background: tuple, seed: int) -> np.ndarray:
    """A noisy coloured square (the "face") on a flat background."""
    rng = np.random.default_rng(seed)
    img = np.full((size, size, 3), background, np.float64)
    inner = slice(size // 4, 3 * size // 4)
    img[inner, inner] = rng.normal(face_bgr, spread, (size // 2, size // 2, 3))
    return cv2.GaussianBlur(np.clip(img, 0, 255).astype(np.uint8), (3, 3), 0)


def _face_mask(size: int) -> np.ndarray:
    m = np.zeros((size, size), np.float32)
    m[size // 4 + 2:3 * size // 4 - 2, size // 4 + 2:3 * size // 4 - 2] = 1
    return m


SRC = _crop(32, (60, 120, 180), (20, 10, 30), (0, 255, 0), 0)
TGT = _crop(32, (150, 100, 80), (30, 25, 10), (255, 0, 255), 1)
MASK = _face_mask(32)


def _stats(image: np.ndarray, lab: bool = False) -> tuple[np.ndarray, np.ndarray]:
    x = cv2.cvtColor(image.astype(np.float32) / 255, cv2.COLOR_BGR2LAB) if lab else image.astype(np.float64)
    sel = x[MASK > 0.5]
    return sel.mean(0), sel.std(0)


@pytest.mark.parametrize("method", METHODS)
def test_masked_statistics_move_to_the_target(method):
    out = transfer_colour(SRC, TGT, method, MASK, MASK)
    assert out.shape == SRC.shape and out.dtype == np.uint8
    lab = method == "rct"  # Reinhard matches Lab statistics; the others work in BGR itself
    (sm, ss), (tm, ts), (om, os_) = _stats(SRC, lab), _stats(TGT, lab), _stats(out, lab)
    assert np.abs(om - tm).mean() < 0.2 * np.abs(sm - tm).mean()
    assert np.abs(os_ - ts).mean() < 0.5 * np.abs(ss - ts).mean()


@pytest.mark.parametrize("method", METHODS)
def test_without_masks_the_background_counts(method):
    # the green background of the source and the magenta of the target weigh in: results differ
    masked = transfer_colour(SRC, TGT, method, MASK, MASK)
    whole = transfer_colour(SRC, TGT, method)
    assert np.abs(masked.astype(int) - whole).mean() > 2


@pytest.mark.parametrize("method", METHODS)
def test_same_colours_change_nothing(method):
    out = transfer_colour(SRC, SRC, method, MASK, MASK)
    assert np.abs(out.astype(int) - SRC).max() <= 1


def test_target_may_have_another_size_and_masks_may_be_uint8():
    big = cv2.resize(TGT, (48, 48))
    mask = (cv2.resize(MASK, (48, 48)) * 255).astype(np.uint8)
    out = transfer_colour(SRC, big, "rct", (MASK * 255).astype(np.uint8), mask)
    assert np.abs(_stats(out, True)[0] - _stats(TGT, True)[0]).mean() < 3


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError):
        transfer_colour(SRC, TGT, "nope")
    with pytest.raises(ValueError):
        transfer_colour(SRC.astype(np.float32), TGT, "rct")
    with pytest.raises(ValueError):
        transfer_colour(SRC, TGT, "rct", MASK[:10])


def test_an_empty_mask_falls_back_to_the_whole_image():
    empty = np.zeros_like(MASK)
    assert np.array_equal(transfer_colour(SRC, TGT, "lct", empty, empty), transfer_colour(SRC, TGT, "lct"))
