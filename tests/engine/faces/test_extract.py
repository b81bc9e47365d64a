import cv2
import numpy as np
import pytest

from engine.errors import Cancelled, EngineError
from engine.faces.extract import ExtractParams, extract_faces
from engine.geometry.align import face_type, template_points, transform_points
from engine.media.encode import write_video
from engine.workspace import Workspace


def _run(ws, **params):
    progress = []
    result = extract_faces(ws, ExtractParams(**params), lambda p, m, s: progress.append(p), lambda: False)
    return result, progress


def test_extracts_aligned_faces_from_portrait_clip(tmp_path, portrait_clips):
    ws = Workspace(tmp_path)
    result, progress = _run(ws, video=str(portrait_clips["hopper"]), faceset="src", size=128)
    assert result["frames"] == 12 and result["faces"] == 12 and result["frames_with_faces"] == 12
    assert progress[-1] == pytest.approx(1.0) and progress == sorted(progress)
    faces = ws.facesets.faces("src")
    assert [f.frame for f in faces] == list(range(12))
    assert {f.track for f in faces} == {1} and result["tracks"] == 1
    tpl = template_points(128, face_type("full"))
    for f in faces:
        img = cv2.imread(str(f.image))
        assert img.shape == (128, 128, 3)
        # the stored transform puts the eyes and mouth where the template has them
        aligned = transform_points(f.transform, f.landmarks68)
        assert np.abs(aligned[36:48] - tpl[36:48]).mean() < 128 * 0.04
        assert f.landmarks.shape == (468, 2)
        assert f.face_type == "full" and f.size == 128 and f.sharpness > 0 and 20 < f.brightness < 235
        assert abs(f.yaw) < 25 and abs(f.roll) < 15


def test_range_and_reextract_replace(tmp_path, portrait_clips):
    ws = Workspace(tmp_path)
    _run(ws, video=str(portrait_clips["astronaut"]), faceset="dst", frame_start=3, frame_end=7, size=64)
    assert [f.frame for f in ws.facesets.faces("dst")] == [3, 4, 5, 6]
    _run(ws, video=str(portrait_clips["astronaut"]), faceset="dst", frame_start=5, frame_end=9, size=64)
    assert [f.frame for f in ws.facesets.faces("dst")] == [3, 4, 5, 6, 7, 8]
    assert len(list(ws.faceset_dir("dst").glob("*.jpg"))) == 6


def test_unchanged_range_is_reused_and_an_interrupted_one_resumes(tmp_path, portrait_clips):
    ws = Workspace(tmp_path)
    clip = str(portrait_clips["hopper"])
    calls = []

    def stop_after_six():
        calls.append(1)
        return len(calls) > 6

    with pytest.raises(Cancelled):
        extract_faces(ws, ExtractParams(video=clip, faceset="src", size=64), lambda *a: None, stop_after_six)
    kept = [f.frame for f in ws.facesets.faces("src")]
    assert kept == list(range(len(kept))) and 0 < len(kept) <= 6  # finished frames were committed
    result, progress = _run(ws, video=clip, faceset="src", size=64)
    assert not result["reused"] and result["faces"] == 12
    assert sum(p < 1 for p in progress) == 12 - len(kept) - 1  # only the missing frames were done again
    assert [f.frame for f in ws.facesets.faces("src")] == list(range(12))
    again, _ = _run(ws, video=clip, faceset="src", size=64)
    assert again["reused"] and again["faces"] == 12
    changed, _ = _run(ws, video=clip, faceset="src", size=64, smooth=False)
    assert not changed["reused"]


def test_clip_without_faces_is_a_clear_error(tmp_path):
    rng = np.random.default_rng(0)
    clip = write_video(tmp_path / "noise.mp4", (rng.integers(0, 255, (96, 128, 3), np.uint8) for _ in range(4)), 10)
    with pytest.raises(EngineError) as err:
        _run(Workspace(tmp_path / "ws"), video=str(clip), faceset="x", size=64)
    assert err.value.code == "no_faces"


def test_bad_inputs(tmp_path):
    ws = Workspace(tmp_path)
    with pytest.raises(EngineError) as err:
        _run(ws, video=str(tmp_path / "missing.mp4"), faceset="x")
    assert err.value.code == "not_found"
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video at all")
    with pytest.raises(EngineError) as err:
        _run(ws, video=str(bad), faceset="x")
    assert err.value.code == "bad_media"
    with pytest.raises(ValueError, match="colour"):
        ExtractParams.from_dict({"video": "v", "faceset": "x", "colour": 1})
    with pytest.raises(ValueError, match="size"):
        ExtractParams.from_dict({"video": "v", "faceset": "x", "size": "big"})
    with pytest.raises(ValueError, match="outside"):
        ExtractParams.from_dict({"video": "v", "faceset": "x", "size": 2048})
    with pytest.raises(ValueError, match="face type"):
        ExtractParams.from_dict({"video": "v", "faceset": "x", "face_type": "torso"})


def test_real_clip(tmp_path, shared_clip):
    ws = Workspace(tmp_path)
    result, _ = _run(ws, video=str(shared_clip("styletalk__samples_source_video_video_Obama_clip1.mp4")),
                     faceset="obama", frame_end=10, size=128)
    assert result["faces"] == 10


def test_two_people_in_a_frame_are_both_stored_largest_first(tmp_path):
    from engine.media.synthetic import camera_frames, portrait

    left = camera_frames(portrait("hopper"), 10, (320, 320), centre=(0.5, 0.36))
    right = camera_frames(portrait("astronaut"), 10, (240, 240), seed=1, centre=(0.45, 0.24))
    frames = (np.hstack([a, cv2.copyMakeBorder(b, 0, 80, 0, 0, cv2.BORDER_REPLICATE)]) for a, b in zip(left, right))
    clip = write_video(tmp_path / "two.mp4", frames, 10)
    ws = Workspace(tmp_path / "ws")
    result, _ = _run(ws, video=str(clip), faceset="both", size=64)
    assert result["frames_with_faces"] == 10 and result["faces"] == 20
    everyone = ws.facesets.faces("both", everyone=True)
    main = [f for f in everyone if f.face_index == 0]
    second = [f for f in everyone if f.face_index == 1]
    assert len(main) == len(second) == 10
    area = lambda f: (f.box[2] - f.box[0]) * (f.box[3] - f.box[1])
    assert all(area(a) > area(b) for a, b in zip(main, second))
    # one track per person, and the faceset stands for one of them
    assert len({f.track for f in main}) == 1 and len({f.track for f in second}) == 1
    assert {f.track for f in main} != {f.track for f in second}
    assert len(ws.facesets.faces("both")) == 10


def test_a_wider_faceset_feeds_a_narrower_model(tmp_path, portrait_clips):
    from engine.recipes_train import load_samples

    ws = Workspace(tmp_path)
    clip = str(portrait_clips["hopper"])
    _run(ws, video=clip, faceset="whole", size=256, face_type="whole_face", frame_end=4)
    _run(ws, video=clip, faceset="full", size=128, face_type="full", frame_end=4)
    recut = load_samples(ws, "whole", "full", max_size=128)
    fresh = load_samples(ws, "full")
    assert recut.images.shape == fresh.images.shape == (4, 128, 128, 3)
    np.testing.assert_allclose(recut.landmarks, fresh.landmarks, atol=0.5)
    assert np.abs(recut.images.astype(int) - fresh.images.astype(int)).mean() < 6  # same crop, resampled
    with pytest.raises(EngineError) as err:
        load_samples(ws, "full", "head")
    assert err.value.code == "bad_request" and "cannot feed" in err.value.message
