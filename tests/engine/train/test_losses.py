"""Tests for engine.train.losses: DSSIM, the masked face loss and the mask loss."""

import torch

from engine.train.losses import dssim, dssim_kernel_size, face_loss, mask_loss


def test_kernel_size_follows_the_resolution():
    assert dssim_kernel_size(64) == 5 and dssim_kernel_size(128) == 11 and dssim_kernel_size(16) == 3


def test_dssim_is_zero_for_equal_images_and_grows_with_noise():
    gen = torch.Generator().manual_seed(0)
    a = torch.rand(2, 3, 32, 32, generator=gen)
    assert torch.allclose(dssim(a, a, 5), torch.zeros(2), atol=1e-6)
    small = dssim(a, (a + 0.05 * torch.randn(a.shape, generator=gen)).clamp(0, 1), 5)
    large = dssim(a, (a + 0.3 * torch.randn(a.shape, generator=gen)).clamp(0, 1), 5)
    assert (small > 0).all() and (large > small).all() and (large <= 1).all()


def test_masked_face_loss_ignores_the_background():
    gen = torch.Generator().manual_seed(1)
    target = torch.rand(1, 3, 32, 32, generator=gen)
    mask = torch.zeros(1, 1, 32, 32)
    mask[..., 8:24, 8:24] = 1
    pred = target.clone()
    pred[..., :4, :] = 0  # wrong only outside the mask
    assert float(face_loss(pred, target, mask, 5)) < 1e-6
    assert float(face_loss(pred, target, None, 5)) > 0.01


def test_mask_loss():
    m = torch.rand(2, 1, 8, 8)
    assert torch.equal(mask_loss(m, m), torch.zeros(2))
    assert (mask_loss(torch.zeros_like(m), torch.ones_like(m)) > 0).all()
