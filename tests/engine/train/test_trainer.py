"""Tests for engine.train.settings and engine.train.trainer: strict settings, one SAEHD step with
every term, soft options, grayscale, state saved and restored."""

import dataclasses

import pytest
import torch

from engine.train.samples import Batch
from engine.train.settings import SOFT_OPTIONS, TrainSettings
from engine.train.trainer import DISCRIMINATORS_FILE, Trainer

TINY = {"resolution": 32, "arch": "df", "ae_dims": 32, "e_dims": 8, "d_dims": 8, "d_mask_dims": 4,
        "batch_size": 2, "seed": 0, "precision": "fp32", "device": "cpu"}
CPU = torch.device("cpu")


def settings(**kw) -> TrainSettings:
    return TrainSettings.from_dict({**TINY, **kw})


def batch(seed: int, channels: int = 3, n: int = 2, r: int = 32) -> Batch:
    g = torch.Generator().manual_seed(seed)
    faces = torch.rand(n, channels, r, r, generator=g)
    mask = torch.zeros(n, 1, r, r)
    mask[..., 4:28, 4:28] = 1
    prio = torch.zeros(n, 1, r, r)
    prio[..., 10:14, 8:24] = 1
    return Batch(faces, faces.clone(), mask, prio)


def test_settings_are_strict_and_say_what_is_wrong():
    assert TrainSettings.from_dict(TrainSettings().to_dict()) == TrainSettings()
    for bad, message in (({"iters": 10}, "unknown training setting"), ({"batch_size": 8.0}, "must be int"),
                         ({"masked": 1}, "must be bool"), ({"optimizer": "sgd"}, "optimizer must be one of"),
                         ({"phase": "polish"}, "phase must be one of"), ({"gan_power": -1.0}, "gan_power"),
                         ({"colour_transfer": "xyz"}, "colour_transfer"), ({"face_style_power": 101.0}, "0..100"),
                         ({"precision": "fp16"}, "precision"), ({"device": "gpu0"}, "device"),
                         ({"backups_kept": 0}, "backups_kept"), ({"workers": -2}, "workers"),
                         ({"gan_patch_size": 100}, "gan_patch_size"), ({"arch": "xyz"}, "arch")):
        with pytest.raises(ValueError, match=message):
            TrainSettings.from_dict(bad)
    assert TrainSettings.from_dict({"max_seconds": 5, "learning_rate": 1}).learning_rate == 1.0


def test_presets_overrides_and_soft_options():
    s = TrainSettings.from_preset("quick", {"batch_size": 2})
    assert s.resolution == 64 and s.batch_size == 2
    with pytest.raises(ValueError, match="unknown training preset"):
        TrainSettings.from_preset("huge", {})
    assert {"phase", "learning_rate", "gan_power"} <= SOFT_OPTIONS and "resolution" not in SOFT_OPTIONS
    assert s.check_soft({"learning_rate": 1e-4}).learning_rate == 1e-4
    with pytest.raises(ValueError, match="cannot change resolution"):
        s.check_soft({"resolution": 128})
    assert s.model_config().channels == 3 and settings(grayscale=True).model_config().channels == 1


def test_augmentation_per_side():
    s = settings(random_flip_src=False, random_hsv=0.05, uniform_yaw=True, random_warp=False)
    src, dst = s.augmentation("src"), s.augmentation("dst")
    assert not src.flip and dst.flip and not src.random_warp and src.hsv_jitter == 0.05
    assert src.uniform_yaw and dst.uniform_yaw  # both sides, as DeepFaceLab does
    with pytest.raises(ValueError):
        s.augmentation("both")


def test_a_step_with_every_term_trains_all_modules():
    s = settings(phase="gan", gan_power=0.5, gan_dims=4, true_face_power=0.1, face_style_power=10.0,
                 bg_style_power=10.0, eyes_mouth_priority=True, clip_grad=1.0)
    t = Trainer(s, CPU)
    assert t.patch_d is not None and t.code_d is not None and t.dropout is not None
    before = [m.state_dict()["" + next(iter(m.state_dict()))].clone() for m in (t.model, *t.discriminators())]
    losses = t.step(batch(0), batch(1))
    assert {"src_loss", "dst_loss", "gan_loss", "d_loss", "true_face_loss", "code_d_loss", "style_loss"} <= set(losses)
    assert all(isinstance(v, float) and v == v for v in losses.values())
    after = [m.state_dict()[next(iter(m.state_dict()))] for m in (t.model, *t.discriminators())]
    assert all(not torch.equal(a, b) for a, b in zip(before, after))


def test_warp_phase_has_no_gan_and_apply_switches_phase_and_rate():
    t = Trainer(settings(gan_power=0.5, gan_dims=4), CPU)
    assert t.patch_d is None and t.dropout is None and t.run.random_warp
    t.apply(t.settings.replace(phase="gan", learning_rate=1e-4))
    assert t.patch_d is not None and t.run.gan_power == 0.5 and not t.run.random_warp
    assert t.optimizer.param_groups[0]["lr"] == 1e-4
    t.apply(t.settings.replace(optimizer="rmsprop"))
    assert isinstance(t.optimizer, torch.optim.RMSprop)
    assert "gan_loss" in t.step(batch(0), batch(1))


def test_grayscale_and_bf16_steps():
    t = Trainer(settings(grayscale=True, precision="bf16"), CPU)
    losses = t.step(batch(0, channels=1), batch(1, channels=1))
    assert losses["src_loss"] > 0
    columns, titles = t.preview(batch(0, channels=1), batch(1, channels=1))
    assert len(columns) == len(titles) == 5 and columns[4].shape == (2, 32, 32, 1)


def test_save_and_load_restore_optimizer_and_discriminators(tmp_path):
    s = settings(phase="gan", gan_dims=4, true_face_power=0.1)
    t = Trainer(s, CPU)
    t.step(batch(0), batch(1))
    t.save(tmp_path, {"iteration": 1})
    assert (tmp_path / DISCRIMINATORS_FILE).is_file()
    u = Trainer(s, CPU, model=t.model)
    u.load(tmp_path, {"optimizer": "adam", "iteration": 1})
    for a, b in zip(t.discriminators(), u.discriminators()):
        assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    ta, ua = t.d_optimizers["patch"].state_dict()["state"], u.d_optimizers["patch"].state_dict()["state"]
    assert torch.equal(ta[0]["exp_avg"], ua[0]["exp_avg"])
    # resumed in the warp phase, the discriminators are kept for later
    w = Trainer(dataclasses.replace(s, phase="warp"), CPU, model=t.model)
    w.load(tmp_path, {"optimizer": "adam", "iteration": 1})
    assert w.patch_d is not None
    # discriminators saved with another iteration than the model (a kill between the two files'
    # writes) are not taken: they start afresh
    stale = Trainer(dataclasses.replace(s, phase="warp"), CPU, model=t.model)
    stale.load(tmp_path, {"optimizer": "adam", "iteration": 2})
    assert stale.patch_d is None  # not brought back; true face's is built afresh (its power is set)
    fresh, saved = stale.discriminators()[0].state_dict(), t.discriminators()[1].state_dict()
    assert not all(torch.equal(fresh[k], saved[k]) for k in saved)


def test_memory_check_refuses_an_impossible_batch(monkeypatch):
    from engine.errors import EngineError
    from engine.models import memory

    t = Trainer(settings(), CPU)
    monkeypatch.setattr(memory, "available_bytes", lambda device: 10**6)
    with pytest.raises(EngineError) as e:
        t.check_memory(64)
    assert e.value.code == "out_of_memory"
