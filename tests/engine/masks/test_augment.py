"""Tests for engine.masks.augment: geometry moves image and mask together, photometric changes the
image alone, the background swap keeps the face, and the prefetcher hands batches (and errors) over."""

import numpy as np
import pytest

from engine.masks.augment import MaskAugmentation, PairAugmenter, Prefetcher, occluders_of

NONE = dict(warp=0.0, background=0.0, flare=0.0, blur=0.0, noise=0.0, jpeg=0.0, colour=0.0)


def disc(n: int = 3, r: int = 64):
    """Grey crops with a white disc, whose mask is the disc."""
    ys, xs = np.mgrid[0:r, 0:r]
    mask = (((xs - r / 2) ** 2 + (ys - r / 2) ** 2) < (r / 4) ** 2).astype(np.float32)
    images = np.repeat((60 + 180 * mask)[None, ..., None], 3, axis=3).astype(np.uint8)
    return np.repeat(images, n, axis=0), np.repeat(mask[None], n, axis=0)


def test_batches_have_the_right_shapes_and_ranges():
    images, masks = disc()
    aug = PairAugmenter(images, masks, seed=0)
    x, y = aug.batch(5)
    assert x.shape == (5, 64, 64, 3) and x.dtype == np.uint8
    assert y.shape == (5, 64, 64) and y.dtype == np.float32 and 0 <= y.min() and y.max() <= 1


def test_geometry_moves_image_and_mask_together():
    images, masks = disc()
    aug = PairAugmenter(images, masks, MaskAugmentation(rotation_deg=30, scale=0.2, shift=0.2, warp=1.0,
                                                       warp_strength=0.15, **{k: v for k, v in NONE.items() if k != "warp"}), seed=1)
    for _ in range(4):
        x, y = aug.batch(3)
        bright = (x[..., 0] > 150).astype(np.float32)
        assert np.abs(bright - (y > 0.5)).mean() < 0.01  # the disc and its mask stay on each other
        assert np.abs(y - masks).mean() > 0.005  # and they did move


def test_photometric_changes_only_the_image_and_background_swap_keeps_the_face():
    images, masks = disc()
    aug = PairAugmenter(images, masks, MaskAugmentation(rotation_deg=0, scale=0, shift=0, flip=False, warp=0.0,
                                                       background=1.0, flare=0, blur=0, noise=0, jpeg=0, colour=0), seed=2)
    x, y = aug.batch(6)
    inside, outside = masks[0] > 0.99, masks[0] < 0.01
    assert np.allclose(y, masks[0], atol=1e-4)
    assert np.abs(x[:, inside].astype(int) - 240).max() <= 1  # the face stays
    assert np.abs(x[:, outside].astype(int) - 60).mean() > 10  # the background is replaced
    full = PairAugmenter(images, masks, MaskAugmentation(flare=1.0, blur=1.0, noise=1.0, jpeg=1.0, colour=1.0), seed=3)
    x2, _ = full.batch(4)
    assert x2.std() > 0 and not np.array_equal(x2[0], x2[1])


def test_bad_inputs_are_refused():
    images, masks = disc()
    with pytest.raises(ValueError, match="uint8"):
        PairAugmenter(images.astype(np.float32), masks)
    with pytest.raises(ValueError, match="masks"):
        PairAugmenter(images, masks[:, :32])


def test_prefetcher_hands_over_batches_and_errors():
    images, masks = disc()
    aug = PairAugmenter(images, masks, seed=0)
    pre = Prefetcher(lambda: aug.batch(2))
    try:
        x, y = pre.next()
        assert x.shape == (2, 64, 64, 3) and y.shape == (2, 64, 64)
    finally:
        pre.close()

    def broken():
        raise RuntimeError("boom")

    pre = Prefetcher(broken)
    with pytest.raises(RuntimeError, match="boom"):
        pre.next()
    pre.close()


def test_occluders_are_a_labels_concavities_and_get_pasted_onto_other_faces():
    images, masks = disc(2)
    assert occluders_of(masks[0]).sum() == 0  # a convex label hides nothing
    notched = masks.copy()
    notched[1, 36:44, 20:40] = 0  # a bar across the second disc: an occluder
    images[1][notched[1] < masks[1]] = (0, 0, 255)
    holes = occluders_of(notched[1])
    assert holes[38:42, 26:36].min() > 0.9 and holes[notched[1] > 0.5].max() < 0.3 and holes[masks[1] == 0].max() == 0
    aug = PairAugmenter(images, notched, MaskAugmentation(paste=1.0, rotation_deg=0, scale=0, shift=0, flip=False,
                                                         **NONE), seed=0)
    pasted = 0
    for _ in range(6):
        x, y = aug.batch(2)
        red = (x[..., 2] > 200) & (x[..., 0] < 50)
        assert (y[red] < 0.5).mean() > 0.9  # wherever the red bar landed, the mask says "not face"
        pasted += int(red.any(axis=(1, 2)).sum())
    assert pasted == 12  # every draw got the bar (only the second face has an occluder to give)
