"""Shared piece: the face-swap autoencoders ("df" and "liae", with the variants u, d and t).

DF: one encoder and one bottleneck ("inter") shared by both identities, a decoder per identity.
Both identities go through the same code, so it has to describe pose, expression and lighting in a
way both decoders read; each decoder only ever learns to draw its own person, and feeding it the
other person's code is the swap.

LIAE: one encoder, two bottlenecks and one decoder. inter_ab sees both identities, inter_b only the
destination; a destination face is drawn from cat(inter_b, inter_ab) and a source face from
cat(inter_ab, inter_ab), so drawing a destination face "as the source" is the swap. It tends to
follow the destination's lighting and expression more closely than DF, at a weaker likeness.

Variants, combinable in this order: u (pixel-normalised latent), d (decoder ends in depth-to-space:
double the resolution for about the same decoder cost), t (deeper: residual blocks in the encoder
and two per decoder level).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from engine.config import check_types, from_dict
from engine.models.layers import Decoder, Encoder, Inter

BASES = ("df", "liae")
VARIANTS = "udt"  # the letters an arch may carry after "-", in this order
SIDES = ("src", "dst")
_ARCH = re.compile(r"^(df|liae)(?:-(u?d?t?))?$")


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild the network; a checkpoint carries it."""

    arch: str = "df"  # "df" | "liae", optionally "-" and any of u, d, t in that order ("liae-udt")
    resolution: int = 64  # side of the square face the network sees; a multiple of 16 (32 with "d")
    ae_dims: int = 128  # width of the bottleneck vector shared by both identities
    # e_dims 16 was measured *slower* than 32 on CPU: oneDNN's bf16 kernels do badly on narrow layers
    e_dims: int = 32  # encoder width: channels of its first layer, doubled at each of its 4 levels
    # 16 rather than 32: on a 2-core CPU it runs 1.5x the steps and, in the same 300 CPU-seconds on
    # the demo pair, ends at a lower loss (0.25 vs 0.30); longer runs may favour 32 (not measured)
    d_dims: int = 16  # decoder width at full resolution, doubled at each coarser level
    d_mask_dims: int = 8  # same for the mask branch, which only draws a smooth blob
    channels: int = 3  # 3 = BGR; 1 = grayscale (about 3x cheaper input/output; colour comes back at merge)

    def __post_init__(self) -> None:
        check_types(self, "model setting")
        match = _ARCH.match(self.arch)
        if match is None or match.group(2) == "":
            raise ValueError(
                f"unknown model arch {self.arch!r}; expected df or liae, optionally followed by '-' and "
                f"any of the letters u, d, t in that order (e.g. 'liae-ud')"
            )
        step = 32 if "d" in self.variants else 16
        if self.resolution < 16 or self.resolution > 640 or self.resolution % step:
            raise ValueError(
                f"resolution must be a multiple of {step} between 16 and 640"
                f"{' (the d variant halves the decoder)' if step == 32 else ''}, got {self.resolution}"
            )
        for name in ("ae_dims", "e_dims", "d_dims", "d_mask_dims"):
            if getattr(self, name) < 1:
                raise ValueError(f"model setting {name!r} must be at least 1, got {getattr(self, name)}")
        if self.channels not in (1, 3):
            raise ValueError(f"channels must be 3 (colour) or 1 (grayscale), got {self.channels}")

    @property
    def base(self) -> str:
        """ "df" or "liae"."""
        return self.arch.split("-")[0]

    @property
    def variants(self) -> str:
        """The variant letters, "" for none."""
        return self.arch.partition("-")[2]

    @property
    def code_shape(self) -> tuple[int, int, int]:
        """Shape of one face's latent code as PairOutput gives it (for the CodeDiscriminator)."""
        side = self.resolution // (16 if "d" in self.variants else 8)
        return (self.ae_dims, side, side)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelConfig":
        return from_dict(cls, d, "model setting")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class PairOutput:
    """One training pass over a source batch and a destination batch (see `pair`)."""

    src: Tensor  # source faces redrawn as the source (N,C,R,R)
    src_mask: Tensor  # (N,1,R,R)
    dst: Tensor  # destination faces redrawn as the destination
    dst_mask: Tensor
    swap: Tensor | None  # destination faces drawn as the source, when asked for
    swap_mask: Tensor | None
    src_code: Tensor  # latent codes (N, *config.code_shape): DF the inter output, LIAE inter_ab's
    dst_code: Tensor


def _split(x: Tensor, sizes: list[int]) -> list[Tensor]:
    return list(torch.split(x, sizes))


def _encoder(config: ModelConfig) -> tuple[Encoder, int]:
    """The encoder and the length of its flattened output."""
    v = config.variants
    encoder = Encoder(config.channels, config.e_dims, residual="t" in v, normalise="u" in v)
    return encoder, config.e_dims * 8 * (config.resolution // 16) ** 2


def _decoder(config: ModelConfig, in_ch: int) -> Decoder:
    v = config.variants
    return Decoder(in_ch, config.d_dims, config.d_mask_dims, config.channels,
                   residual_blocks=2 if "t" in v else 1, depth_to_space="d" in v)


class _Faces:
    """Input checks both archs share."""

    config: ModelConfig

    def _check(self, x: Tensor) -> Tensor:
        c, r = self.config.channels, self.config.resolution
        if x.dim() != 4 or x.shape[1] != c or x.shape[2] != r or x.shape[3] != r:
            raise ValueError(f"expected faces of shape (N, {c}, {r}, {r}), got {tuple(x.shape)}")
        return x

    @staticmethod
    def _side(side: str) -> str:
        if side not in SIDES:
            raise ValueError(f"side must be 'src' or 'dst', got {side!r}")
        return side


class DFAutoencoder(_Faces, nn.Module):
    """DF: encoder and inter shared, decoder_src and decoder_dst one per identity."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        # registration order = parameter order, which saved optimizer states are indexed by
        self.encoder, features = _encoder(config)
        self.inter = Inter(features, config.ae_dims, config.code_shape[1] // 2)
        self.decoder_src = _decoder(config, config.ae_dims)
        self.decoder_dst = _decoder(config, config.ae_dims)

    def encode(self, x: Tensor) -> Tensor:
        """(N,C,R,R) faces in 0..1 -> shared code (N, *config.code_shape)."""
        return self.inter(self.encoder(self._check(x)))

    def decode(self, z: Tensor, side: str) -> tuple[Tensor, Tensor]:
        return (self.decoder_src if self._side(side) == "src" else self.decoder_dst)(z)

    def forward(self, x: Tensor, side: str) -> tuple[Tensor, Tensor]:
        """Faces (N,C,R,R) 0..1 -> (faces drawn by `side`'s decoder (N,C,R,R), masks (N,1,R,R))."""
        self._side(side)
        return self.decode(self.encode(x), side)

    def pair(self, src_in: Tensor, dst_in: Tensor, swap: bool = False) -> PairOutput:
        """Both batches through the encoder together; the swap shares the source decoder's batch."""
        n, m = len(src_in), len(dst_in)
        z = self.encode(torch.cat([self._check(src_in), self._check(dst_in)]))
        zs, zd = _split(z, [n, m])
        face, mask = self.decoder_src(z if swap else zs)
        dst, dst_mask = self.decoder_dst(zd)
        src, swapped = _split(face, [n, m]) if swap else (face, None)
        src_mask, swap_mask = _split(mask, [n, m]) if swap else (mask, None)
        return PairOutput(src, src_mask, dst, dst_mask, swapped, swap_mask, zs, zd)


class LIAEAutoencoder(_Faces, nn.Module):
    """LIAE: encoder shared, inter_ab (both identities) and inter_b (destination only), one decoder."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder, features = _encoder(config)
        lowest = config.code_shape[1] // 2
        self.inter_ab = Inter(features, config.ae_dims, lowest)
        self.inter_b = Inter(features, config.ae_dims, lowest)
        self.decoder = _decoder(config, config.ae_dims * 2)

    def code(self, features: Tensor, side: str) -> Tensor:
        """Encoder features -> the decoder's input for drawing them as `side`'s person."""
        ab = self.inter_ab(features)
        if self._side(side) == "src":
            return torch.cat([ab, ab], 1)
        return torch.cat([self.inter_b(features), ab], 1)

    def forward(self, x: Tensor, side: str) -> tuple[Tensor, Tensor]:
        """Faces (N,C,R,R) 0..1 -> (faces drawn as `side`'s person (N,C,R,R), masks (N,1,R,R))."""
        return self.decoder(self.code(self.encoder(self._check(x)), side))

    def pair(self, src_in: Tensor, dst_in: Tensor, swap: bool = False) -> PairOutput:
        """One encoder batch and one decoder batch for reconstructions (and swap)."""
        n, m = len(src_in), len(dst_in)
        features = self.encoder(torch.cat([self._check(src_in), self._check(dst_in)]))
        ab_s, ab_d = _split(self.inter_ab(features), [n, m])
        b_d = self.inter_b(features[n:])
        codes = [torch.cat([ab_s, ab_s], 1), torch.cat([b_d, ab_d], 1)]
        if swap:
            codes.append(torch.cat([ab_d, ab_d], 1))
        sizes = [n, m, m] if swap else [n, m]
        faces, masks = (_split(t, sizes) for t in self.decoder(torch.cat(codes)))
        return PairOutput(faces[0], masks[0], faces[1], masks[1],
                          faces[2] if swap else None, masks[2] if swap else None, ab_s, ab_d)


Autoencoder = DFAutoencoder | LIAEAutoencoder


def build_model(config: ModelConfig) -> Autoencoder:
    if config.base == "df":
        return DFAutoencoder(config)
    if config.base == "liae":
        return LIAEAutoencoder(config)
    raise ValueError(f"no builder for arch {config.arch!r}")  # ModelConfig validates; guards a new base
