"""Reconstruction SSIM: a tiny model trained with held-back faces, measured on them and on seen ones."""

import json

import cv2
import numpy as np
import pytest

from engine.errors import Cancelled, EngineError
from engine.evaluate.crops import evenly_spaced, model_crops
from engine.evaluate.reconstruct import NO_HOLDOUT, masked_ssim, reconstruction, ssim_map
from engine.facesets import FaceRecord
from engine.geometry.align import FACE_TYPES, align_transform, template_points, transform_points
from engine.holdout import HOLDOUT_FILE, read_holdout
from engine.jobs import JobRunner
from engine.recipes import STAGES
from engine.recipes_train import load_samples
from engine.workspace import Workspace

SIZE = 64
FRAMES = 12
TINY = {"resolution": 32, "arch": "df", "ae_dims": 32, "e_dims": 8, "d_dims": 8, "d_mask_dims": 4,
        "batch_size": 4, "workers": 0}


def _faces(ws: Workspace, name: str, tone: tuple, face_type: str = "full") -> None:
    """A faceset of smooth cartoon faces (skin, eyes and mouth where the landmarks put them), each
    frame a little different."""
    video = ws.root / f"{name}.mp4"
    video.write_bytes(b"clip")
    media = ws.register_media(video, 320, 240, 25.0, FRAMES)
    fs = ws.facesets.ensure(name, face_type, SIZE)
    template = template_points(100, FACE_TYPES["full"])
    for frame in range(FRAMES):
        lm = template + [100 + 3 * frame, 60 + frame % 4]
        m = align_transform(lm, SIZE, face_type)
        crop = transform_points(m, lm)
        img = np.zeros((SIZE, SIZE, 3), np.uint8)
        img[:] = (60 + 2 * frame, 80, 100)
        centre = crop[27:36].mean(0).astype(int)
        axes = (int(np.ptp(crop[:17, 0]) / 2) + frame % 3, int(np.ptp(crop[:, 1]) / 2))
        cv2.ellipse(img, (int(centre[0]), int(centre[1])), axes, 0, 0, 360, tone, -1)
        for eye in (crop[36:42], crop[42:48]):
            c = eye.mean(0)
            cv2.circle(img, (int(c[0]), int(c[1])), 2 + frame % 2, (30, 30, 30), -1)
        cv2.fillPoly(img, [crop[48:60].round().astype(np.int32)], (40, 40, 160))
        img = cv2.GaussianBlur(img, (3, 3), 0)
        path = ws.faceset_dir(name) / f"m{media}_f{frame:06d}_0.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), img)
        ws.facesets.add(fs, FaceRecord(
            media_id=media, frame=frame, face_index=0, box=(0, 0, 1, 1), score=0.9,
            landmarks=np.zeros((468, 2), np.float32), landmarks68=lm.astype(np.float32), transform=m,
            image=path, track=1, face_type=face_type, size=SIZE))


def _copy_model(ws: Workspace, name: str, to: Workspace, as_name: str) -> None:
    """A model's files (checkpoint, holdout) under another name or workspace."""
    to.model_dir(as_name).mkdir(parents=True, exist_ok=True)
    for f in ws.model_dir(name).iterdir():
        if f.is_file():
            (to.model_dir(as_name) / f.name).write_bytes(f.read_bytes())


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A workspace with two facesets, model "held" trained with 20 % held back, "plain" (the same
    weights) as if trained without: no holdout file beside it."""
    ws = Workspace(tmp_path_factory.mktemp("reconstruct") / "ws")
    _faces(ws, "src", (90, 140, 200))
    _faces(ws, "dst", (120, 160, 180))
    runner = JobRunner(ws, STAGES, recover=False)
    try:
        job = runner.wait(runner.submit("train", {"model": "held", "source": "src", "destination": "dst",
                                                  "iterations": 4, "holdout": 0.2, **TINY})["id"])
        assert job["state"] == "done", job["error"]
        _copy_model(ws, "held", ws, "plain")
        (ws.model_dir("plain") / HOLDOUT_FILE).unlink()
        yield ws
    finally:
        runner.shutdown()
        ws.close()


def test_held_back_and_seen_faces_are_measured_on_both_sides(trained):
    report = reconstruction(trained, "held")
    assert report["available"] is True
    assert report["resolution"] == 32 and report["face_type"] == "full" and report["share"] == 0.2
    held = read_holdout(trained.model_dir("held"))
    for side, name in (("source", "src"), ("destination", "dst")):
        figures = report[side]
        assert figures["faceset"] == name
        count = len(held[side]["faces"])
        assert count == 3  # ceil(0.2 * 12): the last three frames
        for part in ("held_back", "seen"):
            assert figures[part]["faces"] == count, (side, part)
            ssim = figures[part]["ssim"]
            assert ssim["count"] == count
            assert 0 < ssim["min"] <= ssim["median"] <= ssim["max"] <= 1, (side, part, ssim)
        assert ssim["max"] < 0.999  # the model's drawing, not the face compared with itself


def test_each_side_is_redrawn_by_its_own_path(trained, monkeypatch):
    """Source faces through the source decoder, destination faces through the destination's, as in training."""
    from engine.models.autoencoder import DFAutoencoder

    seen = []
    forward = DFAutoencoder.forward

    def spy(self, x, side):
        seen.append((side, float(x.float().mean())))
        return forward(self, x, side)

    monkeypatch.setattr(DFAutoencoder, "forward", spy)
    reconstruction(trained, "held")
    assert [side for side, _ in seen] == ["src", "src", "dst", "dst"]  # held back, seen; per side
    assert seen[0][1] != seen[2][1]  # different faces went in


def test_a_limit_caps_the_faces_measured(trained):
    report = reconstruction(trained, "held", limit=2)
    assert report["source"]["held_back"]["faces"] == 2
    assert report["source"]["seen"]["faces"] == 2


def test_a_model_without_holdout_says_why_it_has_no_figure(trained):
    report = reconstruction(trained, "plain")
    assert report == {"available": False, "reason": NO_HOLDOUT}
    assert "--holdout" in report["reason"]


def test_a_missing_model_is_a_clear_error(trained):
    with pytest.raises(EngineError) as err:
        reconstruction(trained, "nobody")
    assert err.value.code == "not_found" and "nobody" in err.value.message


def test_a_report_cancels_between_batches(trained):
    with pytest.raises(Cancelled):
        reconstruction(trained, "held", should_stop=lambda: True)


def test_a_deleted_faceset_leaves_the_other_side_measured(tmp_path, trained):
    held = read_holdout(trained.model_dir("held"))
    held["destination"]["faceset"] = "gone"  # a holdout naming a faceset deleted since training

    other = tmp_path / "ws"
    ws = Workspace(other)
    try:
        _faces(ws, "src", (90, 140, 200))
        _copy_model(trained, "held", ws, "held")
        (ws.model_dir("held") / HOLDOUT_FILE).write_text(json.dumps(held))
        report = reconstruction(ws, "held")
        assert report["source"]["held_back"]["faces"] == 3
        assert report["destination"]["held_back"]["faces"] == 0
        assert "gone" in report["destination"]["reason"]
    finally:
        ws.close()


def test_crops_match_what_training_fed_the_model(tmp_path):
    """The report's crop step repeats training's (recipes_train.load_samples), face type re-cut included."""
    ws = Workspace(tmp_path / "ws")
    try:
        _faces(ws, "wide", (90, 140, 200), face_type="whole_face")
        records = ws.facesets.faces("wide")
        for face_type, size in (("full", 32), ("whole_face", 32), ("full", 64)):
            trained_on = load_samples(ws, "wide", face_type, size)
            images, landmarks, kept = model_crops(records, SIZE, "whole_face", face_type, size)
            assert len(kept) == FRAMES
            np.testing.assert_array_equal(images, trained_on.images)
            np.testing.assert_allclose(landmarks, trained_on.landmarks, atol=1e-4)
        with pytest.raises(EngineError, match="cannot feed"):
            model_crops(records, SIZE, "full", "head", 32)
        records[0].image.unlink()  # a face file deleted by hand is skipped
        assert len(model_crops(records, SIZE, "whole_face", "full", 32)[2]) == FRAMES - 1
    finally:
        ws.close()


def test_ssim_of_an_image_with_itself_is_one_and_falls_with_noise():
    rng = np.random.default_rng(1)
    ys, xs = np.mgrid[0:64, 0:64]
    image = np.dstack([(xs * 3) % 256, (ys * 2) % 256, (xs + ys) % 256]).astype(np.uint8)
    cv2.circle(image, (32, 32), 12, (200, 180, 160), -1)
    assert masked_ssim(image, image) == pytest.approx(1.0, abs=1e-9)
    previous = 1.0
    for sigma in (4, 12, 30, 60):
        noisy = np.clip(image + rng.normal(0, sigma, image.shape), 0, 255).astype(np.uint8)
        score = masked_ssim(image, noisy)
        assert score < previous, (sigma, score, previous)
        previous = score
    assert previous < 0.5
    # inside a mask only: noise outside it does not count
    mask = np.zeros((64, 64), np.float32)
    mask[16:48, 16:48] = 1
    outside = image.copy()
    outside[:4] = 255 - outside[:4]
    assert masked_ssim(image, outside, mask) == pytest.approx(1.0, abs=1e-9)
    assert masked_ssim(image, outside) < 1
    assert masked_ssim(image, image, np.zeros((64, 64))) is None
    with pytest.raises(ValueError, match="one size"):
        ssim_map(image, image[:32])


def test_ssim_agrees_with_scikit_image():
    skimage_metrics = pytest.importorskip("skimage.metrics")
    rng = np.random.default_rng(2)
    a = cv2.GaussianBlur(rng.integers(0, 256, (48, 48), dtype=np.uint8), (5, 5), 0)
    b = np.clip(a + rng.normal(0, 20, a.shape), 0, 255).astype(np.uint8)
    ours = ssim_map(a, b)
    _, theirs = skimage_metrics.structural_similarity(a, b, gaussian_weights=True, sigma=1.5, data_range=255,
                                                      use_sample_covariance=False, full=True)
    inner = (slice(6, -6), slice(6, -6))  # the borders are padded differently
    np.testing.assert_allclose(ours[inner], theirs[inner], atol=1e-6)


def test_evenly_spaced_spreads_over_the_whole_list():
    assert evenly_spaced(list(range(9)), 3) == [0, 4, 8]
    assert evenly_spaced(list(range(9)), 1) == [4]
    assert evenly_spaced(list(range(4)), 9) == [0, 1, 2, 3]
    assert evenly_spaced([], 3) == [] and evenly_spaced([1, 2], 0) == []
    assert len(set(evenly_spaced(list(range(7)), 6))) == 6

