"""Identity and expression figures: exact on made-up faces, and telling people, poses and
expressions apart on real clips."""

from pathlib import Path

import cv2
import numpy as np
import pytest

from engine.evaluate.expression import expression_row, expression_summary
from engine.evaluate.identity import SAME_PERSON, identity_reference, identity_row, identity_summary
from engine.evaluate.observe import FaceObserver, identity_available, video_embeddings
from engine.evaluate.types import FaceObservation
from engine.geometry.align import MEAN_FACE_68, transform_points
from engine.media.decode import iter_frames

TRAIN = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "faces" / "train"
CLIP = "styletalk__samples_source_video_video_{}.mp4"


def _face(lm=None, pose=(0.0, 0.0, 0.0), embedding=None, frame=0) -> FaceObservation:
    lm = MEAN_FACE_68 * 100 + 50 if lm is None else lm
    return FaceObservation(frame, np.asarray(lm, np.float64), pose, (0, 0, 200, 200), embedding)


def test_identity_reference_is_the_mean_of_finite_descriptors():
    assert identity_reference(None) is None
    assert identity_reference(np.zeros((0, 128))) is None
    e = np.stack([np.full(128, 0.1), np.full(128, 0.3), np.full(128, np.nan)])
    np.testing.assert_allclose(identity_reference(e), np.full(128, 0.2))


def test_identity_rows_and_summary():
    source, destination = np.zeros(128), np.zeros(128)
    destination[0] = 1.0
    near_source = np.zeros(128, np.float32)
    near_source[0], near_source[1] = 0.2, 0.1
    row = identity_row(_face(embedding=near_source), source, destination)
    assert row["to_source"] == pytest.approx(np.hypot(0.2, 0.1))
    assert row["to_destination"] == pytest.approx(np.hypot(0.8, 0.1))
    assert row["closer_to_source"] is True
    far = np.zeros(128, np.float32)
    far[0] = 0.9
    assert identity_row(_face(embedding=far), source, destination)["closer_to_source"] is False
    assert identity_row(_face(embedding=None), source, destination) is None
    assert identity_row(None, source, destination) is None
    assert identity_row(_face(embedding=far), None, destination) is None

    rows = [row, None, identity_row(_face(embedding=far), source, destination), row]
    summary = identity_summary(rows, baseline=[1.0, 0.8, float("nan")])
    assert summary["available"] is True and summary["threshold"] == SAME_PERSON == 0.6
    assert summary["closer_to_source"] == pytest.approx(2 / 3)
    assert summary["to_source"]["count"] == 3 and summary["to_source"]["max"] == pytest.approx(0.9)
    assert summary["to_destination"]["min"] == pytest.approx(0.1)
    assert summary["destination_to_source"]["count"] == 2 and summary["destination_to_source"]["median"] == 0.9
    empty = identity_summary([None, None], baseline=[])
    assert empty["closer_to_source"] is None and empty["to_source"]["count"] == 0
    assert empty["destination_to_source"]["median"] is None


def test_expression_rows_in_inter_ocular_distances():
    dest = _face(pose=(10.0, -5.0, 179.0))
    io = dest.inter_ocular
    assert io > 20
    same = expression_row(dest, dest)
    assert same == {"landmarks": 0.0, "inner": 0.0, "yaw": 0.0, "pitch": 0.0, "roll": 0.0,
                    "signed": {"yaw": 0.0, "pitch": 0.0, "roll": 0.0}}
    moved = _face(lm=dest.landmarks68 + [3.0, 4.0], pose=(-5.0, 5.0, -178.0))
    row = expression_row(dest, moved)
    assert row["landmarks"] == pytest.approx(5.0 / io) and row["inner"] == pytest.approx(5.0 / io)
    assert row["yaw"] == pytest.approx(15.0) and row["pitch"] == pytest.approx(10.0)
    assert row["roll"] == pytest.approx(3.0)  # 179 and -178 are 3 degrees apart, not 357
    assert row["signed"] == pytest.approx({"yaw": -15.0, "pitch": 10.0, "roll": 3.0})  # result - destination
    jaw = dest.landmarks68.copy()
    jaw[:17, 1] += 6.8  # a dropped jaw line alone: the inner points (the expression) did not move
    row = expression_row(dest, _face(lm=jaw))
    assert row["inner"] == 0.0 and row["landmarks"] == pytest.approx(6.8 * 17 / 68 / io)
    assert expression_row(None, dest) is None and expression_row(dest, None) is None
    flat = _face(lm=np.zeros((68, 2)))
    assert expression_row(flat, dest)["landmarks"] is None  # no scale to measure by

    summary = expression_summary([same, None, expression_row(dest, moved)])
    assert set(summary) == {"landmarks", "inner", "yaw", "pitch", "roll", "offset", "centred"}
    assert summary["yaw"]["count"] == 2 and summary["yaw"]["max"] == pytest.approx(15.0)
    assert summary["landmarks"]["median"] == pytest.approx(2.5 / io)
    empty = expression_summary([])
    assert empty["roll"]["median"] is None and empty["offset"]["pitch"] is None
    assert empty["centred"]["pitch"]["count"] == 0


def test_a_steady_pose_offset_is_told_apart_from_a_head_not_following():
    """A swapped face whose shape reads 5 degrees of pitch on every frame: the offset holds the 5,
    the centred difference only what changes from frame to frame."""
    dest = _face(pose=(0.0, 0.0, 0.0))
    rows = [expression_row(dest, _face(lm=dest.landmarks68, pose=(0.0, 5.0 + wobble, 0.0)))
            for wobble in (-0.5, 0.0, 0.5, 0.0, 3.0)]
    summary = expression_summary(rows)
    assert summary["pitch"]["median"] == pytest.approx(5.0)
    assert summary["offset"] == pytest.approx({"yaw": 0.0, "pitch": 5.0, "roll": 0.0})
    assert summary["centred"]["pitch"]["median"] == pytest.approx(0.5)  # |-0.5|, 0, 0.5, 0, 3
    assert summary["centred"]["pitch"]["max"] == pytest.approx(3.0)


@pytest.fixture(scope="module")
def frames():
    clips = {name: TRAIN / CLIP.format(name) for name in ("Obama_clip1", "Obama_clip2", "KristiNoem")}
    if not all(p.is_file() for p in clips.values()):
        pytest.skip(f"the training clips are not in {TRAIN}")
    # frames 0 and 60 of one clip: far enough apart for the mouth to have moved
    return {name: [f for i, f in iter_frames(p, 0, 61) if i in (0, 60)] for name, p in clips.items()}, clips


def _turned(frame: np.ndarray, centre, degrees: float) -> tuple[np.ndarray, np.ndarray]:
    m = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), degrees, 1.0)
    return cv2.warpAffine(frame, m, frame.shape[1::-1], flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE), m


def test_real_pose_and_landmark_differences(frames):
    clip = frames[0]["KristiNoem"]
    observer = FaceObserver(identity=False)
    dest = observer.step(0, clip[0])
    assert expression_row(dest, observer.step(1, clip[0])) == {
        "landmarks": 0.0, "inner": 0.0, "yaw": 0.0, "pitch": 0.0, "roll": 0.0,
        "signed": {"yaw": 0.0, "pitch": 0.0, "roll": 0.0}}
    # the same frame turned 10 degrees about the face: a roll of 10, the same expression once turned back
    turned, m = _turned(clip[0], dest.landmarks68.mean(0), 10.0)
    result = observer.step(2, turned)
    row = expression_row(dest, result)
    assert row["roll"] == pytest.approx(10.0, abs=2.0)
    assert result.pose[2] - dest.pose[2] < 0  # OpenCV turns anticlockwise; roll > 0 is clockwise
    assert row["yaw"] < 3.0 and row["pitch"] < 3.0
    expected = transform_points(m, dest.landmarks68)
    assert row["landmarks"] > 0.1  # every point moved
    assert np.linalg.norm(result.landmarks68 - expected, axis=1).mean() / dest.inter_ocular < 0.05
    noise = np.linalg.norm(result.landmarks68 - expected, axis=1)[17:].mean() / dest.inter_ocular
    # two seconds later the mouth and head have moved: the inner points see it well above the noise
    later = expression_row(dest, observer.step(60, clip[1]))
    assert later["inner"] > 3 * noise

@pytest.mark.skipif(not identity_available(), reason="the identity extra (dlib-bin) is not installed")
def test_real_identity_figures_tell_the_source_from_the_destination(frames):
    clips, paths = frames
    source = identity_reference(video_embeddings(paths["Obama_clip1"], limit=4))
    destination = identity_reference(video_embeddings(paths["KristiNoem"], limit=4))
    observer = FaceObserver(identity=True)
    # another clip of the source person stands in for a perfect swap; the destination itself for none
    swapped = [identity_row(observer.step(i, f), source, destination) for i, f in enumerate(clips["Obama_clip2"])]
    untouched = [identity_row(observer.step(10 + i, f), source, destination) for i, f in enumerate(clips["KristiNoem"])]
    assert all(r["closer_to_source"] and r["to_source"] < SAME_PERSON < r["to_destination"] for r in swapped)
    assert not any(r["closer_to_source"] for r in untouched)
    baseline = [r["to_source"] for r in untouched]
    good = identity_summary(swapped, baseline)
    none = identity_summary(untouched, baseline)
    assert good["closer_to_source"] == 1.0 and none["closer_to_source"] == 0.0
    assert good["to_source"]["median"] < 0.5 < 0.7 < good["destination_to_source"]["median"]
    assert none["to_destination"]["max"] < 0.4
