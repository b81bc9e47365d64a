"""Tests for engine.masks.learn: strict settings, a real tiny training that learns, resume, cancel,
checkpoints that rebuild the Segmenter alone, and predictions at the crops' own size."""

import json

import numpy as np
import pytest
import safetensors

from engine.errors import Cancelled, EngineError
from engine.masks.learn import SegTrainSettings, train_segmenter
from engine.models.segmenter import Segmenter
from engine.masks.occlusion import iou
from engine.models.checkpoint import checkpoint_path

TINY = {"resolution": 32, "width": 4, "batch_size": 4, "learning_rate": 3e-3, "seed": 0, "precision": "fp32"}


def blobs(n: int = 6, s: int = 48, seed: int = 0):
    """Noisy crops with a bright ellipse (the 'face') and a dark bar over it (not face)."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:s, 0:s]
    images, masks = [], []
    for _ in range(n):
        cx, cy = rng.uniform(0.35, 0.65, 2) * s
        face = ((xs - cx) / (0.3 * s)) ** 2 + ((ys - cy) / (0.38 * s)) ** 2 < 1
        bar = np.abs(ys - cy - rng.uniform(-0.2, 0.2) * s) < 0.06 * s
        mask = face & ~bar
        img = rng.normal(70, 15, (s, s, 3))
        img[face] = (90, 140, 200)
        img[bar] = (20, 20, 20)
        images.append(np.clip(img, 0, 255).astype(np.uint8))
        masks.append(mask.astype(np.float32))
    return np.stack(images), np.stack(masks)


def settings(**kw) -> SegTrainSettings:
    return SegTrainSettings.from_dict({**TINY, **kw})


def quiet(*args):
    pass


def test_settings_are_strict():
    with pytest.raises(ValueError, match="unknown"):
        SegTrainSettings.from_dict({"resolutoin": 64})
    with pytest.raises(ValueError, match="multiple of 32"):
        SegTrainSettings(resolution=100)
    with pytest.raises(ValueError, match="precision"):
        SegTrainSettings(precision="fp16")
    with pytest.raises(ValueError, match="must be int"):
        SegTrainSettings.from_dict({"iterations": "10"})
    with pytest.raises(ValueError, match="device"):
        SegTrainSettings(device="abacus")
    assert SegTrainSettings.from_dict(settings().to_dict()) == settings()


def test_training_learns_reports_and_resumes_with_its_count(tmp_path):
    images, masks = blobs()
    reports = []
    r = train_segmenter(images, masks, tmp_path / "m", settings(iterations=60, report_every_s=0.0),
                        lambda f, text, stats: reports.append((f, stats)), lambda: False)
    assert r["iterations"] == 60 and np.isfinite(r["loss"])
    assert reports[-1][0] == 1.0 and {"loss", "iteration"} <= set(reports[0][1])
    history = [s["loss"] for _, s in reports[:-1]]
    assert np.mean(history[-10:]) < np.mean(history[:10])  # the loss went down
    seg = Segmenter.load(tmp_path / "m")
    test_images, test_masks = blobs(4, seed=9)
    pred = seg.predict(test_images)
    assert pred.shape == (4, 48, 48) and pred.dtype == np.float32 and 0 <= pred.min() <= pred.max() <= 1
    assert np.mean([iou(p, t) for p, t in zip(pred, test_masks)]) > 0.6  # unseen crops, 60 tiny steps
    r2 = train_segmenter(images, masks, tmp_path / "m", settings(iterations=70), quiet, lambda: False)
    assert r2["iterations"] == 70
    with safetensors.safe_open(str(checkpoint_path(tmp_path / "m")), framework="pt") as f:
        meta = f.metadata()
    state = json.loads(meta["state"])
    assert state["iteration"] == 70 and len(state["loss_history"]) == 70
    assert json.loads(meta["config"]) == {"resolution": 32, "width": 4}
    assert Segmenter.load(tmp_path / "m").iterations == 70


def test_cancel_saves_then_raises_and_time_limit_stops(tmp_path):
    images, masks = blobs(3)
    asked = []

    def stop() -> bool:
        asked.append(1)
        return len(asked) > 3

    with pytest.raises(Cancelled):
        train_segmenter(images, masks, tmp_path / "c", settings(iterations=100), quiet, stop)
    assert Segmenter.load(tmp_path / "c").iterations == 3
    r = train_segmenter(images, masks, tmp_path / "t", settings(iterations=10**6, max_seconds=0.5), quiet, lambda: False)
    assert 0 < r["iterations"] < 10**6


def test_mismatch_missing_and_bad_input_errors(tmp_path):
    images, masks = blobs(2)
    train_segmenter(images, masks, tmp_path / "m", settings(iterations=1), quiet, lambda: False)
    with pytest.raises(EngineError) as e:
        train_segmenter(images, masks, tmp_path / "m", settings(iterations=2, width=8), quiet, lambda: False)
    assert e.value.code == "model_mismatch"
    with pytest.raises(EngineError) as e:
        Segmenter.load(tmp_path / "nothing")
    assert e.value.code == "not_found"
    with pytest.raises(EngineError) as e:
        train_segmenter(images[:0], masks[:0], tmp_path / "e", settings(), quiet, lambda: False)
    assert e.value.code == "no_labels"
    with pytest.raises(ValueError, match="uint8"):
        Segmenter.load(tmp_path / "m").predict(images.astype(np.float32))
    checkpoint_path(tmp_path / "m").write_bytes(b"garbage")
    with pytest.raises(EngineError) as e:
        Segmenter.load(tmp_path / "m")
    assert e.value.code == "corrupt_checkpoint"


def test_loss_weighs_the_occluder_pixels_more():
    import torch

    from engine.masks.learn import seg_loss

    target = torch.zeros(1, 1, 8, 8)
    target[..., 2:6, 2:6] = 1
    logits = (target * 2 - 1) * 4
    wrong = logits.clone()
    wrong[..., 0, 0] = 4  # one background pixel called face
    weight = torch.ones_like(target)
    assert seg_loss(logits, target) < seg_loss(wrong, target)
    weight[..., 0, 0] = 3
    assert seg_loss(wrong, target, weight) > seg_loss(wrong, target)
