"""Following faces through frames: one track per person, steady landmarks, no lag on fast motion."""

import cv2
import numpy as np
import pytest

from engine.faces.landmarks import LandmarkModel, region_from_landmarks, region_from_points
from engine.faces.smooth import LandmarkSmoother, OneEuroFilter, SmoothSettings
from engine.faces.track import FaceTracker, TrackSettings
from engine.geometry.align import MESH_TO_68
from engine.geometry.pose import pose_from_68, pose_from_mesh
from engine.media.synthetic import camera_frames, portrait


@pytest.fixture(scope="module")
def hopper_mesh():
    """FaceMesh points of the still Hopper portrait, found through the tracker's own detector."""
    image = portrait("hopper")
    (face,) = FaceTracker().step(image, 0.0)
    return image, face.raw


def test_one_track_and_detection_only_on_keyframes():
    frames = list(camera_frames(portrait("hopper"), 25, (320, 240), centre=(0.5, 0.36)))
    tracker = FaceTracker(TrackSettings(detect_every=10))
    tracks = [[f.track for f in tracker.step(fr, i / 25)] for i, fr in enumerate(frames)]
    assert tracks == [[1]] * 25
    assert tracker.detections == 3  # frames 0, 10, 20


def test_a_cut_ends_tracks_and_a_lost_face_comes_back_with_its_id():
    face = portrait("hopper")
    other = portrait("astronaut")
    frames = [face] * 3 + [np.full_like(face, 90)] * 2 + [face] * 2 + [cv2.resize(other, face.shape[1::-1])] * 2
    tracker = FaceTracker(TrackSettings(detect_every=1, cut_threshold=30))
    ids = [[f.track for f in tracker.step(fr, i / 25)] for i, fr in enumerate(frames)]
    assert ids[:3] == [[1]] * 3 and ids[3] == ids[4] == []
    # the grey frames are a cut, so Hopper's return is a new shot and a new track
    assert ids[5] == ids[6] == [2]
    assert ids[7] == ids[8] and ids[7] != [2] and len(ids[7]) == 1


def test_landmarks_follow_a_rotated_face(hopper_mesh):
    image, points = hopper_mesh
    model = LandmarkModel()
    m = cv2.getRotationMatrix2D((image.shape[1] / 2, image.shape[0] / 2), 35, 1.0)
    rotated = cv2.warpAffine(image, m, image.shape[1::-1])
    expected = points[:, :2] @ m[:, :2].T + m[:, 2]
    mesh = model.run(rotated, region_from_points(expected, expected[33], expected[263]))
    size = region_from_landmarks(points).side / 1.5
    assert mesh.presence > 0.9
    assert np.abs(mesh.points[:, :2] - expected).mean() < 0.02 * size
    assert model.run(np.zeros_like(image), region_from_landmarks(points)).presence < 0.1


def test_pose_signs(hopper_mesh):
    image, points = hopper_mesh
    yaw, pitch, roll = pose_from_mesh(points)
    assert abs(yaw) < 20 and abs(roll) < 10
    flipped = FaceTracker().step(cv2.flip(image, 1), 0.0)[0].raw
    assert pose_from_mesh(flipped)[0] == pytest.approx(-yaw, abs=4)
    turned = points.copy()
    turned[263, 2] += 40  # the image-right eye moves away: the face turns towards the image's right
    assert pose_from_mesh(turned)[0] > yaw + 5
    # the 2D estimate agrees in sign with the 3D one on a face turned by warping: squeeze the image's
    # left half of the landmarks towards the nose, as a face turned towards the image's left looks
    lm = points[list(MESH_TO_68), :2].copy()
    nose_x = lm[30, 0]
    squeezed = lm.copy()
    squeezed[:, 0] = np.where(lm[:, 0] < nose_x, nose_x - (nose_x - lm[:, 0]) * 0.6, lm[:, 0])
    assert pose_from_68(squeezed)[0] < pose_from_68(lm)[0] - 10
    m = cv2.getRotationMatrix2D((0, 0), -20, 1.0)  # 20 degrees clockwise on screen
    rolled = points[list(MESH_TO_68), :2] @ m[:, :2].T
    assert pose_from_68(rolled)[2] == pytest.approx(pose_from_68(points[list(MESH_TO_68), :2])[2] + 20, abs=1)


def test_one_euro_smooths_a_still_point_and_keeps_up_with_a_fast_one():
    rng = np.random.default_rng(0)
    still = OneEuroFilter(SmoothSettings(min_cutoff=0.5, beta=8))
    noisy = 100 + rng.normal(0, 0.5, (120, 1, 2))  # FaceMesh wobbles by about half a percent of the face
    out = np.array([still(x, i / 30, 100.0) for i, x in enumerate(noisy)])
    assert out[30:].std() < noisy[30:].std() / 2
    moving = OneEuroFilter(SmoothSettings(min_cutoff=0.5, beta=8))
    path = np.array([[[i * 10.0, 0.0]] for i in range(60)])  # 3 face sizes a second at 30 fps
    lag = np.array([moving(x, i / 30, 100.0) for i, x in enumerate(path)])[-1] - path[-1]
    assert np.abs(lag).max() < 0.05 * 100  # under 5% of the face size behind


def test_face_smoother_removes_jitter_of_the_whole_face_but_keeps_a_moving_mouth(hopper_mesh):
    _, points = hopper_mesh
    rng = np.random.default_rng(1)
    smoother = LandmarkSmoother()
    size = region_from_landmarks(points).side / 1.5
    raw, smooth, mouth_open = [], [], []
    for i in range(90):
        p = points.copy()
        p[:, :2] += rng.normal(0, 0.01 * size, 2)  # the whole mesh wobbles by 1% of the face
        opening = 0.08 * size * (i >= 60)  # then the lower lip drops fast
        p[14, 1] += opening
        raw.append(p)
        smooth.append(smoother(p, i / 30, size))
        mouth_open.append(opening)
    wobble = lambda seq: np.mean([np.abs(b[33, :2] - a[33, :2]).mean() for a, b in zip(seq[10:59], seq[11:60])])
    assert wobble(smooth) < wobble(raw) / 2.5
    # five frames after the lip dropped, most of the drop has come through
    assert smooth[65][14, 1] - smooth[55][14, 1] > 0.7 * 0.08 * size


def test_pose_from_mesh_and_from_68_points_agree_on_a_turned_face(shared_clip):
    from engine.media.decode import iter_frames

    clip = shared_clip("LivePortrait__assets_examples_driving_d9.mp4")  # a head turning to and fro
    tracker = FaceTracker()
    both = []
    for index, frame in iter_frames(clip, 0, 500):
        (face,) = tracker.step(frame, index / 30)[:1]
        if index % 25 == 0:
            both.append((pose_from_mesh(face.points)[0], pose_from_68(face.points[list(MESH_TO_68), :2])[0]))
    turned = [(a, b) for a, b in both if abs(a) > 5]
    assert turned and all(np.sign(a) == np.sign(b) for a, b in turned), both
