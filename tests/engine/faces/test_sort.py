import cv2
import numpy as np
import pytest

from engine.errors import EngineError
from engine.faces.quality import face_quality
from engine.faces.sort import SORT_KEYS, best_faces, outliers, sort_faces, with_quality
from engine.facesets import FaceRecord
from engine.media.synthetic import portrait
from engine.workspace import Workspace

HOPPER = portrait("hopper")


def crop(dx=0, dy=0, blur=0.0, add=0, who="hopper"):
    """A 256 px face crop of a bundled portrait, shifted, blurred and brightened as asked."""
    if who == "hopper":
        image = HOPPER[40 + dy:552 + dy, 0 + dx:512 + dx]
    else:
        image = portrait("astronaut")[0 + dy:300 + dy, 60 + dx:360 + dx]
    image = cv2.resize(image, (256, 256), interpolation=cv2.INTER_AREA)
    if blur:
        image = cv2.GaussianBlur(image, (0, 0), blur)
    return cv2.convertScaleAbs(image, alpha=1.0, beta=add) if add else image


def store(ws, name, faces, measure=True):
    """Store (crop, fields) pairs as a faceset, crops as JPGs; quality measured the extractor's way."""
    video = ws.root / "clip.mp4"
    video.write_bytes(b"not really a video")
    media = ws.register_media(video, 640, 480, 25.0, len(faces))
    fs = ws.facesets.ensure(name, "full", 256)
    for frame, (image, fields) in enumerate(faces):
        path = ws.faceset_dir(name) / f"{frame:05d}_0.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        if image is not None:
            cv2.imwrite(str(path), image, [cv2.IMWRITE_JPEG_QUALITY, 95])
        sharpness, brightness = face_quality(image) if measure and image is not None else (0.0, 0.0)
        fields = {"track": 1, "sharpness": sharpness, "brightness": brightness, **fields}
        ws.facesets.add(fs, FaceRecord(
            media_id=media, frame=frame, face_index=0, box=(0, 0, 1, 1), score=0.9,
            landmarks=np.zeros((468, 2), np.float32), landmarks68=np.zeros((68, 2), np.float32),
            transform=np.array([[1.0, 0, 0], [0, 1, 0]]), image=path, face_type="full", size=256, **fields))
    return ws.facesets.faces(name)


@pytest.fixture
def ws(tmp_path):
    w = Workspace(tmp_path / "ws")
    yield w
    w.close()


def test_sharpness_sort_puts_blurred_faces_last(ws):
    blurs = [2.0, 0, 4.0, 1.0, 8.0]
    records = store(ws, "src", [(crop(blur=b), {}) for b in blurs])
    order = [blurs[r.frame] for r in sort_faces(records, "sharpness")]
    assert order == sorted(blurs)
    # faces stored without quality get it measured from their crops, in the same order
    legacy = store(ws, "old", [(crop(blur=b), {}) for b in blurs], measure=False)
    assert all(r.sharpness == 0 for r in legacy)
    measured = with_quality(legacy)
    assert [blurs[r.frame] for r in sort_faces(measured, "sharpness")] == sorted(blurs)
    assert [r.sharpness for r in measured] == pytest.approx([r.sharpness for r in records], rel=0.05)


def test_brightness_pose_and_frame_sorts(ws):
    adds = [0, 60, -40, 30]
    records = store(ws, "src", [(crop(add=a) if a >= 0 else cv2.convertScaleAbs(crop(), alpha=1, beta=a),
                                 {"yaw": 10.0 * i - 15, "pitch": -5.0 * i}) for i, a in enumerate(adds)])
    assert [adds[r.frame] for r in sort_faces(records, "brightness")] == [-40, 0, 30, 60]
    assert [r.frame for r in sort_faces(records, "yaw")] == [0, 1, 2, 3]
    assert [r.frame for r in sort_faces(records, "pitch")] == [3, 2, 1, 0]
    assert [r.frame for r in sort_faces(list(reversed(records)), "frame")] == [0, 1, 2, 3]
    with pytest.raises(EngineError) as err:
        sort_faces(records, "colour")
    assert err.value.code == "bad_request"


def test_histogram_sort_keeps_similar_faces_together(ws):
    # two people interleaved in frame order; a similarity chain crosses from one to the other once
    faces = [(crop(dx=3 * i, dy=2 * i, who="hopper" if i % 2 else "astronaut"), {}) for i in range(10)]
    blue = np.zeros((256, 256, 3), np.uint8)
    blue[..., 0] = 255
    records = store(ws, "src", faces + [(blue, {})])
    people = ["blue" if r.frame == 10 else r.frame % 2 for r in sort_faces(records, "histogram")]
    changes = sum(a != b for a, b in zip(people, people[1:]))
    assert changes == 2 and people[-1] == "blue"  # the odd one out is reached last
    assert sort_faces(records, "histogram-dissimilar")[0].frame == 10
    assert {r.frame for r in sort_faces(records, "histogram")} == set(range(11))


def test_best_faces_cover_every_yaw_bin_and_prefer_sharp(ws):
    faces = []
    for yaw in (-60.0, -20.0, 0.0, 30.0):
        for i, blur in enumerate((3.0, 0.0, 6.0, 1.5)):
            faces.append((crop(dx=4 * i, blur=blur), {"yaw": yaw + i * 0.3, "pitch": 0.0, "extra": {"blur": blur}}))
    faces.append((crop(blur=5.0), {"yaw": 70.0}))  # the only face turned that far: kept however blurred
    records = store(ws, "src", faces)
    keep = best_faces(records, 5, yaw_bins=16)
    kept = [r for r in records if r.id in keep]
    assert sorted(r.yaw // 1 for r in kept) == [-60, -20, 0, 30, 70]
    assert all(r.extra.get("blur", 5.0) in (0.0, 5.0) for r in kept)  # the sharpest of each bin
    assert keep == sorted(keep)  # frame order
    assert best_faces(records, 100) == [r.id for r in records]
    assert best_faces(records, 0) == []


def test_best_faces_skip_near_duplicates(ws):
    sharp = crop()
    records = store(ws, "src", [
        (sharp, {"extra": {"kind": "a"}}),
        (crop(dx=1), {"extra": {"kind": "a again"}}),  # the same face a pixel over: a near-duplicate
        (crop(blur=1.2, add=40), {"extra": {"kind": "b"}}),  # lit differently, blurrier than both
    ])
    assert records[1].sharpness > records[2].sharpness
    kept = [r.extra["kind"] for r in records if r.id in best_faces(records, 2)]
    assert kept == ["a", "b"]


def test_best_faces_spread_over_pitch(ws):
    # three sharp faces look down (lit differently, so none is a near-duplicate), a blurrier one up
    records = store(ws, "src", [(crop(add=a), {"pitch": p}) for a, p in ((0, -20.0), (30, -19.0), (60, -18.0))]
                    + [(crop(blur=1.0), {"pitch": 15.0})])
    assert max(r.sharpness for r in records[:3]) > min(r.sharpness for r in records[:3]) > records[3].sharpness
    kept = [r.pitch for r in records if r.id in best_faces(records, 2)]
    assert 15.0 in kept and len(kept) == 2


def test_outliers_flag_bad_faces_with_reasons(ws):
    faces = [(crop(dx=2 * i, dy=i, add=i), {}) for i in range(12)]
    blue = np.zeros((256, 256, 3), np.uint8)
    blue[..., 0] = 255
    faces += [
        (blue, {}),  # 12: a misdetection: nothing like a face
        (crop(blur=6.0), {}),  # 13: blurred
        (cv2.convertScaleAbs(crop(), alpha=0.15), {}),  # 14: far too dark
        (None, {}),  # 15: its crop is gone
    ]
    records = store(ws, "src", faces)
    flagged = dict(outliers(records))
    ids = {r.frame: r.id for r in records}
    assert set(flagged) == {ids[12], ids[13], ids[14], ids[15]}
    assert "unlike the other faces" in flagged[ids[12]]
    assert "blurry" in flagged[ids[13]]
    assert "too dark" in flagged[ids[14]]
    assert "missing" in flagged[ids[15]]


def test_every_key_handles_an_empty_faceset():
    for key in SORT_KEYS:
        assert sort_faces([], key) == []
    assert outliers([]) == [] and best_faces([], 3) == []
