"""The matte job: a shot's face mask as gray PNGs in frame space, shaped, smoothed along tracks,
on synthetic faces whose truth is known and on a real extraction."""

import cv2
import numpy as np
import pytest

from engine.errors import Cancelled, EngineError
from engine.facesets import FaceRecord
from engine.geometry.align import FACE_TYPES, align_transform, template_points
from engine.geometry.hull import hull_mask
from engine.geometry.mask_shape import MaskShape, edge_change
from engine.masks.matte import MatteParams, matte_shot
from engine.recipes_masks import MASK_STAGES
from engine.workspace import Workspace

SIZE = 128
W, H = 320, 240


def _lm(frame: int) -> np.ndarray:
    """An upright face moving right 2 px a frame."""
    return template_points(100, FACE_TYPES["full"]) * 1.1 + [90 + 2 * frame, 50]


def _fill(ws, clip, frames=range(12), track_of=lambda f: 1) -> list[FaceRecord]:
    media = ws.register_media(clip, W, H, 12.0, 12)
    fs = ws.facesets.ensure("f", "full", SIZE)
    for frame in frames:
        lm = _lm(frame)
        path = ws.faceset_dir("f") / f"m{media}_f{frame:06d}_0.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), np.full((SIZE, SIZE, 3), 100, np.uint8))
        ws.facesets.add(fs, FaceRecord(
            media_id=media, frame=frame, face_index=0, box=(0, 0, 1, 1), score=0.9,
            landmarks=np.zeros((468, 2), np.float32), landmarks68=lm.astype(np.float32),
            transform=align_transform(lm, SIZE, "full"), image=path, track=track_of(frame), face_type="full", size=SIZE))
    return ws.facesets.faces("f", media, everyone=True)


def _run(ws, clip, out, **params):
    p = MatteParams.from_dict({"faceset": "f", "video": str(clip), **params})
    return matte_shot(ws, p, out, lambda *a: None, lambda: False)


def _read(result, frame):
    return cv2.imread(f"{result['directory']}/matte_{frame:06d}.png", cv2.IMREAD_UNCHANGED)


def _edges(m):
    """Top and bottom edge rows (sub-pixel) of the matte along the face's middle column."""
    col = m[:, int(np.argmax(m.sum(0)))] / 255.0
    mid = int(np.argmax(col > 0.5)) + 20
    return mid - col[:mid].sum(), mid + col[mid:].sum()


@pytest.fixture
def ws(tmp_path):
    w = Workspace(tmp_path / "ws")
    yield w
    w.close()


def test_hull_matte_is_the_face_in_frame_space(ws, portrait_clips, tmp_path):
    _fill(ws, portrait_clips["hopper"], frames=range(2, 10))
    r = _run(ws, portrait_clips["hopper"], tmp_path / "out", frame_start=1, frame_end=11)
    assert r["pattern"] == "matte_%06d.png" and r["first_frame"] == 1 and r["count"] == 10 and r["faces"] == 8
    assert _read(r, 1).max() == 0 and _read(r, 10).max() == 0  # frames without a face are black
    for frame in (2, 6, 9):
        m = _read(r, frame)
        assert m.shape == (H, W) and m.dtype == np.uint8
        truth = hull_mask(_lm(frame), (H, W)) * 255  # the hull drawn straight in the frame
        inter, union = np.minimum(m, truth).sum(), np.maximum(m, truth).sum()
        assert inter / union > 0.97
    assert not (tmp_path / "out" / "matte_000000.png").exists()


def test_sides_and_exclusions_shape_the_matte(ws, portrait_clips, tmp_path):
    faces = _fill(ws, portrait_clips["hopper"], frames=range(3))
    plain = _read(_run(ws, portrait_clips["hopper"], tmp_path / "a"), 1)
    top = _read(_run(ws, portrait_clips["hopper"], tmp_path / "b", shape={"top": 0.05}), 1)
    scale = np.linalg.norm(faces[1].transform[:, 0])  # crop px per frame px
    (t0, b0), (t1, b1) = _edges(plain), _edges(top)
    assert t1 - t0 == pytest.approx(0.05 * SIZE / scale, abs=0.3) and b1 == pytest.approx(b0, abs=0.3)
    # a drawn exclusion stays out of the matte, even dilated and blurred, with a hull source
    ws.masks.set_label(faces[1].id, [{"include": True, "points": [[0, 0], [1, 0], [1, 1], [0, 1]]},
                                     {"include": False, "points": [[0.3, 0.6], [0.7, 0.6], [0.7, 1], [0.3, 1]]}])
    r = _run(ws, portrait_clips["hopper"], tmp_path / "c", source="hull", shape={"erode": -0.05, "blur": 0.1})
    m = _read(r, 1)
    centre = np.array([0.5 * SIZE, 0.8 * SIZE, 1.0])
    inv = cv2.invertAffineTransform(faces[1].transform)
    x, y = inv @ centre
    assert m[int(y), int(x)] == 0 and m[int(y) - 40, int(x)] == 255
    # with source auto the label itself is the mask: the whole crop square minus the hole
    auto = _read(_run(ws, portrait_clips["hopper"], tmp_path / "d"), 1)
    assert (auto > 127).sum() > 1.3 * (plain > 127).sum()


def test_temporal_smoothing_steadies_a_shimmering_mask_without_lag(ws, portrait_clips, tmp_path):
    faces = _fill(ws, portrait_clips["hopper"])
    rng = np.random.default_rng(0)
    for f in faces:  # a label whose edge shimmers ±2 crop px from frame to frame
        d = rng.uniform(-2, 2, 4) / SIZE
        ws.masks.set_label(f.id, [{"include": True, "points": [[0.2 + d[0], 0.2 + d[1]], [0.8 + d[2], 0.2 + d[1]],
                                                               [0.8 + d[2], 0.8 + d[3]], [0.2 + d[0], 0.8 + d[3]]]}])
    raw = _run(ws, portrait_clips["hopper"], tmp_path / "raw")
    smooth = _run(ws, portrait_clips["hopper"], tmp_path / "smooth", temporal=1.5)
    assert smooth["count"] == raw["count"] == 12

    def change(r):
        ms = [_read(r, i).astype(np.float32) / 255 for i in range(12)]
        # the face moves 2 px a frame: compare each frame with the next moved back
        back = np.float32([[1, 0, -2], [0, 1, 0]])
        return np.mean([edge_change(cv2.warpAffine(b, back, (W, H)), a) for a, b in zip(ms, ms[1:])])
    assert change(smooth) < 0.6 * change(raw)
    # no lag: the smoothed matte's centre is where the raw one is, frame by frame
    for i in (4, 7):
        a, b = _read(raw, i).astype(float), _read(smooth, i).astype(float)
        xs = np.arange(W)
        assert (a.sum(0) @ xs) / a.sum() == pytest.approx((b.sum(0) @ xs) / b.sum(), abs=0.5)


def test_a_track_gap_splits_the_smoothing(ws, portrait_clips, tmp_path):
    # two tracks: frames 0-5 and 6-11; the second's masks are much bigger
    faces = _fill(ws, portrait_clips["hopper"], track_of=lambda f: 1 if f < 6 else 2)
    ws.facesets.choose_people("f", [1, 2])
    for f in faces[6:]:
        ws.masks.set_label(f.id, [{"include": True, "points": [[0, 0], [1, 0], [1, 1], [0, 1]]}])
    plain = _run(ws, portrait_clips["hopper"], tmp_path / "p")
    smooth = _run(ws, portrait_clips["hopper"], tmp_path / "s", temporal=2.0)
    for i in (5, 6):  # next to the cut, nothing leaks from the other track
        assert np.abs(_read(plain, i).astype(int) - _read(smooth, i)).max() <= 1


def test_bad_params_missing_faces_and_cancel(ws, portrait_clips, tmp_path):
    with pytest.raises(ValueError):
        MatteParams.from_dict({"faceset": "f", "video": "v", "source": "learned-only"})
    with pytest.raises(ValueError):
        MatteParams.from_dict({"faceset": "f", "video": "v", "shape": {"erode": 2}})
    with pytest.raises(ValueError):
        MatteParams.from_dict({"faceset": "f", "video": "v", "temporal": -1})
    with pytest.raises(ValueError):
        MatteParams.from_dict({"faceset": "f", "video": "v", "colour": "red"})
    assert MatteParams.from_dict({"faceset": "f", "video": "v", "shape": {"blur": 0.1}}).shape == MaskShape(blur=0.1)
    _fill(ws, portrait_clips["hopper"], frames=range(3))
    with pytest.raises(EngineError) as err:
        _run(ws, portrait_clips["hopper"], tmp_path / "x", frame_start=5)
    assert err.value.code == "no_faces"
    with pytest.raises(Cancelled):
        matte_shot(ws, MatteParams(faceset="f", video=str(portrait_clips["hopper"])), tmp_path / "y",
                   lambda *a: None, lambda: True)


def test_matte_runs_as_a_job(ws, portrait_clips, tmp_path):
    from engine.jobs import JobRunner

    _fill(ws, portrait_clips["hopper"], frames=range(4))
    runner = JobRunner(ws, MASK_STAGES)
    try:
        job = runner.wait(runner.submit("mask_matte", {"faceset": "f", "video": str(portrait_clips["hopper"]),
                                                      "frame_end": 4, "shape": {"erode": 0.02}})["id"])
        assert job["state"] == "done", job["error"]
        assert job["result"]["count"] == 4 and str(ws.render_dir(job["id"])) == job["result"]["directory"]
        bad = runner.wait(runner.submit("mask_matte", {"faceset": "f", "video": "v", "shape": {"top": "x"}})["id"])
        assert bad["state"] == "failed" and bad["error"]["code"] == "bad_request"
    finally:
        runner.shutdown()


def test_matte_of_a_real_extraction(tmp_path, shared_clip):
    from engine.faces.extract import ExtractParams, extract_faces

    clip = shared_clip("styletalk__samples_source_video_video_Obama_clip1.mp4")
    ws = Workspace(tmp_path / "ws")
    extract_faces(ws, ExtractParams(video=str(clip), faceset="f", frame_end=8, size=128), lambda *a: None, lambda: False)
    r = _run(ws, clip, tmp_path / "m", frame_end=8, temporal=1.0)
    assert r["count"] == 8
    face = ws.facesets.faces("f")[3]
    m = _read(r, 3)
    nose = face.landmarks68[30]
    assert m[int(nose[1]), int(nose[0])] == 255 and m[0, 0] == 0
    assert 0.02 < (m > 127).mean() < 0.6
    ws.close()


def test_steady_transforms_follow_motion_without_lag_and_drop_the_wobble():
    from engine.masks.matte import steady_transforms

    rng = np.random.default_rng(3)
    faces, truth = [], {}
    for frame in list(range(20)) + list(range(25, 30)):  # a gap: two runs
        m = align_transform(_lm(frame), SIZE, "full")
        truth[frame] = m
        wobble = m.copy()
        wobble[:, 2] += rng.normal(0, 0.8, 2)  # the alignment shakes by about a pixel
        faces.append(FaceRecord(media_id=1, frame=frame, face_index=0, box=(0, 0, 1, 1), score=1.0,
                                landmarks=np.zeros((1, 2)), landmarks68=_lm(frame), transform=wobble, image="x",
                                track=1))
    steady = steady_transforms(faces, 2.0)
    err_raw = np.mean([np.abs(f.transform - truth[f.frame])[:, 2].mean() for f in faces])
    err = np.mean([np.abs(steady[(1, f.frame)] - truth[f.frame])[:, 2].mean() for f in faces])
    assert err < 0.6 * err_raw
    # without wobble, a steadily moving face's transforms come back as they were, ends included
    clean = [FaceRecord(**{**f.__dict__, "transform": truth[f.frame]}) for f in faces]
    for f in clean:
        np.testing.assert_allclose(steady_transforms(clean, 2.0)[(1, f.frame)], truth[f.frame], atol=1e-9)
