"""Steadiness over time: smoothed colour means, mean shifts, the face's motion and the flicker measure."""

import cv2
import numpy as np

from engine.geometry.steady import steady_series
from engine.merge.temporal import face_velocity, flicker, masked_mean, shift_mean, steady_means


def test_steady_means_flatten_noise_and_keep_cuts():
    rng = np.random.default_rng(0)
    frames = list(range(40)) + list(range(50, 80))  # a gap: a cut between two shots
    truth = {f: np.array([60.0, 5.0, 10.0]) if f < 45 else np.array([30.0, -5.0, 0.0]) for f in frames}
    noisy = {f: truth[f] + rng.normal(0, 2.0, 3) for f in frames}
    steady = steady_means(noisy, 3.0)
    assert sorted(steady) == frames

    def jitter(series):  # mean frame-to-frame change within runs
        return np.mean([np.abs(series[f] - series[f - 1]).mean() for f in frames if f - 1 in series])

    assert jitter(steady) < 0.3 * jitter(noisy)
    err = np.mean([np.abs(steady[f] - truth[f]).mean() for f in frames])
    assert err < 0.5 * np.mean([np.abs(noisy[f] - truth[f]).mean() for f in frames])
    # the other shot's colour never leaks across the cut
    assert abs(steady[39][0] - 60) < 3 and abs(steady[50][0] - 30) < 3
    assert steady_means(noisy, 0) == noisy


def test_steady_series_line_fit_keeps_steady_motion_exact():
    moving = {f: np.array([[1.0, 0.0, 2.0 * f], [0.0, 1.0, -f]]) for f in range(12)}
    for f, m in steady_series(moving, 2.0).items():
        np.testing.assert_allclose(m, moving[f], atol=1e-9)


def test_shift_mean_moves_the_masked_mean_to_the_target():
    rng = np.random.default_rng(1)
    face = rng.integers(60, 200, (64, 64, 3)).astype(np.uint8)
    mask = np.zeros((64, 64), np.float32)
    mask[16:48, 16:48] = 1
    current = masked_mean(face, mask)
    target = current + [6.0, -3.0, 4.0]
    out = shift_mean(face, mask, current, target)
    np.testing.assert_allclose(masked_mean(out, mask), target, atol=0.6)
    assert np.array_equal(out[:16], face[:16]), "outside the mask's box the crop is left alone"
    # brightness only: L moves, the colour stays
    light = shift_mean(face, mask, current[:1], current[:1] + 8)
    after = masked_mean(light, mask)
    assert abs(after[0] - current[0] - 8) < 0.6 and np.abs(after[1:] - current[1:]).max() < 1.0
    assert masked_mean(face, np.zeros_like(mask)) is None
    assert shift_mean(face, mask, current, current) is face


def test_face_velocity_is_the_motion_in_crop_pixels():
    def m(frame):  # a face moving 3 px right per frame, shown twice as large in the crop
        return np.array([[2.0, 0.0, -2.0 * (100 + 3 * frame)], [0.0, 2.0, -100.0]])

    track = {f: m(f) for f in range(5)}
    np.testing.assert_allclose(face_velocity(track, 2), (6.0, 0.0), atol=1e-9)
    np.testing.assert_allclose(face_velocity(track, 0), (6.0, 0.0), atol=1e-9)  # one-sided at the start
    assert face_velocity({3: m(3)}, 3) == (0.0, 0.0)
    assert face_velocity(track, 9) == (0.0, 0.0)


def test_flicker_counts_change_inside_the_face_region_only():
    rng = np.random.default_rng(2)
    base = rng.integers(0, 255, (40, 40, 3)).astype(np.uint8)
    region = np.zeros((40, 40), bool)
    region[10:20, 10:20] = True
    still = [base.copy() for _ in range(4)]
    assert flicker(still, [region] * 4) == 0.0
    flashing = [base.copy() for _ in range(4)]
    for i, f in enumerate(flashing):
        f[30:, 30:] = 255 * (i % 2)  # outside the region: ignored
        f[10:20, 10:20] = cv2.add(base[10:20, 10:20], np.full((10, 10, 3), 10 * (i % 2), np.uint8))
    value = flicker(flashing, [region] * 4)
    assert 5 < value <= 10
    assert flicker(flashing[:1], [region]) == 0.0
