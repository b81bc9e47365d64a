"""Tests for engine.colour.transfer.hist_match: per-channel histogram matching, masked and thresholded."""

import numpy as np
import pytest

from engine.colour.transfer import hist_match, transfer_colour


def _image(seed: int, means: tuple, spreads: tuple, size: int = 96) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(rng.normal(means, spreads, (size, size, 3)), 0, 255).astype(np.uint8)


def _cdf(channel: np.ndarray) -> np.ndarray:
    return np.cumsum(np.bincount(channel.reshape(-1), minlength=256)) / channel.size


SRC = _image(0, (60, 120, 180), (15, 30, 10))
TGT = _image(1, (170, 90, 100), (35, 10, 25))


def test_each_channel_takes_the_target_histogram():
    out = hist_match(SRC, TGT)
    assert out.shape == SRC.shape and out.dtype == np.uint8
    for c in range(3):
        # Kolmogorov distance between the output's and the target's distributions: a few percent,
        # against over half before
        assert np.abs(_cdf(out[..., c]) - _cdf(TGT[..., c])).max() < 0.05
        assert np.abs(_cdf(SRC[..., c]) - _cdf(TGT[..., c])).max() > 0.5
    assert np.allclose(out.reshape(-1, 3).mean(0), TGT.reshape(-1, 3).mean(0), atol=1.5)


def test_the_map_is_monotone_and_equal_images_map_to_themselves():
    out = hist_match(SRC, TGT)
    for c in range(3):
        order = np.argsort(SRC[..., c].reshape(-1), kind="stable")
        assert (np.diff(out[..., c].reshape(-1)[order].astype(int)) >= 0).all()
    assert np.array_equal(hist_match(SRC, SRC), SRC)


def test_masks_choose_the_pixels_that_count():
    # the target's left half is the face; its right half is a white background that must not count
    target = TGT.copy()
    target[:, 48:] = 255
    mask = np.zeros(target.shape[:2], np.float32)
    mask[:, :48] = 1
    masked = hist_match(SRC, target, mask, mask)
    whole = hist_match(SRC, target)
    face_mean = TGT[:, :48].reshape(-1, 3).mean(0)
    assert np.abs(masked[:, :48].reshape(-1, 3).mean(0) - face_mean).max() < 4
    assert np.abs(whole[:, :48].reshape(-1, 3).mean(0) - face_mean).max() > 30


def test_a_lower_threshold_leaves_the_top_of_the_target_unused():
    full, clipped = hist_match(SRC, TGT, threshold=255), hist_match(SRC, TGT, threshold=200)
    for c in range(3):
        assert clipped[..., c].max() < full[..., c].max() or full[..., c].max() == TGT[..., c].min()
        assert clipped[..., c].astype(float).mean() < full[..., c].astype(float).mean()
        # the brightest source pixels land near the target's 200/255 quantile, not its top
        assert np.percentile(clipped[..., c], 99.5) <= np.percentile(TGT[..., c], 200 / 255 * 100) + 2


def test_hist_is_a_transfer_method():
    assert np.array_equal(transfer_colour(SRC, TGT, "hist"), hist_match(SRC, TGT))


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError):
        hist_match(SRC[..., 0], TGT)
    with pytest.raises(ValueError):
        hist_match(SRC, TGT, threshold=300)
