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
    assert float(face_loss(pred, target, mask)) < 1e-6
    assert float(face_loss(pred, target, None)) > 0.01


def test_mask_loss():
    m = torch.rand(2, 1, 8, 8)
    assert torch.equal(mask_loss(m, m), torch.zeros(2))
    assert (mask_loss(torch.zeros_like(m), torch.ones_like(m)) > 0).all()


def _pair(seed: int, r: int = 32, noise: float = 0.1):
    gen = torch.Generator().manual_seed(seed)
    a = torch.rand(2, 3, r, r, generator=gen)
    return a, (a + noise * torch.randn(a.shape, generator=gen)).clamp(0, 1)


def test_large_faces_add_a_finer_window():
    from engine.train.losses import DSSIM_WEIGHT, structure_loss

    a, b = _pair(2, r=256)
    coarse, fine = dssim_kernel_size(256), dssim_kernel_size(256, 23.2)
    assert (coarse, fine) == (23, 11)
    expected = DSSIM_WEIGHT / 2 * (dssim(a, b, coarse) + dssim(a, b, fine))
    assert torch.allclose(structure_loss(a, b), expected)
    small_a, small_b = _pair(2)
    assert torch.allclose(structure_loss(small_a, small_b), DSSIM_WEIGHT * dssim(small_a, small_b, 3))


def test_ms_ssim_is_zero_for_equal_images_grows_with_noise_and_has_gradients():
    from engine.train.losses import ms_ssim_loss

    a, b = _pair(3, r=64)
    assert torch.allclose(ms_ssim_loss(a, a, 5), torch.zeros(2), atol=1e-5)
    _, worse = _pair(3, r=64, noise=0.3)
    assert (ms_ssim_loss(a, worse, 5) > ms_ssim_loss(a, b, 5)).all()
    pred = b.clone().requires_grad_(True)
    face_loss(pred, a, None, ms_ssim=True).sum().backward()
    assert torch.isfinite(pred.grad).all() and pred.grad.abs().sum() > 0


def test_losses_are_fp32_under_bf16_inputs():
    a, b = _pair(4)
    assert face_loss(a.bfloat16(), b.bfloat16(), None).dtype == torch.float32


def test_priority_counts_only_eyes_and_mouth():
    from engine.train.losses import priority_loss

    a, b = _pair(5)
    prio = torch.zeros(2, 1, 32, 32)
    prio[..., 10:14, 8:24] = 1
    wrong_elsewhere = a.clone()
    wrong_elsewhere[..., 20:, :] = 0
    assert float(priority_loss(wrong_elsewhere, a, prio).sum()) == 0
    assert (priority_loss(b, a, prio) > 0).all()


def test_style_losses():
    from engine.train.losses import background_style_loss, face_style_loss

    a, _ = _pair(6)
    mask = torch.zeros(2, 1, 32, 32)
    mask[..., 8:24, 8:24] = 1
    assert torch.allclose(face_style_loss(a, a, mask, 50.0), torch.zeros(2), atol=1e-6)
    brighter = (a + 0.2).clamp(0, 1)
    assert (face_style_loss(brighter, a, mask, 50.0) > face_style_loss(brighter, a, mask, 5.0)).all()
    # the face style compares statistics, not pixels: a shuffled face has the same mean and spread
    shuffled = a.clone()
    shuffled[..., 8:24, 8:24] = a[..., 8:24, 8:24].flip(-1)
    assert torch.allclose(face_style_loss(shuffled, a, mask, 50.0), torch.zeros(2), atol=1e-5)
    # the background style ignores the face and sees the surroundings
    new_face = a.clone()
    new_face[..., 8:24, 8:24] = 0
    assert float(background_style_loss(new_face, a, mask, 50.0).sum()) < 1e-6
    assert (background_style_loss(brighter, a, mask, 50.0) > 0).all()


def test_gan_losses():
    from engine.train.losses import gan_discriminator_loss, gan_generator_loss

    sure = torch.full((2, 1, 4, 4), 10.0)
    assert float(gan_discriminator_loss(sure, -sure)) < 1e-3 and float(gan_discriminator_loss(-sure, sure)) > 5
    assert (gan_generator_loss(sure) < 1e-3).all() and gan_generator_loss(-sure).shape == (2,)
