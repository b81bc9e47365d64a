"""Tests for engine.models.autoencoder: strict config, builder, forward shapes of both sides."""

import pytest
import torch

from engine.models.autoencoder import DFAutoencoder, ModelConfig, build_model

TINY = ModelConfig(resolution=32, ae_dims=16, e_dims=8, d_dims=8, d_mask_dims=4)


def test_config_round_trips_through_dict():
    assert ModelConfig.from_dict(TINY.to_dict()) == TINY
    assert ModelConfig.from_dict({}) == ModelConfig()


@pytest.mark.parametrize("bad, words", [
    ({"ae_dim": 64}, "unknown model setting"),
    ({"resolution": "64"}, "must be int"),
    ({"ae_dims": True}, "must be int"),
    ({"d_dims": 16.0}, "must be int"),
    ({"arch": "liae"}, "unknown model arch"),
    ({"resolution": 72}, "multiple of 16"),
    ({"e_dims": 0}, "at least 1"),
])
def test_config_rejects_bad_values_with_a_readable_message(bad, words):
    with pytest.raises(ValueError, match=words):
        ModelConfig.from_dict(bad)


def test_forward_gives_face_and_mask_for_both_sides():
    torch.manual_seed(0)
    model = build_model(TINY)
    assert isinstance(model, DFAutoencoder)
    x = torch.rand(3, 3, 32, 32)
    outs = {}
    for side in ("src", "dst"):
        with torch.no_grad():
            rgb, mask = model(x, side)
        assert rgb.shape == (3, 3, 32, 32) and mask.shape == (3, 1, 32, 32)
        assert 0 <= float(rgb.min()) and float(rgb.max()) <= 1
        assert 0 <= float(mask.min()) and float(mask.max()) <= 1
        outs[side] = rgb
    assert not torch.equal(outs["src"], outs["dst"])  # two decoders, not one


def test_encoder_and_inter_are_shared_and_decoders_are_not():
    model = build_model(TINY)
    names = {n.split(".")[0] for n, _ in model.named_parameters()}
    assert names == {"encoder", "inter", "decoder_src", "decoder_dst"}
    x = torch.rand(2, 3, 32, 32)
    code = model.encode(x)
    assert code.shape == (2, 16, 4, 4)  # ae_dims channels at resolution / 8
    assert torch.equal(model.decode(code, "src")[0], model(x, "src")[0])


def test_forward_rejects_a_bad_side_or_shape():
    model = build_model(TINY)
    with pytest.raises(ValueError, match="side"):
        model(torch.rand(1, 3, 32, 32), "both")
    with pytest.raises(ValueError, match="shape"):
        model(torch.rand(1, 3, 64, 64), "src")
