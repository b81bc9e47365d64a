"""Tests for engine.merge.enhance: sharpen/soften, degradation and motion blur change detail as named."""

import cv2
import numpy as np
import pytest

from engine.merge.enhance import degrade, enhance, motion_blur, sharpen
from engine.merge.settings import MergeSettings

SIZE = 256


def _textured(seed: int = 0) -> np.ndarray:
    """A face-like crop: smooth shading plus fine texture (pores) and a few strong edges."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:SIZE, 0:SIZE]
    base = 110 + 40 * np.sin(x / 40.0) + 30 * np.cos(y / 55.0)
    img = base[..., None] + rng.normal(0, 6, (SIZE, SIZE, 3))
    img[96:160, 60:70] += 60  # an eyebrow-like bar
    return np.clip(cv2.GaussianBlur(img, (3, 3), 0.7), 0, 255).astype(np.uint8)


def _detail(img: np.ndarray) -> float:
    """High-frequency energy: variance of the Laplacian."""
    return float(cv2.Laplacian(img.astype(np.float32), cv2.CV_32F).var())


FACE = _textured()


@pytest.mark.parametrize("mode", ["box", "gaussian"])
def test_sharpen_raises_detail_and_soften_lowers_it(mode):
    base = _detail(FACE)
    assert _detail(sharpen(FACE, mode, 0.5)) > 1.5 * base
    assert _detail(sharpen(FACE, mode, 1.0)) > _detail(sharpen(FACE, mode, 0.5))
    assert _detail(sharpen(FACE, mode, -0.5)) < 0.5 * base
    assert _detail(sharpen(FACE, mode, -1.0)) < _detail(sharpen(FACE, mode, -0.5))
    assert sharpen(FACE, mode, 0.0) is FACE
    # sharpening keeps the picture: the mean colour hardly moves
    assert abs(sharpen(FACE, mode, 1.0).mean() - FACE.mean()) < 1.5


def test_bits_quantise_each_channel_to_that_many_levels():
    for bits in (1, 3, 5):
        out = degrade(FACE, 0.0, 0.0, bits)
        for c in range(3):
            assert len(np.unique(out[..., c])) <= 2 ** bits
        assert np.abs(out.astype(int) - FACE).max() <= 255 / (2 ** bits - 1) / 2 + 1
    assert np.array_equal(degrade(FACE, 0.0, 0.0, 8), FACE)


def test_bicubic_loses_detail_more_the_stronger_it_is():
    base = _detail(FACE)
    weak, strong = _detail(degrade(FACE, 0.0, 0.3, 8)), _detail(degrade(FACE, 0.0, 1.0, 8))
    assert strong < weak < 0.8 * base
    assert abs(degrade(FACE, 0.0, 1.0, 8).astype(float).mean() - FACE.mean()) < 1.5


def test_denoise_smooths_noise_but_keeps_a_strong_edge():
    rng = np.random.default_rng(1)
    img = np.full((SIZE, SIZE, 3), 80.0)
    img[:, SIZE // 2:] = 180.0
    noisy = np.clip(img + rng.normal(0, 5, img.shape), 0, 255).astype(np.uint8)
    out = degrade(noisy, 1.0, 0.0, 8)
    flat = (slice(20, 230), slice(20, 100))
    assert out[flat].astype(float).std() < 0.5 * noisy[flat].astype(float).std()
    row = out[128].astype(float).mean(1)
    assert row[SIZE // 2 + 2] - row[SIZE // 2 - 3] > 80  # the 100-level step is still a step


def test_motion_blur_along_x_blurs_vertical_edges_only():
    vertical = np.full((SIZE, SIZE, 3), 50, np.uint8)
    vertical[:, SIZE // 2:] = 200  # intensity changes along x
    horizontal = np.ascontiguousarray(vertical.transpose(1, 0, 2))  # changes along y
    v = (20.0, 0.0)
    smeared = motion_blur(vertical, v, 0.5)  # 10 px of smear
    ramp = ((smeared[128, :, 0] > 55) & (smeared[128, :, 0] < 195)).sum()
    assert 7 <= ramp <= 12
    assert np.array_equal(motion_blur(horizontal, v, 0.5), horizontal)
    # the same along y swaps the roles
    assert np.array_equal(motion_blur(vertical, (0.0, 20.0), 0.5), vertical)
    assert not np.array_equal(motion_blur(horizontal, (0.0, 20.0), 0.5), horizontal)


def test_motion_blur_along_a_diagonal_and_below_a_pixel():
    dot = np.zeros((64, 64, 3), np.uint8)
    dot[32, 32] = 255
    out = motion_blur(dot, (3.0, 3.0), 2.0)[..., 0].astype(float)  # 8.5 px along the diagonal
    ys, xs = np.nonzero(out)
    assert np.corrcoef(xs, ys)[0, 1] > 0.9  # the smear lies on the diagonal
    assert np.hypot(xs.max() - xs.min(), ys.max() - ys.min()) >= 7
    assert motion_blur(dot, (0.5, 0.0), 1.0) is dot
    assert motion_blur(dot, (0.0, 0.0), 1.0) is dot


def test_enhance_follows_the_settings_and_defaults_change_nothing():
    assert np.array_equal(enhance(FACE, MergeSettings()), FACE)
    s = MergeSettings(sharpen=0.5, motion_blur=1.0, colour_bits=4)
    out = enhance(FACE, s, velocity=(6.0, 0.0))
    expected = degrade(motion_blur(sharpen(FACE, "gaussian", 0.5), (6.0, 0.0), 1.0), 0.0, 0.0, 4)
    assert np.array_equal(out, expected)
