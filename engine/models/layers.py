"""Shared piece: the blocks the face-swap autoencoders are built from (encoder, bottleneck, decoder).

Performance notes that shaped them (all measured on CPU with oneDNN, where the project trains most):
3x3 strided convolutions rather than 5x5, pixel shuffle rather than transposed convolutions, and
nothing that breaks the channels_last layout between convolutions.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F


def act(x: Tensor) -> Tensor:
    return F.leaky_relu(x, 0.1)


def pixel_norm(x: Tensor, dim: int = 1, eps: float = 1e-6) -> Tensor:
    """Scale each sample's features to unit root-mean-square along `dim` (the "U" variants' latent)."""
    return x * torch.rsqrt(x.pow(2).mean(dim, keepdim=True) + eps)


class Downscale(nn.Module):
    """Encoder layer: a stride-2 3x3 convolution halving the image side."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        # 3x3 rather than DeepFaceLab's 5x5: oneDNN's backward pass of strided 5x5 convolutions on
        # tiny maps was ~9% of a whole training step on CPU, for no visible gain at 64-96 px
        self.conv = nn.Conv2d(cin, cout, 3, stride=2, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return act(self.conv(x))


class Upscale(nn.Module):
    """Decoder layer: a 3x3 convolution to 4x the channels, then pixel shuffle doubling the side."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        # pixel shuffle instead of transposed convolution: no checkerboard artefacts
        self.conv = nn.Conv2d(cin, cout * 4, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return F.pixel_shuffle(act(self.conv(x)), 2)


class ResidualBlock(nn.Module):
    """Two 3x3 convolutions added back onto their input (adds detail, keeps gradients flowing)."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(ch, ch, 3, padding=1)
        self.conv2 = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return act(x + self.conv2(act(self.conv1(x))))


class Encoder(nn.Module):
    """Shared layer stack: face image (C, R, R) -> feature map (8*e_dims, R/16, R/16), flattened.

    `residual` (the "T" variants) adds a residual block after each level: more depth at the same
    resolution. `normalise` (the "U" variants) pixel-normalises the flattened features, which keeps
    the bottleneck's input on one scale whatever the lighting and so steadies long runs.
    """

    def __init__(self, channels: int, e_dims: int, residual: bool = False, normalise: bool = False) -> None:
        super().__init__()
        widths = [channels, e_dims, e_dims * 2, e_dims * 4, e_dims * 8]
        layers: list[nn.Module] = []
        for a, b in zip(widths, widths[1:]):
            layers.append(Downscale(a, b))
            if residual:
                layers.append(ResidualBlock(b))
        self.down = nn.Sequential(*layers)
        self.normalise = normalise

    def forward(self, x: Tensor) -> Tensor:
        x = self.down(x).flatten(1)
        return pixel_norm(x) if self.normalise else x


class Inter(nn.Module):
    """Bottleneck: encoder features -> ae_dims vector -> feature map (ae_dims, 2*lowest, 2*lowest)."""

    def __init__(self, in_features: int, ae_dims: int, lowest: int) -> None:
        super().__init__()
        self.lowest = lowest
        self.ae_dims = ae_dims
        self.dense1 = nn.Linear(in_features, ae_dims)
        self.dense2 = nn.Linear(ae_dims, lowest * lowest * ae_dims)
        self.up = Upscale(ae_dims, ae_dims)

    def forward(self, x: Tensor) -> Tensor:
        # no activation between the two dense layers: together they are a low-rank linear map,
        # which is what makes the code narrow enough that both decoders must share its meaning
        x = self.dense2(self.dense1(x))
        return self.up(x.view(-1, self.ae_dims, self.lowest, self.lowest))


class Decoder(nn.Module):
    """Layer stack: code (in_ch, L, L) -> face (channels, 8L, 8L) and mask (1, 8L, 8L), both 0..1.

    `residual_blocks` per level (1, or 2 for "T"). `depth_to_space` (the "D" variants): the last
    convolution draws 4x the channels and pixel shuffle turns them into a map of twice the side, so
    the decoder's three levels run at half the output resolution (2x the pixels for ~1x the cost).
    """

    def __init__(self, in_ch: int, d_dims: int, d_mask_dims: int, channels: int = 3,
                 residual_blocks: int = 1, depth_to_space: bool = False) -> None:
        super().__init__()
        self.depth_to_space = depth_to_space
        scale = 4 if depth_to_space else 1
        widths = [in_ch, d_dims * 4, d_dims * 2, d_dims]
        layers: list[nn.Module] = []
        for a, b in zip(widths, widths[1:]):
            layers.append(Upscale(a, b))
            layers.extend(ResidualBlock(b) for _ in range(residual_blocks))
        self.rgb = nn.Sequential(*layers)
        self.rgb_out = nn.Conv2d(d_dims, channels * scale, 3, padding=1)
        mwidths = [in_ch, d_mask_dims * 4, d_mask_dims * 2, d_mask_dims]
        self.mask = nn.Sequential(*(Upscale(a, b) for a, b in zip(mwidths, mwidths[1:])))
        self.mask_out = nn.Conv2d(d_mask_dims, scale, 3, padding=1)

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        rgb = self.rgb_out(self.rgb(z))
        mask = self.mask_out(self.mask(z))
        if self.depth_to_space:
            rgb, mask = F.pixel_shuffle(rgb, 2), F.pixel_shuffle(mask, 2)
        return torch.sigmoid(rgb), torch.sigmoid(mask)
