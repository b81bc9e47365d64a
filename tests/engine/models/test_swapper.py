"""Tests for engine.models.swapper: a saved model swaps crops of any size, in batches."""

import cv2
import numpy as np
import pytest
import torch

from engine.errors import EngineError
from engine.models import swapper as swapper_module
from engine.models.autoencoder import ModelConfig, build_model
from engine.models.checkpoint import save_checkpoint
from engine.models.swapper import FaceSwapper

TINY = ModelConfig(resolution=16, ae_dims=8, e_dims=4, d_dims=4, d_mask_dims=2)


@pytest.fixture
def model_dir(tmp_path):
    torch.manual_seed(0)
    save_checkpoint(tmp_path, build_model(TINY), TINY, {"iteration": 0})
    return tmp_path


@pytest.mark.parametrize("size", [40, 16, 8])
def test_swap_returns_crops_and_masks_at_the_input_size(model_dir, size):
    sw = FaceSwapper.load(model_dir)
    assert sw.resolution == 16
    faces = np.random.default_rng(0).integers(0, 256, (3, size, size, 3), dtype=np.uint8)
    swapped, masks = sw.swap(faces)
    assert swapped.shape == faces.shape and swapped.dtype == np.uint8
    assert masks.shape == (3, size, size) and masks.dtype == np.float32
    assert 0.0 <= masks.min() and masks.max() <= 1.0
    assert np.abs(swapped.astype(int) - faces).mean() > 5  # it redraws the face, it does not copy it


def test_swap_batches_internally_and_matches_one_at_a_time(model_dir, monkeypatch):
    monkeypatch.setattr(swapper_module, "BATCH", 2)
    sw = FaceSwapper(FaceSwapper.load(model_dir).model, bf16=False)  # fp32: exact comparison
    faces = np.random.default_rng(1).integers(0, 256, (5, 16, 16, 3), dtype=np.uint8)
    swapped, masks = sw.swap(faces)
    for i in range(5):
        one, one_mask = sw.swap(faces[i:i + 1])
        assert np.array_equal(one[0], swapped[i]) and np.allclose(one_mask[0], masks[i])


def test_swap_uses_the_source_decoder(model_dir):
    sw = FaceSwapper(FaceSwapper.load(model_dir).model, bf16=False)
    faces = np.random.default_rng(2).integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)
    swapped, _ = sw.swap(faces)
    x = torch.from_numpy(faces.astype(np.float32) / 255).permute(0, 3, 1, 2)
    with torch.no_grad():
        rgb, _ = sw.model(x.contiguous(), "src")
    expected = (rgb * 255).round().byte().permute(0, 2, 3, 1).numpy()
    assert np.array_equal(swapped, expected)


def test_swap_of_nothing_and_bad_input(model_dir):
    sw = FaceSwapper.load(model_dir)
    swapped, masks = sw.swap(np.zeros((0, 32, 32, 3), np.uint8))
    assert swapped.shape == (0, 32, 32, 3) and masks.shape == (0, 32, 32)
    with pytest.raises(ValueError):
        sw.swap(np.zeros((1, 32, 30, 3), np.uint8))
    with pytest.raises(ValueError):
        sw.swap(np.zeros((1, 32, 32, 3), np.float32))


def test_load_picks_the_device_and_refuses_a_missing_gpu(model_dir):
    assert FaceSwapper.load(model_dir).device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert FaceSwapper.load(model_dir, device="cpu").device.type == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(EngineError) as err:
            FaceSwapper.load(model_dir, device="cuda")
        assert err.value.code == "bad_request"


@pytest.mark.parametrize("arch", ["df", "liae-ud"])
def test_grayscale_model_keeps_the_destination_colours(tmp_path, arch):
    config = ModelConfig(arch=arch, resolution=32, ae_dims=8, e_dims=4, d_dims=4, d_mask_dims=2, channels=1)
    torch.manual_seed(0)
    save_checkpoint(tmp_path, build_model(config), config, {"iteration": 0})
    sw = FaceSwapper(FaceSwapper.load(tmp_path, device="cpu").model, bf16=False)
    rng = np.random.default_rng(3)
    # a colourful destination: smooth hue gradients, as skin and light are
    yy, xx = np.mgrid[0:32, 0:32]
    faces = np.stack([np.stack([xx * 6, yy * 7, 255 - xx * 5], -1) + rng.integers(0, 20, (32, 32, 3))
                      for _ in range(2)]).clip(0, 255).astype(np.uint8)
    swapped, masks = sw.swap(faces)
    assert swapped.shape == faces.shape and masks.shape == (2, 32, 32)

    gray = np.stack([cv2.cvtColor(f, cv2.COLOR_BGR2GRAY) for f in faces])
    x = torch.from_numpy(gray.astype(np.float32) / 255)[:, None]
    with torch.no_grad():
        luma, _ = sw.model(x, "src")
    expected_luma = (luma[:, 0] * 255).round().numpy()
    got = np.stack([cv2.cvtColor(f, cv2.COLOR_BGR2YCrCb) for f in swapped]).astype(int)
    want = np.stack([cv2.cvtColor(f, cv2.COLOR_BGR2YCrCb) for f in faces]).astype(int)
    # back to BGR and again through uint8 rounding and gamut clipping: a few levels of slack
    assert np.median(np.abs(got[..., 0] - expected_luma)) <= 2  # the shading is the model's
    assert np.median(np.abs(got[..., 1:] - want[..., 1:])) <= 2  # the colours are the destination's
    assert np.abs(got[..., 0] - want[..., 0]).mean() > 5  # and it did redraw the face
