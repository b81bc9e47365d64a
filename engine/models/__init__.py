"""Shared piece: the face-swap networks, their checkpoints and inference (the train and merge stages use them)."""

from __future__ import annotations

import torch


def native_bf16(device: torch.device) -> bool:
    """Whether `device` does bfloat16 math natively, so that autocasting to bf16 makes it faster.

    Emulated bf16 (older x86, most ARM builds) is slower than fp32, so only native support counts.
    The CPU probes are private torch API, hence the fallbacks.
    """
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return False
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    try:
        return any(getattr(torch.cpu, p)() for p in probes if hasattr(torch.cpu, p))
    except RuntimeError:
        return False
