from pathlib import Path

import cv2
import numpy as np
import pytest

from engine.faces.blazeface import FULL, SHORT, BlazeFace, Detection, anchor_centres, iou, weighted_nms
from engine.media.synthetic import portrait

SHARED_TRAIN = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "faces" / "train"
# Real talking heads for the crowd, each a different person; the portraits stand in when absent.
CROWD_CLIPS = [
    "styletalk__samples_source_video_video_KristiNoem.mp4",
    "styletalk__samples_source_video_video_Obama_clip1.mp4",
    "styletalk__samples_source_video_video_andrew_clip_1.mp4",
    "styletalk__samples_source_video_video_feifeili_clip1.mp4",
    "styletalk__samples_source_video_video_reagan_clip1.mp4",
    "LivePortrait__assets_examples_driving_d6.mp4",
    "LivePortrait__assets_examples_driving_d9.mp4",
    "LivePortrait__assets_examples_driving_d14.mp4",
]


@pytest.fixture(scope="module")
def detector() -> BlazeFace:
    return BlazeFace()


def _first_frame(path: Path) -> np.ndarray | None:
    cap = cv2.VideoCapture(str(path))
    ok, frame = cap.read()
    cap.release()
    return frame if ok else None


def _turn(points: np.ndarray, rotation: int, size: tuple[int, int]) -> np.ndarray:
    """Where cv2.rotate(frame, rotation) puts frame points, for a frame of size (w, h)."""
    w, h = size
    x, y = points[..., 0], points[..., 1]
    if rotation == cv2.ROTATE_90_CLOCKWISE:
        return np.stack([h - y, x], -1)
    if rotation == cv2.ROTATE_90_COUNTERCLOCKWISE:
        return np.stack([y, w - x], -1)
    return np.stack([w - x, h - y], -1)


def test_anchor_counts_match_the_networks():
    assert anchor_centres(128, SHORT.strides, SHORT.anchors_per_layer).shape == (896, 2)
    full = anchor_centres(192, FULL.strides, FULL.anchors_per_layer)
    assert full.shape == (2304, 2)
    assert full[0] == pytest.approx([0.5 / 48, 0.5 / 48]) and full[1] == pytest.approx([1.5 / 48, 0.5 / 48])


def test_weighted_nms_averages_overlapping_boxes_by_score():
    kps = np.zeros((6, 2), np.float32)
    a = Detection((0, 0, 10, 10), 0.9, kps)
    b = Detection((2, 0, 12, 10), 0.3, kps + 4)
    far = Detection((50, 50, 60, 60), 0.6, kps)
    merged = weighted_nms([b, far, a])
    assert len(merged) == 2 and merged[0].score == 0.9
    assert merged[0].box == pytest.approx((0.5, 0, 10.5, 10)) and merged[0].keypoints[0, 0] == pytest.approx(1.0)


@pytest.mark.parametrize("name", ["hopper", "astronaut"])
def test_one_face_in_each_portrait_with_sensible_keypoints(detector, name):
    faces = detector.detect(portrait(name))
    assert len(faces) == 1
    face = faces[0]
    (x0, y0, x1, y1), kp = face.box, face.keypoints
    assert face.score > 0.8 and kp.shape == (6, 2)
    right_eye, left_eye, nose, mouth = kp[:4]
    for eye in (right_eye, left_eye):
        assert x0 < eye[0] < x1 and y0 < eye[1] < y1
    # the subject's right eye is on the image's left; eyes above the nose, the nose above the mouth
    assert right_eye[0] < nose[0] < left_eye[0]
    assert max(right_eye[1], left_eye[1]) < nose[1] < mouth[1]
    assert kp[4, 0] < right_eye[0] and kp[5, 0] > left_eye[0]  # ears outside the eyes


def test_turn_matches_cv2_rotate():
    frame = np.zeros((3, 5), np.uint8)
    frame[0, 4] = 1  # pixel centre (4.5, 0.5)
    for rotation in (cv2.ROTATE_90_CLOCKWISE, cv2.ROTATE_90_COUNTERCLOCKWISE, cv2.ROTATE_180):
        y, x = np.argwhere(cv2.rotate(frame, rotation))[0]
        assert _turn(np.array([4.5, 0.5]), rotation, (5, 3)) == pytest.approx([x + 0.5, y + 0.5])


@pytest.mark.parametrize("rotation", [cv2.ROTATE_90_CLOCKWISE, cv2.ROTATE_90_COUNTERCLOCKWISE, cv2.ROTATE_180])
def test_turned_portrait_is_found_upright_and_mapped_back(detector, rotation):
    image = portrait("hopper")
    size = (image.shape[1], image.shape[0])
    upright = detector.detect(image, small_faces=False, rotations=False)[0]
    turned = cv2.rotate(image, rotation)

    plain = detector.detect(turned, small_faces=False, rotations=False)
    faces = detector.detect(turned, small_faces=False)
    assert any(k.startswith("rotated_") for k in detector.timings)
    assert len(faces) == 1

    corners = _turn(np.array(upright.box, np.float32).reshape(2, 2), rotation, size)
    expected = np.concatenate([corners.min(0), corners.max(0)])
    overlap = iou(expected, np.array([faces[0].box]))[0]
    print(f"rotation {rotation}: IoU with the upright box {overlap:.3f}; "
          f"without retries {[round(float(iou(expected, np.array([d.box]))[0]), 3) for d in plain]}")
    assert overlap > 0.95
    assert np.abs(faces[0].keypoints - _turn(upright.keypoints, rotation, size)).max() < 3


def _crowd_sources() -> list[np.ndarray]:
    sources = [portrait("hopper"), portrait("astronaut")]
    for name in CROWD_CLIPS:
        frame = _first_frame(SHARED_TRAIN / name) if (SHARED_TRAIN / name).is_file() else None
        if frame is not None:
            sources.append(frame)
    # Without the shared clips, mirrored and tinted portraits fill the crowd.
    for i in range(10 - len(sources)):
        flipped = cv2.flip(sources[i % 2], 1)
        sources.append(np.clip(flipped * np.array([1.0, 0.95 + 0.02 * i, 1.05]), 0, 255).astype(np.uint8))
    return sources[:10]


@pytest.fixture(scope="module")
def crowd(detector) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """A 1920x1080 frame with ten faces 50-70 px wide on noisy grey, and where their centres are."""
    rng = np.random.default_rng(7)
    frame = rng.normal(110, 20, (1080, 1920, 3)).clip(0, 255).astype(np.uint8)
    centres = []
    for i, source in enumerate(_crowd_sources()):
        face = detector.detect(source, small_faces=False, rotations=False)[0]
        cx, cy = (face.box[0] + face.box[2]) / 2, (face.box[1] + face.box[3]) / 2
        k = rng.uniform(50, 70) / (face.box[2] - face.box[0])
        side = int(round((face.box[2] - face.box[0]) * k * 2.2))  # some head and shoulders around it
        m = np.array([[k, 0, side / 2 - cx * k], [0, k, side / 2 - cy * k]])
        crop = cv2.warpAffine(source, m, (side, side), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE)
        x = int((i % 5 + 0.5) * 1920 / 5 + rng.uniform(-80, 80) - side / 2)
        y = int((i // 5 + 0.5) * 1080 / 2 + rng.uniform(-120, 120) - side / 2)
        frame[y:y + side, x:x + side] = crop
        centres.append((x + side / 2, y + side / 2))
    return frame, centres


def _matches(faces: list[Detection], centres) -> tuple[int, int]:
    """Faces whose centre lies in exactly one box, and boxes holding no face centre."""
    def holds(d, x, y):
        return d.box[0] <= x <= d.box[2] and d.box[1] <= y <= d.box[3]
    found = sum(sum(holds(d, x, y) for d in faces) == 1 for x, y in centres)
    stray = sum(not any(holds(d, x, y) for x, y in centres) for d in faces)
    return found, stray


def test_tile_pass_finds_the_small_faces_the_whole_frame_misses(detector, crowd):
    frame, centres = crowd
    first = detector.detect(frame, small_faces=False, rotations=False)
    both = detector.detect(frame, small_faces=True, rotations=False)
    (first_found, _), (found, stray) = _matches(first, centres), _matches(both, centres)
    print(f"crowd of {len(centres)}: first pass {first_found}, with tiles {found} (stray boxes {stray}); "
          f"ms {', '.join(f'{k} {v:.0f}' for k, v in detector.timings.items())}")
    assert first_found < found
    assert found >= 9 and stray <= 1
    assert all(50 * 0.7 < d.size < 70 * 1.5 for d in both)


def test_min_size_drops_small_faces(crowd):
    frame, _ = crowd
    assert BlazeFace(min_size=90).detect(frame, rotations=False) == []
    assert len(BlazeFace(min_size=250).detect(portrait("hopper"), small_faces=False, rotations=False)) == 0
    assert len(BlazeFace(min_size=150).detect(portrait("hopper"), small_faces=False, rotations=False)) == 1


def test_noise_has_no_faces(detector):
    noise = np.random.default_rng(0).integers(0, 256, (720, 1280, 3), np.uint8)
    assert detector.detect(noise) == []
    assert {"whole", "tiles", "rotated_cw90", "rotated_ccw90", "rotated_180"} <= set(detector.timings)
