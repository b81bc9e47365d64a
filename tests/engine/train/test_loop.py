"""Tests for engine.train.loop: strict settings, learning, resume, cancel, time limit, reports."""

import cv2
import numpy as np
import pytest

from engine.errors import Cancelled, EngineError
from engine.geometry.align import face_type, template_points
from engine.models.checkpoint import has_checkpoint, load_checkpoint
from engine.train import loop
from engine.train.loop import TrainSettings, train_pair
from engine.train.samples import FaceSamples

TINY = {"resolution": 32, "ae_dims": 32, "e_dims": 8, "d_dims": 8, "d_mask_dims": 4,
        "batch_size": 4, "learning_rate": 1e-3, "seed": 0}


def faceset(n: int, skin: tuple[int, int, int], seed: int) -> FaceSamples:
    """Cartoon faces of one 'identity' (skin colour) drawn on jittered 68-point landmarks."""
    rng = np.random.default_rng(seed)
    images, landmarks = [], []
    for _ in range(n):
        lm = template_points(64, face_type("full")) + rng.normal(0, 1.0, (68, 2))
        img = np.full((64, 64, 3), 60, np.uint8)
        cv2.fillPoly(img, [cv2.convexHull(lm[:27].astype(np.int32))], skin)
        for eye in (lm[36:42], lm[42:48]):
            cv2.circle(img, tuple(int(v) for v in eye.mean(0)), 3, (20, 20, 20), -1)
        cv2.polylines(img, [lm[48:60].astype(np.int32)], True, (40, 40, 160), 2)
        images.append(img)
        landmarks.append(lm)
    return FaceSamples(np.stack(images), np.stack(landmarks).astype(np.float32))


@pytest.fixture(scope="module")
def pair():
    return faceset(6, (90, 140, 200), seed=1), faceset(6, (150, 170, 120), seed=2)


def settings(**kw) -> TrainSettings:
    return TrainSettings.from_dict({**TINY, **kw})


def never() -> bool:
    return False


def test_settings_are_strict():
    assert TrainSettings.from_dict(TrainSettings().to_dict()) == TrainSettings()
    with pytest.raises(ValueError, match="unknown training setting"):
        TrainSettings.from_dict({"iters": 10})
    with pytest.raises(ValueError, match="must be int"):
        TrainSettings.from_dict({"batch_size": 8.0})
    with pytest.raises(ValueError, match="must be bool"):
        TrainSettings.from_dict({"masked": 1})
    with pytest.raises(ValueError, match="multiple of 16"):
        TrainSettings.from_dict({"resolution": 40})
    with pytest.raises(ValueError, match="precision"):
        TrainSettings.from_dict({"precision": "fp16"})
    with pytest.raises(ValueError, match="device"):
        TrainSettings.from_dict({"device": "gpu0"})
    assert TrainSettings.from_dict({"max_seconds": 5, "learning_rate": 1}).learning_rate == 1.0


def test_loss_goes_down(tmp_path, pair):
    result = train_pair(*pair, tmp_path, settings(iterations=40), lambda *a: None, never)
    history = load_checkpoint(tmp_path)[2]["loss_history"]
    assert result["iterations"] == 40 and len(history) == 40
    first, last = np.mean(history[:5]), np.mean(history[-5:])
    assert last < 0.7 * first, (first, last)
    assert result["loss"] == pytest.approx(np.mean(history[-20:]))
    assert result["checkpoint"] == str(tmp_path / "model.safetensors")


def test_resume_carries_on_the_count_and_the_history(tmp_path, pair):
    train_pair(*pair, tmp_path, settings(iterations=6), lambda *a: None, never)
    first = load_checkpoint(tmp_path)[2]["loss_history"]
    result = train_pair(*pair, tmp_path, settings(iterations=10), lambda *a: None, never)
    _, _, state = load_checkpoint(tmp_path)
    assert result["iterations"] == 10 and state["iteration"] == 10
    assert len(state["loss_history"]) == 10 and state["loss_history"][:6] == first


def test_resume_with_another_model_shape_is_a_model_mismatch(tmp_path, pair):
    train_pair(*pair, tmp_path, settings(iterations=1), lambda *a: None, never)
    with pytest.raises(EngineError) as e:
        train_pair(*pair, tmp_path, settings(iterations=2, d_dims=4), lambda *a: None, never)
    assert e.value.code == "model_mismatch"


def test_should_stop_saves_and_raises_cancelled(tmp_path, pair):
    calls = []

    def stop_on_fourth() -> bool:
        calls.append(1)
        return len(calls) >= 4

    with pytest.raises(Cancelled):
        train_pair(*pair, tmp_path, settings(iterations=100), lambda *a: None, stop_on_fourth)
    assert has_checkpoint(tmp_path)
    assert load_checkpoint(tmp_path)[2]["iteration"] == 3


def test_max_seconds_stops_early_and_saves(tmp_path, pair):
    result = train_pair(*pair, tmp_path, settings(iterations=10**6, max_seconds=1.0), lambda *a: None, never)
    assert 0 < result["iterations"] < 10**6 and has_checkpoint(tmp_path)


def test_reports_carry_progress_and_figures(tmp_path, pair):
    reports = []
    train_pair(*pair, tmp_path, settings(iterations=5, report_every_s=0.0),
               lambda p, msg, info: reports.append((p, msg, info)), never)
    steps = [r for r in reports if "it_per_s" in r[2]]
    assert [r[2]["iteration"] for r in steps] == [1, 2, 3, 4, 5]
    assert {"loss", "src_loss", "dst_loss"} <= set(steps[0][2])
    assert steps[0][0] == pytest.approx(0.2) and reports[-1][0] == 1.0


def test_fp32_and_unmasked_training_run(tmp_path, pair):
    result = train_pair(*pair, tmp_path, settings(iterations=2, precision="fp32", masked=False,
                                                  random_warp=False, random_flip=False),
                        lambda *a: None, never)
    assert result["iterations"] == 2


def test_a_diverged_run_raises_and_keeps_the_last_checkpoint(tmp_path, pair, monkeypatch):
    train_pair(*pair, tmp_path, settings(iterations=2), lambda *a: None, never)
    before = (tmp_path / "model.safetensors").read_bytes()
    monkeypatch.setattr(loop, "train_step", lambda *a: (float("nan"), 1.0))
    with pytest.raises(EngineError) as e:
        train_pair(*pair, tmp_path, settings(iterations=4), lambda *a: None, never)
    assert e.value.code == "training_diverged"
    assert (tmp_path / "model.safetensors").read_bytes() == before


def test_an_empty_faceset_is_no_faces(tmp_path, pair):
    src, _ = pair
    empty = FaceSamples(src.images[:0], src.landmarks[:0])
    with pytest.raises(EngineError) as e:
        train_pair(src, empty, tmp_path, settings(iterations=1), lambda *a: None, never)
    assert e.value.code == "no_faces"
