"""Train stage: the reconstruction losses (structural dissimilarity, pixel error, mask error)."""

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


def dssim_kernel_size(resolution: int) -> int:
    """Window of the structural loss: about resolution / 11.6 (a face feature's scale), odd, at least 3."""
    k = max(3, int(resolution / 11.6))
    return k if k % 2 else k + 1


def _gaussian_window(size: int, sigma: float, channels: int, like: Tensor) -> Tensor:
    x = torch.arange(size, dtype=like.dtype, device=like.device) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).expand(channels, 1, size, size).contiguous()


def dssim(a: Tensor, b: Tensor, kernel_size: int, sigma: float = 1.5) -> Tensor:
    """Per-sample structural dissimilarity (1 - SSIM) / 2 of images (N,C,H,W) in 0..1; shape (N,)."""
    a, b = a.float(), b.float()
    c = a.shape[1]
    w = _gaussian_window(kernel_size, sigma, c, a)

    def blur(x: Tensor) -> Tensor:
        return F.conv2d(x, w, groups=c)

    c1, c2 = 0.01**2, 0.03**2
    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a**2
    var_b = blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    ssim = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return ((1 - ssim) / 2).mean(dim=(1, 2, 3))


def face_loss(pred: Tensor, target: Tensor, mask: Tensor | None, kernel_size: int) -> Tensor:
    """Reconstruction loss per sample (N,); with a mask, only the face inside it counts."""
    pred, target = pred.float(), target.float()
    if mask is not None:
        # multiplying both sides (not just the error) keeps DSSIM's windows from seeing background
        mask = mask.float()
        pred, target = pred * mask, target * mask
    return DSSIM_WEIGHT * dssim(pred, target, kernel_size) + MSE_WEIGHT * ((pred - target) ** 2).mean(dim=(1, 2, 3))


def mask_loss(pred_mask: Tensor, target_mask: Tensor) -> Tensor:
    """Per-sample squared error (N,) between the predicted and the target face mask."""
    return MASK_WEIGHT * ((pred_mask.float() - target_mask.float()) ** 2).mean(dim=(1, 2, 3))
