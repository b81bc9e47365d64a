"""Shared piece: the face-swap networks, their checkpoints and inference (the train and merge stages use them)."""

from __future__ import annotations

import torch

from engine.errors import EngineError


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


PRECISIONS = ("auto", "bf16", "fp32")  # "auto": bf16 where the hardware does it natively


def check_compute(device: str, precision: str) -> None:
    """ValueError for a device or precision a settings dataclass must refuse up front."""
    if device != "auto":
        try:
            torch.device(device)
        except RuntimeError:
            raise ValueError(f"unknown device {device!r}; e.g. 'auto', 'cpu' or 'cuda'") from None
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(map(repr, PRECISIONS))}, got {precision!r}")


def resolve_device(name: str) -> torch.device:
    """The torch device for a settings value: "auto" is the GPU when there is one, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise EngineError("bad_request", f"unknown device {name!r}; e.g. 'auto', 'cpu' or 'cuda'") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise EngineError("bad_request", f"{name!r} was asked for, but this engine has no CUDA device")
    return device


def use_bf16(precision: str, device: torch.device) -> bool:
    """Whether to autocast to bfloat16: asked for, or "auto" and the hardware does it natively."""
    return precision == "bf16" or (precision == "auto" and native_bf16(device))
