"""Tests for engine.models.dfm: the exported graph runs in onnxruntime and matches the torch model."""

import numpy as np
import onnxruntime as ort
import pytest
import torch

from engine.errors import EngineError
from engine.models.autoencoder import ModelConfig, build_model
from engine.models.checkpoint import save_checkpoint
from engine.models.dfm import GRAY_BGR, INPUT, OUTPUTS, export_dfm


def _saved(tmp_path, arch, channels):
    config = ModelConfig(arch=arch, resolution=32, ae_dims=16, e_dims=8, d_dims=8, d_mask_dims=4, channels=channels)
    torch.manual_seed(0)
    model = build_model(config).eval()
    model_dir = tmp_path / "model"
    save_checkpoint(model_dir, model, config, {"iteration": 3})
    return model, model_dir


@pytest.mark.parametrize("arch, channels", [("df", 3), ("liae-ud", 3), ("df-t", 1), ("liae", 1)])
def test_export_runs_in_onnxruntime_and_matches_torch(tmp_path, arch, channels):
    model, model_dir = _saved(tmp_path, arch, channels)
    out = export_dfm(model_dir, tmp_path / "out" / "face.dfm")
    assert out == tmp_path / "out" / "face.dfm" and sorted(p.name for p in out.parent.iterdir()) == ["face.dfm"]

    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    (inp,) = session.get_inputs()
    assert inp.name == INPUT and inp.shape[1:] == [32, 32, 3]
    assert [o.name for o in session.get_outputs()] == list(OUTPUTS)
    assert [o.shape[1:] for o in session.get_outputs()] == [[32, 32, 1], [32, 32, 3], [32, 32, 1]]

    faces = np.random.default_rng(0).random((2, 32, 32, 3), dtype=np.float32)  # NHWC BGR 0..1
    face_mask, celeb, celeb_mask = session.run(list(OUTPUTS), {INPUT: faces})
    x = torch.from_numpy(faces).permute(0, 3, 1, 2)
    if channels == 1:
        x = (x * torch.tensor(GRAY_BGR).view(1, 3, 1, 1)).sum(1, keepdim=True)
    with torch.no_grad():
        swap, swap_mask = model(x, "src")
        _, dst_mask = model(x, "dst")
    nhwc = lambda t: t.permute(0, 2, 3, 1).numpy()  # noqa: E731
    if channels == 1:
        assert np.array_equal(celeb[..., 0], celeb[..., 2])  # gray repeated into 3 channels
        swap = swap.repeat(1, 3, 1, 1)
    assert np.allclose(celeb, nhwc(swap), atol=1e-4)
    assert np.allclose(celeb_mask, nhwc(swap_mask), atol=1e-4)
    assert np.allclose(face_mask, nhwc(dst_mask), atol=1e-4)


def test_export_of_a_missing_model_is_not_found(tmp_path):
    with pytest.raises(EngineError) as err:
        export_dfm(tmp_path / "nothing", tmp_path / "x.dfm")
    assert err.value.code == "not_found" and not (tmp_path / "x.dfm").exists()
