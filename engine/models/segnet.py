"""Shared piece: the face segmentation network (a small U-Net over aligned crops) and its config.

The input is an aligned face crop, BGR in 0..1, (B,3,R,R); the output is one logit per pixel,
(B,1,R,R): positive where the pixel belongs to the face (inside the drawn label), negative on hair,
hands, microphones and background. Five stride-2 levels take the receptive field over the whole
crop (the forehead line of a label is an invisible boundary that only the face's overall geometry
tells), and skip connections carry the fine edges (a finger, a strand of hair) back to full size.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from engine.config import check_types, from_dict

LEVELS = 5  # stride-2 steps: the resolution must be a multiple of 2**LEVELS


@dataclass(frozen=True)
class SegNetConfig:
    """Everything needed to rebuild the network; a mask model's checkpoint carries it."""

    resolution: int = 128  # side of the square crop the network sees; 256 on a GPU
    width: int = 16  # channels at full resolution; each coarser level adds `width` (16, 32, 48, ...)

    def __post_init__(self) -> None:
        check_types(self, "mask model setting")
        step = 2**LEVELS
        if self.resolution < step or self.resolution % step:
            raise ValueError(f"mask model resolution must be a multiple of {step}, got {self.resolution}")
        if not 4 <= self.width <= 128:
            raise ValueError(f"mask model width must be within 4..128, got {self.width}")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "SegNetConfig":
        return from_dict(cls, d, "mask model setting")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def channels(self) -> list[int]:
        # the coarse levels are tiny (8x8 at 128 px), so width there is cheap and buys the context
        # that tells a skin-coloured hand from a cheek; the full-resolution levels stay narrow
        return [self.width * m for m in (1, 2, 4, 6, 8, 10)]


class ConvBlock(nn.Module):
    """conv 3x3 -> batch norm -> leaky ReLU, twice (the first may stride down)."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.norm1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(cout)

    def forward(self, x: Tensor) -> Tensor:
        x = F.leaky_relu(self.norm1(self.conv1(x)), 0.1)
        return F.leaky_relu(self.norm2(self.conv2(x)), 0.1)


class UpBlock(nn.Module):
    """Decoder level: the coarser map, projected to the skip's channels at its own (cheap) size,
    upsampled and added to the skip, then one 3x3 block. Adding instead of concatenating halves the
    cost of the full-resolution levels, which dominate the network's time."""

    def __init__(self, coarse: int, fine: int) -> None:
        super().__init__()
        self.project = nn.Conv2d(coarse, fine, 1, bias=False)
        self.conv = nn.Conv2d(fine, fine, 3, 1, 1, bias=False)
        self.norm = nn.BatchNorm2d(fine)

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        x = F.interpolate(self.project(x), size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return F.leaky_relu(self.norm(self.conv(x + skip)), 0.1)


class SegNet(nn.Module):
    """U-Net: an encoder of LEVELS stride-2 blocks, a decoder that upsamples and adds the skips."""

    def __init__(self, config: SegNetConfig) -> None:
        super().__init__()
        self.config = config
        ch = config.channels()
        # + 2 input channels: the pixel's x and y. Crops are aligned, so where a pixel sits says a
        # lot about whether it is face (the forehead line of a label is drawn, not seen)
        self.stem = nn.Sequential(nn.Conv2d(5, ch[0], 3, 1, 1, bias=False), nn.BatchNorm2d(ch[0]), nn.LeakyReLU(0.1))
        self.down = nn.ModuleList(ConvBlock(ch[i], ch[i + 1], stride=2) for i in range(LEVELS))
        self.up = nn.ModuleList(UpBlock(ch[i + 1], ch[i]) for i in range(LEVELS))
        self.head = nn.Conv2d(ch[0], 1, 1)
        self._coords: Tensor | None = None

    def coords(self, x: Tensor) -> Tensor:
        r = x.shape[-1]
        if self._coords is None or self._coords.shape[-1] != r or self._coords.device != x.device:
            line = torch.linspace(-1, 1, r, device=x.device)
            self._coords = torch.stack(torch.meshgrid(line, line, indexing="xy"))[None]
        return self._coords.to(x.dtype).expand(x.shape[0], -1, -1, -1)

    def forward(self, x: Tensor) -> Tensor:
        """Logits (B,1,R,R) for crops (B,3,R,R), BGR in 0..1."""
        # centred input: the first layer's bias need not learn the offset
        x = self.stem(torch.cat([x - 0.5, self.coords(x)], dim=1).contiguous(memory_format=torch.channels_last))
        skips = [x]
        for block in self.down:
            x = block(x)
            skips.append(x)
        skips.pop()  # the deepest map is x itself
        for i in reversed(range(LEVELS)):
            x = self.up[i](x, skips[i])
        return self.head(x)


def build_segnet(config: SegNetConfig) -> SegNet:
    return SegNet(config)
