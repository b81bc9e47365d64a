"""The quality report's face measurement: the main face of each frame, found anew on every frame,
the right one among several, none carried over a cut, and identity descriptors of real people."""

from pathlib import Path

import cv2
import numpy as np
import pytest

from engine.errors import Cancelled, EngineError
from engine.evaluate import observe
from engine.evaluate.observe import FaceObserver, faceset_embeddings, identity_available, video_embeddings
from engine.facesets import FaceRecord
from engine.geometry.align import align_transform
from engine.media.decode import iter_frames

TRAIN = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "faces" / "train"
OBAMA = TRAIN / "styletalk__samples_source_video_video_Obama_clip1.mp4"
KRISTI = TRAIN / "styletalk__samples_source_video_video_KristiNoem.mp4"
needs_identity = pytest.mark.skipif(not identity_available(), reason="the identity extra (dlib-bin) is not installed")


@pytest.fixture(scope="module")
def clips():
    if not (OBAMA.is_file() and KRISTI.is_file()):
        pytest.skip(f"the training clips are not in {TRAIN}")
    return {"obama": [f for _, f in iter_frames(OBAMA, 0, 4)], "kristi": [f for _, f in iter_frames(KRISTI, 0, 4)]}


@pytest.fixture(scope="module")
def geometry():
    return FaceObserver(identity=False)


def _inside(points: np.ndarray, box) -> bool:
    return bool((points[:, 0] >= box[0] - 1).all() and (points[:, 0] <= box[2] + 1).all()
                and (points[:, 1] >= box[1] - 1).all() and (points[:, 1] <= box[3] + 1).all())


def test_a_real_face_is_measured_without_smoothing(clips, geometry):
    frame = clips["obama"][0]
    obs = geometry.step(0, frame)
    assert obs is not None and obs.frame == 0 and obs.embedding is None
    assert obs.landmarks68.shape == (68, 2) and np.isfinite(obs.landmarks68).all()
    h, w = frame.shape[:2]
    x0, y0, x1, y1 = obs.box
    assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h and x1 - x0 > w / 4  # a talking-head close-up
    assert _inside(obs.landmarks68, obs.box)
    yaw, pitch, roll = obs.pose
    assert abs(yaw) < 30 and abs(pitch) < 30 and abs(roll) < 15  # he faces the camera
    assert 0.25 < obs.inter_ocular / (x1 - x0) < 0.6
    # measurement, not a filter: the same frame again (even right after another) gives the same points
    geometry.step(1, clips["obama"][3])
    again = geometry.step(2, frame)
    np.testing.assert_allclose(again.landmarks68, obs.landmarks68, atol=1e-3)


def _two_faces(big: np.ndarray, small: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
    """A canvas with `big` on the left and `small` (at 60 %) on the right; where `small` starts."""
    small = cv2.resize(small, None, fx=0.6, fy=0.6, interpolation=cv2.INTER_AREA)
    canvas = np.full((big.shape[0] + 40, big.shape[1] + small.shape[1] + 120, 3), 60, np.uint8)
    canvas[20:20 + big.shape[0], 20:20 + big.shape[1]] = big
    at = (big.shape[1] + 100, 60)
    canvas[at[1]:at[1] + small.shape[0], at[0]:at[0] + small.shape[1]] = small
    return canvas, at


def test_the_largest_face_or_the_one_near_a_box(clips, geometry):
    canvas, (ox, oy) = _two_faces(clips["obama"][0], clips["kristi"][0])
    largest = geometry.step(10, canvas)
    assert largest is not None and largest.box[2] < ox  # Obama, on the left
    alone = geometry.step(0, cv2.resize(clips["kristi"][0], None, fx=0.6, fy=0.6, interpolation=cv2.INTER_AREA))
    near = tuple(np.array(alone.box) + [ox, oy, ox, oy])  # where Kristi Noem's face is on the canvas
    picked = geometry.step(11, canvas, near=near)
    assert picked is not None and picked.box[0] > ox
    np.testing.assert_allclose(picked.landmarks68, alone.landmarks68 + [ox, oy], atol=2.0)
    # a box where there is no face: the swapped frame has lost it, whatever else is in the picture
    assert geometry.step(12, canvas, near=(canvas.shape[1] - 30, 2, canvas.shape[1] - 2, 30)) is None


def test_no_face_is_carried_over_a_cut_or_a_blank(clips, geometry):
    obama, kristi = clips["obama"], clips["kristi"]
    geometry.step(20, obama[0])
    assert geometry.step(21, np.full_like(obama[0], 90)) is None  # no ghost of the frame before
    fresh = FaceObserver(identity=False).step(0, kristi[1])
    geometry.step(22, obama[1])
    after_cut = geometry.step(23, kristi[1])
    np.testing.assert_allclose(after_cut.landmarks68, fresh.landmarks68, atol=1e-3)


def test_a_face_the_detector_misses_is_followed_from_the_frame_before_only(clips, monkeypatch):
    obs = FaceObserver(identity=False)
    detect, missing = obs.detector.detect, {"now": False}
    monkeypatch.setattr(obs.detector, "detect", lambda *a, **k: [] if missing["now"] else detect(*a, **k))
    first = obs.step(5, clips["obama"][0])
    missing["now"] = True
    followed = obs.step(6, clips["obama"][1])
    assert followed is not None
    assert np.abs(followed.landmarks68 - first.landmarks68).mean() < 0.1 * first.inter_ocular
    assert obs.step(7, np.full_like(clips["obama"][0], 90)) is None  # nothing there to follow
    assert obs.step(8, clips["obama"][2]) is None  # frame 7 had no face: nothing to follow from
    missing["now"] = False
    assert obs.step(10, clips["obama"][2]) is not None
    missing["now"] = True
    assert obs.step(12, clips["obama"][3]) is None  # a gap in the frame numbers: not the frame before


def test_a_frame_that_is_not_an_image_is_refused(geometry):
    with pytest.raises(EngineError) as err:
        geometry.step(0, np.zeros((10, 10), np.uint8))
    assert err.value.code == "bad_media"


@needs_identity
def test_identity_descriptors_from_frames_videos_and_facesets(clips, geometry, tmp_path):
    obs = FaceObserver(identity=True)
    a = obs.step(0, clips["obama"][0])
    b = obs.step(1, clips["obama"][3])
    c = obs.step(2, clips["kristi"][0])
    assert a.embedding.shape == (128,) and a.embedding.dtype == np.float32
    assert np.linalg.norm(a.embedding - b.embedding) < 0.4 < 0.6 < np.linalg.norm(a.embedding - c.embedding)

    video = video_embeddings(OBAMA, limit=3)
    assert video.shape == (3, 128)
    assert np.linalg.norm(video - a.embedding, axis=1).max() < 0.5

    # faceset faces: stored aligned crops, landmarks carried into them by the face's transform
    records = []
    for i, frame in enumerate(clips["kristi"]):
        lm = geometry.step(100 + 2 * i, frame).landmarks68
        m = align_transform(lm, 128, "whole_face")
        path = tmp_path / f"face{i}.jpg"
        cv2.imwrite(str(path), cv2.warpAffine(frame, m, (128, 128), flags=cv2.INTER_LINEAR))
        records.append(FaceRecord(media_id=1, frame=i, face_index=0, box=(0, 0, 1, 1), score=1.0,
                                  landmarks=np.zeros((468, 2), np.float32), landmarks68=lm, transform=m, image=path,
                                  face_type="whole_face", size=128))
    records[2].image.unlink()  # a crop that went missing is skipped
    faces = faceset_embeddings(records, limit=3)  # frames 0, 2 (missing) and 3 of 0..3
    assert faces.shape == (2, 128)
    assert np.linalg.norm(faces - c.embedding, axis=1).max() < 0.4
    assert np.linalg.norm(faces - a.embedding, axis=1).min() > 0.6
    assert faceset_embeddings([], limit=8).shape == (0, 128)


@needs_identity
def test_video_and_faceset_embeddings_can_be_cancelled(clips, tmp_path):
    with pytest.raises(Cancelled):
        video_embeddings(KRISTI, limit=4, should_stop=lambda: True)
    with pytest.raises(Cancelled):  # before the first face is read: the records need not exist
        faceset_embeddings([object()] * 5, limit=4, should_stop=lambda: True)


def test_without_the_identity_extra_geometry_still_works(clips, monkeypatch):
    monkeypatch.setattr(observe, "identity_available", lambda: False)
    obs = FaceObserver(identity=True)
    assert obs.step(0, clips["obama"][0]).embedding is None
    with pytest.raises(EngineError) as err:
        faceset_embeddings([])
    assert err.value.code == "identity_unavailable"
