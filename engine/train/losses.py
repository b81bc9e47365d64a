"""Train stage: the training losses (structure, pixels, mask, eyes and mouth, style, adversarial).

Every function casts to fp32 first: under bf16 autocast the predictions arrive in bf16, and sums
over a face in bf16 lose exactly the small errors the late training steps are about.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as F

# Both terms get the same weight, so neither dominates: DSSIM pulls structure (edges, features),
# the squared error pulls flat colour, which DSSIM alone leaves drifting. Adam is invariant to the
# overall scale, so the factor 10 only puts the reported figures on the scale DeepFaceLab users know.
DSSIM_WEIGHT = 10.0
MSE_WEIGHT = 10.0
MASK_WEIGHT = 10.0
# An L1 term over the eyes-and-mouth mask only (a few % of the face), so it has to be large to matter
PRIORITY_WEIGHT = 300.0
# Style powers are 0..100 as users know them; at 100 a mean/std gap of 0.01 costs ~0.01 of loss
STYLE_WEIGHT = 100.0
SECOND_SCALE_FROM = 256  # from this resolution up, a second, finer DSSIM window joins the first
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)  # the standard 5-scale weights


def dssim_kernel_size(resolution: int, divisor: float = 11.6) -> int:
    """Window of the structural loss: about resolution / divisor (a face feature's scale), odd, >= 3."""
    k = max(3, int(resolution / divisor))
    return k if k % 2 else k + 1


def _gaussian_taps(size: int, sigma: float, like: Tensor) -> Tensor:
    x = torch.arange(size, dtype=like.dtype, device=like.device) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def _ssim_parts(a: Tensor, b: Tensor, kernel_size: int, sigma: float) -> tuple[Tensor, Tensor]:
    """SSIM's luminance and contrast-structure maps of (N,C,H,W) images in 0..1."""
    c = a.shape[1]
    # the five local means in one separable pass (a k x 1 then a 1 x k depthwise convolution):
    # the square 11x11 windows of a 128 px model were ~6% of a whole training step, this is ~1/4 of that
    stacked = torch.cat([a, b, a * a, b * b, a * b], dim=1)
    g = _gaussian_taps(kernel_size, sigma, a)
    blurred = F.conv2d(stacked, g.view(1, 1, -1, 1).expand(5 * c, 1, -1, 1), groups=5 * c)
    blurred = F.conv2d(blurred, g.view(1, 1, 1, -1).expand(5 * c, 1, 1, -1), groups=5 * c)
    mu_a, mu_b, aa, bb, ab = blurred.split(c, dim=1)

    c1, c2 = 0.01**2, 0.03**2
    var_a = aa - mu_a**2
    var_b = bb - mu_b**2
    cov = ab - mu_a * mu_b
    luminance = (2 * mu_a * mu_b + c1) / (mu_a**2 + mu_b**2 + c1)
    contrast_structure = (2 * cov + c2) / (var_a + var_b + c2)
    return luminance, contrast_structure


def dssim(a: Tensor, b: Tensor, kernel_size: int, sigma: float = 1.5) -> Tensor:
    """Per-sample structural dissimilarity (1 - SSIM) / 2 of images (N,C,H,W) in 0..1; shape (N,)."""
    luminance, cs = _ssim_parts(a.float(), b.float(), kernel_size, sigma)
    return ((1 - luminance * cs) / 2).mean(dim=(1, 2, 3))


def ms_ssim_loss(a: Tensor, b: Tensor, kernel_size: int, sigma: float = 1.5) -> Tensor:
    """Per-sample 1 - multi-scale SSIM (N,): structure compared at up to 5 halvings of the image.

    Scales stop where the image gets smaller than the window, so small faces use fewer of them
    (the weights are renormalised).
    """
    a, b = a.float(), b.float()
    scales = 1
    while scales < len(MS_SSIM_WEIGHTS) and min(a.shape[-2:]) // 2**scales >= kernel_size:
        scales += 1
    weights = torch.tensor(MS_SSIM_WEIGHTS[:scales], device=a.device)
    weights = weights / weights.sum()
    value = torch.ones(a.shape[0], device=a.device)
    for i in range(scales):
        luminance, cs = _ssim_parts(a, b, kernel_size, sigma)
        # clamped: a negative cs raised to a fractional power is NaN, and 0 has an infinite slope
        part = (luminance * cs if i == scales - 1 else cs).mean(dim=(1, 2, 3)).clamp(min=1e-4)
        value = value * part ** weights[i]
        if i < scales - 1:
            a, b = F.avg_pool2d(a, 2), F.avg_pool2d(b, 2)
    return 1 - value


def structure_loss(pred: Tensor, target: Tensor, ms_ssim: bool = False) -> Tensor:
    """The weighted structural term per sample (N,): DSSIM at ~res/11.6, plus ~res/23.2 from 256 px."""
    res = pred.shape[-1]
    k = dssim_kernel_size(res)
    if ms_ssim:
        return DSSIM_WEIGHT * ms_ssim_loss(pred, target, k)
    if res < SECOND_SCALE_FROM:
        return DSSIM_WEIGHT * dssim(pred, target, k)
    # large faces: the coarse window alone leaves pores and lashes soft; split the weight over two
    return DSSIM_WEIGHT / 2 * (dssim(pred, target, k) + dssim(pred, target, dssim_kernel_size(res, 23.2)))


def face_loss(pred: Tensor, target: Tensor, mask: Tensor | None, ms_ssim: bool = False) -> Tensor:
    """Reconstruction loss per sample (N,); with a mask, only the face inside it counts. The DSSIM
    windows follow from the image's resolution (structure_loss)."""
    pred, target = pred.float(), target.float()
    if mask is not None:
        # multiplying both sides (not just the error) keeps DSSIM's windows from seeing background
        mask = mask.float()
        pred, target = pred * mask, target * mask
    return structure_loss(pred, target, ms_ssim) + MSE_WEIGHT * ((pred - target) ** 2).mean(dim=(1, 2, 3))


def mask_loss(pred_mask: Tensor, target_mask: Tensor) -> Tensor:
    """Per-sample squared error (N,) between the predicted and the target face mask."""
    return MASK_WEIGHT * ((pred_mask.float() - target_mask.float()) ** 2).mean(dim=(1, 2, 3))


def priority_loss(pred: Tensor, target: Tensor, priority: Tensor) -> Tensor:
    """Per-sample weighted L1 (N,) inside the eyes-and-mouth mask: the parts a viewer looks at first."""
    priority = priority.float()
    return PRIORITY_WEIGHT * ((pred.float() - target.float()).abs() * priority).mean(dim=(1, 2, 3))


def _masked_stats(x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Per-sample, per-channel mean and standard deviation of x (N,C,H,W) weighted by mask (N,1,H,W)."""
    total = mask.sum(dim=(2, 3)).clamp(min=1e-3)
    mean = (x * mask).sum(dim=(2, 3)) / total
    var = (((x - mean[..., None, None]) ** 2) * mask).sum(dim=(2, 3)) / total
    return mean, (var + 1e-6).sqrt()


def face_style_loss(swap: Tensor, dst_target: Tensor, dst_mask: Tensor, power: float) -> Tensor:
    """Per-sample (N,): the swap's colour mean and spread inside the face match the destination's.

    The swap is the destination's pose drawn as the source; matching the first two moments of its
    pixels to the destination face's carries over lighting and skin tone, not identity.
    """
    swap, dst_target, dst_mask = swap.float(), dst_target.float(), dst_mask.float()
    m_swap, s_swap = _masked_stats(swap, dst_mask)
    m_dst, s_dst = _masked_stats(dst_target, dst_mask)
    gap = ((m_swap - m_dst) ** 2 + (s_swap - s_dst) ** 2).mean(dim=1)
    return power / 100 * STYLE_WEIGHT * gap


def background_style_loss(swap: Tensor, dst_target: Tensor, dst_mask: Tensor, power: float) -> Tensor:
    """Per-sample (N,): outside the face, the swap reproduces the destination (DSSIM + MSE there)."""
    outside = 1 - dst_mask.float()
    return power / 100 * face_loss(swap, dst_target, outside)


def gan_discriminator_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """The discriminator learns real -> 1, generated -> 0 (scalar)."""
    real_logits, fake_logits = real_logits.float(), fake_logits.float()
    return (F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
            + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))) / 2


def gan_generator_loss(fake_logits: Tensor) -> Tensor:
    """The generator is rewarded when the discriminator calls its output real (per sample, (N,))."""
    fake_logits = fake_logits.float()
    loss = F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits), reduction="none")
    return loss.flatten(1).mean(dim=1)
