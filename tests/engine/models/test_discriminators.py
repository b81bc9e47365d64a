"""Tests for engine.models.discriminators: logits shapes and the patch discriminator's receptive field."""

import pytest
import torch

from engine.models.discriminators import CodeDiscriminator, PatchDiscriminator


def _field_width(disc: PatchDiscriminator, resolution: int, channels: int) -> int:
    """Width of the input region that one interior logit depends on (from its gradient)."""
    x = torch.rand(1, channels, resolution, resolution, dtype=torch.float64, requires_grad=True)
    logits = disc.double()(x)
    h, w = logits.shape[-2:]
    logits[0, 0, h // 2, w // 2].backward()
    cols = x.grad.abs().sum((0, 1, 2)).nonzero()
    return int(cols.max() - cols.min() + 1)


@pytest.mark.parametrize("patch_size", [8, 12, 16, 24, 32])
def test_patch_logits_see_about_patch_size_pixels(patch_size):
    torch.manual_seed(0)
    disc = PatchDiscriminator(channels=3, patch_size=patch_size, dims=4)
    assert abs(disc.receptive_field - patch_size) <= patch_size / 4
    assert _field_width(disc, 96, 3) == disc.receptive_field


@pytest.mark.parametrize("channels", [3, 1])
def test_patch_discriminator_gives_a_logits_map(channels):
    disc = PatchDiscriminator(channels=channels, patch_size=8, dims=4)
    logits = disc(torch.rand(2, channels, 32, 32))
    assert logits.shape[:2] == (2, 1) and logits.shape[2] == logits.shape[3] >= 4


def test_patch_discriminator_rejects_silly_sizes():
    with pytest.raises(ValueError):
        PatchDiscriminator(3, patch_size=1, dims=4)


@pytest.mark.parametrize("shape", [(16, 4, 4), (16, 1, 1), (8, 5, 5)])
def test_code_discriminator_gives_one_logit_per_code(shape):
    disc = CodeDiscriminator(shape)
    out = disc(torch.rand(3, *shape))
    assert out.shape == (3, 1)
    out.sum().backward()
    assert all(p.grad is not None for p in disc.parameters())
