"""Tests for engine.train.loop: learning, resume, cancel, time limit, reports, commands, files, phases."""

import cv2
import numpy as np
import pytest

from engine.errors import Cancelled, EngineError
from engine.geometry.align import face_type, template_points
from engine.models.checkpoint import has_checkpoint, load_checkpoint
from engine.train import trainer as trainer_module
from engine.train.backups import list_backups
from engine.train.loop import train_pair
from engine.train.samples import FaceSamples
from engine.train.settings import TrainSettings

TINY = {"resolution": 32, "arch": "df", "ae_dims": 32, "e_dims": 8, "d_dims": 8, "d_mask_dims": 4,
        "batch_size": 4, "learning_rate": 1e-3, "seed": 0, "workers": 0, "preview_every_s": 0.0}


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


def quiet(*a) -> None:
    pass


def history_of(model_dir):
    return load_checkpoint(model_dir)[2]["history"]


def test_loss_goes_down_and_the_files_are_written(tmp_path, pair):
    result = train_pair(*pair, tmp_path, settings(iterations=40), quiet, never)
    h = history_of(tmp_path)
    assert result["iterations"] == 40 and h["iterations"] == list(range(1, 41))
    loss = (np.array(h["src"]) + np.array(h["dst"])) / 2
    assert loss[-5:].mean() < 0.7 * loss[:5].mean(), loss
    assert result["loss"] == pytest.approx(loss[-20:].mean())
    assert result["checkpoint"] == str(tmp_path / "model.safetensors") and result["phase"] == "warp"
    for name in ("preview.png", "loss.png"):
        image = cv2.imread(str(tmp_path / name))
        assert image is not None and image.shape[0] > 32, name


def test_resume_carries_on_the_count_the_history_and_the_phase(tmp_path, pair):
    train_pair(*pair, tmp_path, settings(iterations=6, phase="refine"), quiet, never)
    first = history_of(tmp_path)
    result = train_pair(*pair, tmp_path, settings(iterations=10, phase="refine"), quiet, never)
    _, _, state = load_checkpoint(tmp_path)
    assert result["iterations"] == 10 and state["iteration"] == 10 and state["phase"] == "refine"
    assert state["history"]["src"][:6] == first["src"] and len(state["history"]["src"]) == 10
    assert state["history"]["phase_marks"] == [[0, "refine"]]


def test_pretrained_model_restarts_its_count_on_the_pair(tmp_path, pair):
    src, dst = pair
    train_pair(src, None, tmp_path, settings(iterations=5, pretrain=True), quiet, never)
    assert load_checkpoint(tmp_path)[2]["pretrain"] is True
    result = train_pair(src, dst, tmp_path, settings(iterations=3), quiet, never)
    _, _, state = load_checkpoint(tmp_path)
    assert result["iterations"] == 3 and state["pretrain"] is False and len(state["history"]["src"]) == 3


def test_resume_with_another_model_shape_is_a_model_mismatch(tmp_path, pair):
    train_pair(*pair, tmp_path, settings(iterations=1), quiet, never)
    with pytest.raises(EngineError) as e:
        train_pair(*pair, tmp_path, settings(iterations=2, d_dims=4), quiet, never)
    assert e.value.code == "model_mismatch"


def test_should_stop_saves_and_raises_cancelled(tmp_path, pair):
    calls = []

    def stop_on_fourth() -> bool:
        calls.append(1)
        return len(calls) >= 4

    with pytest.raises(Cancelled):
        train_pair(*pair, tmp_path, settings(iterations=100), quiet, stop_on_fourth)
    assert has_checkpoint(tmp_path)
    assert load_checkpoint(tmp_path)[2]["iteration"] == 3


def test_max_seconds_stops_early_and_saves(tmp_path, pair):
    result = train_pair(*pair, tmp_path, settings(iterations=10**6, max_seconds=1.0), quiet, never)
    assert 0 < result["iterations"] < 10**6 and has_checkpoint(tmp_path)


def test_reports_carry_the_contract_figures(tmp_path, pair):
    reports = []
    train_pair(*pair, tmp_path, settings(iterations=5, report_every_s=0.0, preview_every_s=0.001),
               lambda p, msg, info: reports.append((p, msg, info)), never)
    steps = [r for r in reports if "it_per_s" in r[2]]
    assert [r[2]["iteration"] for r in steps] == [1, 2, 3, 4, 5]
    keys = {"iteration", "target", "phase", "loss", "src_loss", "dst_loss", "it_per_s", "samples_per_s",
            "eta_s", "data_wait", "paused", "preview_version"}
    assert keys <= set(steps[0][2])
    info = steps[-1][2]
    assert info["target"] == 5 and info["phase"] == "warp" and info["paused"] is False
    assert 0 <= info["data_wait"] <= 1 and info["samples_per_s"] == pytest.approx(info["it_per_s"] * 8)
    assert steps[0][2]["eta_s"] > 0 and info["eta_s"] == 0
    assert steps[0][0] == pytest.approx(0.2) and reports[-1][0] == 1.0
    assert reports[-1][2]["preview_version"] >= 1


def test_fp32_unmasked_priority_and_other_options_run(tmp_path, pair):
    result = train_pair(*pair, tmp_path, settings(iterations=2, precision="fp32", masked=False, random_warp=False,
                                                  random_flip_src=False, eyes_mouth_priority=True, ms_ssim=True,
                                                  optimizer="adabelief", clip_grad=1.0, face_style_power=10.0,
                                                  bg_style_power=5.0, phase="refine"), quiet, never)
    assert result["iterations"] == 2


def test_a_diverged_run_raises_and_keeps_the_last_checkpoint(tmp_path, pair, monkeypatch):
    train_pair(*pair, tmp_path, settings(iterations=2), quiet, never)
    before = (tmp_path / "model.safetensors").read_bytes()
    monkeypatch.setattr(trainer_module.Trainer, "step", lambda self, s, d: {"src_loss": float("nan"), "dst_loss": 1.0})
    with pytest.raises(EngineError) as e:
        train_pair(*pair, tmp_path, settings(iterations=4), quiet, never)
    assert e.value.code == "training_diverged"
    assert (tmp_path / "model.safetensors").read_bytes() == before


def test_an_out_of_memory_step_is_a_domain_error(tmp_path, pair, monkeypatch):
    def oom(self, s, d):
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 10 GB")

    monkeypatch.setattr(trainer_module.Trainer, "step", oom)
    with pytest.raises(EngineError) as e:
        train_pair(*pair, tmp_path, settings(iterations=4), quiet, never)
    assert e.value.code == "out_of_memory"


def test_an_empty_faceset_is_no_faces(tmp_path, pair):
    src, _ = pair
    empty = FaceSamples(src.images[:0], src.landmarks[:0])
    with pytest.raises(EngineError) as e:
        train_pair(src, empty, tmp_path, settings(iterations=1), quiet, never)
    assert e.value.code == "no_faces"


def test_commands_save_backup_phase_set_and_a_bad_one_is_refused(tmp_path, pair):
    script = {2: [{"command": "save"}], 3: [{"command": "backup"}],
              4: [{"command": "phase", "phase": "refine"}],
              5: [{"command": "set", "options": {"learning_rate": 2e-4, "clip_grad": 0.5}}],
              6: [{"command": "set", "options": {"resolution": 64}}, {"command": "dance"}]}
    polls, reports = [], []

    def commands():
        polls.append(1)
        return script.get(len(polls), [])

    result = train_pair(*pair, tmp_path, settings(iterations=8, backups_kept=5), lambda *a: reports.append(a),
                        never, commands=commands)
    assert result["phase"] == "refine"
    _, _, state = load_checkpoint(tmp_path)
    assert state["settings"]["learning_rate"] == 2e-4 and state["settings"]["clip_grad"] == 0.5
    assert state["history"]["phase_marks"] == [[0, "warp"], [3, "refine"]]
    backups = list_backups(tmp_path)
    assert len(backups) == 2  # the backup command, and the one before the phase change
    assert (backups[0] / "model.safetensors").is_file() and (backups[0] / "preview.png").is_file()
    assert load_checkpoint(backups[1])[2]["iteration"] == 3
    refused = [a[1] for a in reports if "refused" in a[1]]
    assert len(refused) == 2 and "resolution" in refused[0] and "dance" in refused[1]


def test_pause_saves_sleeps_and_resumes(tmp_path, pair):
    script = {2: [{"command": "pause"}], 5: [{"command": "resume"}]}
    polls, paused = [], []

    def commands():
        polls.append(1)
        return script.get(len(polls), [])

    result = train_pair(*pair, tmp_path, settings(iterations=4), quiet, never, commands=commands,
                        set_paused=paused.append)
    assert result["iterations"] == 4 and paused == [True, False]
    assert len(polls) == 4 + 3  # 3 polls while paused: 2 in the pause loop, then resume


def test_stop_while_paused_saves_and_cancels(tmp_path, pair):
    polls = []

    def commands():
        polls.append(1)
        return [{"command": "pause"}] if len(polls) == 2 else []

    with pytest.raises(Cancelled):
        train_pair(*pair, tmp_path, settings(iterations=10), quiet, lambda: len(polls) >= 4, commands=commands)
    assert load_checkpoint(tmp_path)[2]["iteration"] == 1


def test_autobackups_keep_only_the_newest(tmp_path, pair):
    train_pair(*pair, tmp_path, settings(iterations=4, autobackup_hours=1e-9, backups_kept=2), quiet, never)
    backups = list_backups(tmp_path)
    assert len(backups) == 2 and backups[-1].name.endswith("-00000004")


def test_automatic_phases_move_on_at_a_plateau(tmp_path, pair):
    # a window of a few milliseconds and a delta no run beats: every window is a plateau
    result = train_pair(*pair, tmp_path, settings(iterations=30, auto_phases=True, plateau_minutes=1e-5,
                                                  plateau_delta=100.0, gan_dims=4), quiet, never)
    assert result["phase"] == "gan"
    marks = history_of(tmp_path)["phase_marks"]
    assert [p for _, p in marks] == ["warp", "refine", "gan"]
    assert len(list_backups(tmp_path)) == 2


def test_grayscale_colour_transfer_and_worker_processes(tmp_path, pair):
    # a phase command on every step: the workers take the new augmentation each time (refine stays refine)
    result = train_pair(*pair, tmp_path, settings(iterations=3, grayscale=True, colour_transfer="rct",
                                                  random_hsv=0.05, workers=1),
                        quiet, never, commands=lambda: [{"command": "phase", "phase": "refine"}])
    assert result["iterations"] == 3 and result["phase"] == "refine"
    assert load_checkpoint(tmp_path)[1].channels == 1
    assert cv2.imread(str(tmp_path / "preview.png")) is not None
