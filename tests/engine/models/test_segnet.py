"""Tests for engine.models.segnet: the segmentation U-Net and its strict config."""

import pytest
import torch

from engine.models.segnet import SegNet, SegNetConfig


def test_logits_have_the_input_resolution():
    net = SegNet(SegNetConfig(resolution=64, width=8)).eval()
    out = net(torch.rand(2, 3, 64, 64))
    assert out.shape == (2, 1, 64, 64) and out.dtype == torch.float32


def test_channels_last_bf16_autocast_runs_and_backpropagates():
    net = SegNet(SegNetConfig(resolution=32, width=4)).to(memory_format=torch.channels_last)
    x = torch.rand(2, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = net(x)
    out.float().mean().backward()
    assert all(p.grad is not None for p in net.parameters())


def test_config_round_trips_and_refuses_bad_values():
    c = SegNetConfig(resolution=96, width=12)
    assert SegNetConfig.from_dict(c.to_dict()) == c
    assert c.channels() == [12, 24, 48, 72, 96, 120]
    with pytest.raises(ValueError, match="multiple of 32"):
        SegNetConfig(resolution=100)
    with pytest.raises(ValueError, match="width"):
        SegNetConfig(width=2)
    with pytest.raises(ValueError, match="unknown"):
        SegNetConfig.from_dict({"resolution": 64, "depth": 3})
    with pytest.raises(ValueError, match="must be int"):
        SegNetConfig.from_dict({"resolution": 64.0})
