"""Shared piece: the face-swap autoencoder network ("df": shared encoder + inter, a decoder per identity).

Both identities go through one encoder and one bottleneck ("inter"), so the latent code has to
describe pose, expression and lighting in a way both decoders read. Each decoder only ever learns to
draw its own person; feeding it the other person's code is the swap.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from engine.config import check_types, from_dict

ARCHS = ("df",)
SIDES = ("src", "dst")


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild the network; a checkpoint carries it."""

    arch: str = "df"
    resolution: int = 64  # side of the square face the network sees; a multiple of 16
    ae_dims: int = 128  # width of the bottleneck vector shared by both identities
    # e_dims 16 was measured *slower* than 32 on CPU: oneDNN's bf16 kernels do badly on narrow layers
    e_dims: int = 32  # encoder width: channels of its first layer, doubled at each of its 4 levels
    # 16 rather than 32: on a 2-core CPU it runs 1.5x the steps and, in the same 300 CPU-seconds on
    # the demo pair, ends at a lower loss (0.25 vs 0.30); longer runs may favour 32 (not measured)
    d_dims: int = 16  # decoder width at full resolution, doubled at each coarser level
    d_mask_dims: int = 8  # same for the mask branch, which only draws a smooth blob

    def __post_init__(self) -> None:
        check_types(self, "model setting")
        if self.arch not in ARCHS:
            raise ValueError(f"unknown model arch {self.arch!r}; expected one of {', '.join(ARCHS)}")
        if self.resolution < 16 or self.resolution % 16:
            raise ValueError(f"resolution must be a multiple of 16 (at least 16), got {self.resolution}")
        for name in ("ae_dims", "e_dims", "d_dims", "d_mask_dims"):
            if getattr(self, name) < 1:
                raise ValueError(f"model setting {name!r} must be at least 1, got {getattr(self, name)}")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelConfig":
        return from_dict(cls, d, "model setting")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _act(x: Tensor) -> Tensor:
    return F.leaky_relu(x, 0.1)


class Downscale(nn.Module):
    """Encoder layer: a stride-2 3x3 convolution halving the image side."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        # 3x3 rather than DeepFaceLab's 5x5: oneDNN's backward pass of strided 5x5 convolutions on
        # tiny maps was ~9% of a whole training step on CPU, for no visible gain at 64-96 px
        self.conv = nn.Conv2d(cin, cout, 3, stride=2, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return _act(self.conv(x))


class Upscale(nn.Module):
    """Decoder layer: a 3x3 convolution to 4x the channels, then pixel shuffle doubling the side."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        # pixel shuffle instead of transposed convolution: no checkerboard artefacts
        self.conv = nn.Conv2d(cin, cout * 4, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return F.pixel_shuffle(_act(self.conv(x)), 2)


class ResidualBlock(nn.Module):
    """Decoder layer: two 3x3 convolutions added back onto their input (adds detail, keeps gradients)."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(ch, ch, 3, padding=1)
        self.conv2 = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return _act(x + self.conv2(_act(self.conv1(x))))


class Encoder(nn.Module):
    """Shared layer stack: face image (3, R, R) -> feature map (8*e_dims, R/16, R/16), flattened."""

    def __init__(self, e_dims: int) -> None:
        super().__init__()
        widths = [3, e_dims, e_dims * 2, e_dims * 4, e_dims * 8]
        self.down = nn.Sequential(*(Downscale(a, b) for a, b in zip(widths, widths[1:])))

    def forward(self, x: Tensor) -> Tensor:
        return self.down(x).flatten(1)


class Inter(nn.Module):
    """Shared bottleneck: encoder features -> ae_dims vector -> feature map (ae_dims, R/8, R/8)."""

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
    """Per-identity layer stack: inter features -> BGR face (3, R, R) and face mask (1, R, R), both 0..1."""

    def __init__(self, in_ch: int, d_dims: int, d_mask_dims: int) -> None:
        super().__init__()
        widths = [in_ch, d_dims * 4, d_dims * 2, d_dims]
        self.rgb = nn.Sequential(*(
            layer for a, b in zip(widths, widths[1:]) for layer in (Upscale(a, b), ResidualBlock(b))
        ))
        self.rgb_out = nn.Conv2d(d_dims, 3, 3, padding=1)
        mwidths = [in_ch, d_mask_dims * 4, d_mask_dims * 2, d_mask_dims]
        self.mask = nn.Sequential(*(Upscale(a, b) for a, b in zip(mwidths, mwidths[1:])))
        self.mask_out = nn.Conv2d(d_mask_dims, 1, 3, padding=1)

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        rgb = torch.sigmoid(self.rgb_out(self.rgb(z)))
        mask = torch.sigmoid(self.mask_out(self.mask(z)))
        return rgb, mask


class DFAutoencoder(nn.Module):
    """The whole network: encoder and inter shared, decoder_src and decoder_dst one per identity."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        lowest = config.resolution // 16
        self.encoder = Encoder(config.e_dims)
        self.inter = Inter(config.e_dims * 8 * lowest * lowest, config.ae_dims, lowest)
        self.decoder_src = Decoder(config.ae_dims, config.d_dims, config.d_mask_dims)
        self.decoder_dst = Decoder(config.ae_dims, config.d_dims, config.d_mask_dims)

    def encode(self, x: Tensor) -> Tensor:
        """(N,3,R,R) faces in 0..1 -> shared code (N, ae_dims, R/8, R/8)."""
        r = self.config.resolution
        if x.dim() != 4 or x.shape[1] != 3 or x.shape[2] != r or x.shape[3] != r:
            raise ValueError(f"expected faces of shape (N, 3, {r}, {r}), got {tuple(x.shape)}")
        return self.inter(self.encoder(x))

    def decode(self, z: Tensor, side: str) -> tuple[Tensor, Tensor]:
        if side == "src":
            return self.decoder_src(z)
        if side == "dst":
            return self.decoder_dst(z)
        raise ValueError(f"side must be 'src' or 'dst', got {side!r}")

    def forward(self, x: Tensor, side: str) -> tuple[Tensor, Tensor]:
        """Faces (N,3,R,R) BGR 0..1 -> (faces drawn by `side`'s decoder (N,3,R,R), masks (N,1,R,R))."""
        return self.decode(self.encode(x), side)


def build_model(config: ModelConfig) -> DFAutoencoder:
    if config.arch != "df":  # ModelConfig validates; this guards against a new arch with no builder
        raise ValueError(f"no builder for arch {config.arch!r}")
    return DFAutoencoder(config)
