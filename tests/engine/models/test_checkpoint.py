"""Tests for engine.models.checkpoint: bit-exact round trip, atomic writes, damaged and mismatched files."""

import os

import pytest
import torch

from engine import files
from engine.errors import EngineError
from engine.models import checkpoint as ckpt
from engine.models.autoencoder import ModelConfig, build_model

TINY = ModelConfig(resolution=16, ae_dims=8, e_dims=4, d_dims=4, d_mask_dims=2)


def _trained(config=TINY):
    """A model and an Adam optimizer that has taken one step, so both carry non-trivial state."""
    torch.manual_seed(0)
    model = build_model(config)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    rgb, mask = model(torch.rand(2, 3, config.resolution, config.resolution), "src")
    (rgb.mean() + mask.mean()).backward()
    opt.step()
    return model, opt


def test_round_trip_is_bit_exact(tmp_path):
    model, opt = _trained()
    state = {"iteration": 7, "loss_history": [0.5, 0.25, 1e-7], "settings": {"batch_size": 8}}
    path = ckpt.save_checkpoint(tmp_path, model, TINY, state, opt)
    assert path == tmp_path / "model.safetensors" and ckpt.has_checkpoint(tmp_path)

    loaded, config, loaded_state = ckpt.load_checkpoint(tmp_path)
    assert config == TINY and loaded_state == state
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert a.dtype == b.dtype and torch.equal(a, b), name

    opt2 = torch.optim.Adam(loaded.parameters(), lr=1e-3)
    assert ckpt.load_optimizer_state(tmp_path, opt2)
    for p1, p2 in zip(model.parameters(), loaded.parameters()):
        s1, s2 = opt.state[p1], opt2.state[p2]
        assert s1.keys() == s2.keys()
        for key in s1:
            assert torch.equal(s1[key], s2[key]), key


def test_checkpoint_without_optimizer_restores_nothing(tmp_path):
    model, _ = _trained()
    ckpt.save_checkpoint(tmp_path, model, TINY, {"iteration": 0})
    loaded, _, _ = ckpt.load_checkpoint(tmp_path)
    assert not ckpt.load_optimizer_state(tmp_path, torch.optim.Adam(loaded.parameters()))


def test_save_leaves_no_temp_file_and_a_failed_save_keeps_the_old_checkpoint(tmp_path, monkeypatch):
    model, opt = _trained()
    ckpt.save_checkpoint(tmp_path, model, TINY, {"iteration": 1}, opt)
    ckpt.save_checkpoint(tmp_path, model, TINY, {"iteration": 2}, opt)
    assert os.listdir(tmp_path) == ["model.safetensors"]
    before = (tmp_path / "model.safetensors").read_bytes()

    def crash(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(files.os, "replace", crash)
    with pytest.raises(EngineError) as err:
        ckpt.save_checkpoint(tmp_path, model, TINY, {"iteration": 3}, opt)
    assert err.value.code == "io_error" and "disk full" in err.value.message
    assert os.listdir(tmp_path) == ["model.safetensors"]
    assert (tmp_path / "model.safetensors").read_bytes() == before


def test_state_must_be_json(tmp_path):
    model, _ = _trained()
    with pytest.raises(ValueError, match="JSON"):
        ckpt.save_checkpoint(tmp_path, model, TINY, {"when": object()})


def test_missing_checkpoint_is_not_found(tmp_path):
    assert not ckpt.has_checkpoint(tmp_path)
    with pytest.raises(EngineError) as e:
        ckpt.load_checkpoint(tmp_path / "nowhere")
    assert e.value.code == "not_found"


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty", "flip_header"])
def test_damaged_file_is_an_engine_error(tmp_path, damage):
    model, opt = _trained()
    path = ckpt.save_checkpoint(tmp_path, model, TINY, {"iteration": 1}, opt)
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        path.write_bytes(b"not a model at all" * 10)
    elif damage == "empty":
        path.write_bytes(b"")
    else:
        path.write_bytes(data[:8] + b"}" + data[9:])
    with pytest.raises(EngineError) as e:
        ckpt.load_checkpoint(tmp_path)
    assert e.value.code == "corrupt_checkpoint"


def test_expected_config_that_differs_is_a_model_mismatch(tmp_path):
    model, _ = _trained()
    ckpt.save_checkpoint(tmp_path, model, TINY, {"iteration": 1})
    other = ModelConfig.from_dict({**TINY.to_dict(), "ae_dims": 16})
    with pytest.raises(EngineError) as e:
        ckpt.load_checkpoint(tmp_path, expected=other)
    assert e.value.code == "model_mismatch" and "ae_dims" in e.value.message


def test_weights_that_do_not_fit_their_config_are_a_model_mismatch(tmp_path):
    model, _ = _trained()
    wider = ModelConfig.from_dict({**TINY.to_dict(), "d_dims": 8})
    ckpt.save_checkpoint(tmp_path, model, wider, {"iteration": 1})  # a file whose config lies
    with pytest.raises(EngineError) as e:
        ckpt.load_checkpoint(tmp_path)
    assert e.value.code == "model_mismatch"


def test_optimizer_state_for_another_model_is_a_model_mismatch(tmp_path):
    model, opt = _trained()
    ckpt.save_checkpoint(tmp_path, model, TINY, {"iteration": 1}, opt)
    other = build_model(ModelConfig.from_dict({**TINY.to_dict(), "d_dims": 8}))
    with pytest.raises(EngineError) as e:
        ckpt.load_optimizer_state(tmp_path, torch.optim.Adam(other.parameters()))
    assert e.value.code == "model_mismatch"

