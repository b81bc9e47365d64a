import cv2
import numpy as np
import pytest

from engine.errors import EngineError
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
    assert result["frames"] == 12 and result["faces"] == 12
    assert progress[-1] == pytest.approx(1.0) and progress == sorted(progress)
    faces = ws.faces("src")
    assert [f.frame for f in faces] == list(range(12))
    tpl = template_points(128, face_type("full"))
    for f in faces:
        img = cv2.imread(str(f.image))
        assert img.shape == (128, 128, 3)
        # the stored transform puts the eyes and mouth where the template has them
        aligned = transform_points(f.transform, f.landmarks68)
        assert np.abs(aligned[36:48] - tpl[36:48]).mean() < 128 * 0.04
        assert f.landmarks.shape == (478, 2)


def test_range_and_reextract_replace(tmp_path, portrait_clips):
    ws = Workspace(tmp_path)
    _run(ws, video=str(portrait_clips["astronaut"]), faceset="dst", frame_start=3, frame_end=7, size=64)
    assert [f.frame for f in ws.faces("dst")] == [3, 4, 5, 6]
    _run(ws, video=str(portrait_clips["astronaut"]), faceset="dst", frame_start=5, frame_end=9, size=64)
    assert [f.frame for f in ws.faces("dst")] == [3, 4, 5, 6, 7, 8]
    assert len(list(ws.faceset_dir("dst").glob("*.jpg"))) == 6


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


def test_real_clip(tmp_path, shared_clip):
    ws = Workspace(tmp_path)
    result, _ = _run(ws, video=str(shared_clip("styletalk__samples_source_video_video_Obama_clip1.mp4")),
                     faceset="obama", frame_end=10, size=128)
    assert result["faces"] == 10
