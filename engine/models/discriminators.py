"""Shared piece: the discriminators of adversarial training (GAN sharpening and true-face power).

PatchDiscriminator judges every patch of a face as real or drawn: its logits map has one value per
patch, so it rewards sharp local texture (pores, hair, eyelashes) without caring about the whole
face's layout, which the reconstruction losses already teach. CodeDiscriminator tells source codes
from destination codes; pushing destination codes to fool it makes the swap look more like the
source (DeepFaceLab's "true face").
"""

from __future__ import annotations

from torch import Tensor, nn

from engine.models.layers import act


def _receptive_field(strided: int, plain: int) -> int:
    """Receptive field of `strided` stride-2 3x3 convolutions then `plain` stride-1 3x3 ones."""
    jump = 2 ** strided
    return (2 * jump - 1) + plain * 2 * jump


def _layout(patch_size: int) -> tuple[int, int]:
    """(strided, plain) convolution counts whose receptive field is closest to `patch_size`.

    Strided layers are cheap (each quarters the map) and widen the field fastest; plain ones at the
    coarsest level fill the gap (at most 3 of them). Ties go to the cheaper, more strided layout.
    """
    options = [(s, p) for s in range(1, 9) for p in range(4)]
    return min(options, key=lambda sp: (abs(_receptive_field(*sp) - patch_size), -sp[0], sp[1]))


class PatchDiscriminator(nn.Module):
    """Faces (N, channels, R, R) 0..1 -> logits (N, 1, h, w), one per ~patch_size-pixel patch."""

    def __init__(self, channels: int, patch_size: int, dims: int) -> None:
        super().__init__()
        if patch_size < 3 or dims < 1 or channels < 1:
            raise ValueError(f"patch discriminator needs patch_size >= 3 and dims >= 1, got {patch_size}, {dims}")
        strided, plain = _layout(patch_size)
        self.receptive_field = _receptive_field(strided, plain)
        layers: list[nn.Module] = []
        cin = channels
        for i in range(strided):
            cout = dims * min(2 ** i, 8)  # doubled per level, capped: the coarse levels see few pixels
            layers.append(nn.Conv2d(cin, cout, 3, stride=2, padding=1))
            cin = cout
        layers.extend(nn.Conv2d(cin, cin, 3, padding=1) for _ in range(plain))
        self.convs = nn.ModuleList(layers)
        self.out = nn.Conv2d(cin, 1, 1)  # 1x1: adds nothing to the receptive field

    def forward(self, x: Tensor) -> Tensor:
        # inputs are 0..1; centring them helps the first layer's leaky activations
        x = x * 2 - 1
        for conv in self.convs:
            x = act(conv(x))
        return self.out(x)


class CodeDiscriminator(nn.Module):
    """Latent codes (N, *code_shape) -> logits (N, 1): high for source codes, low for destination."""

    def __init__(self, code_shape: tuple[int, ...], dims: int = 256) -> None:
        super().__init__()
        if len(code_shape) != 3:
            raise ValueError(f"code_shape must be (channels, height, width), got {code_shape}")
        ch, h, w = code_shape
        width = min(dims, max(ch, 16))
        self.conv1 = nn.Conv2d(ch, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, width, 3, stride=2, padding=1)
        self.dense = nn.Linear(width * ((h + 1) // 2) * ((w + 1) // 2), 1)

    def forward(self, z: Tensor) -> Tensor:
        x = act(self.conv2(act(self.conv1(z))))
        return self.dense(x.flatten(1))
