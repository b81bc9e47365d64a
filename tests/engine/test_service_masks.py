"""The mask operations the add-on calls: labels in face and frame space, frames to draw on,
previews, removal; through the handlers and through EngineService.handle."""

from pathlib import Path

import cv2
import numpy as np
import pytest

from bridge import BridgeError
from engine.facesets import FaceRecord
from engine.geometry.align import FACE_TYPES, align_transform, template_points
from engine.geometry.polygons import rasterize, rasterize_pixels
from engine.service import EngineService
from engine.service_masks import MASK_OPS
from engine.workspace import Workspace

SIZE = 128
LABEL = [{"include": True, "points": [[0.2, 0.2], [0.8, 0.2], [0.8, 0.8], [0.2, 0.8]]},
         {"include": False, "points": [[0.4, 0.6], [0.6, 0.6], [0.6, 0.9], [0.4, 0.9]]}]


def _fill(ws: Workspace, clip, name: str = "f", frames: int = 5) -> list[FaceRecord]:
    """Faces on a real clip (320x240): a turned, moving face whose crops are cut from the frames."""
    media = ws.register_media(clip, 320, 240, 12.0, 12)
    fs = ws.facesets.ensure(name, "full", SIZE)
    tpl = template_points(100, FACE_TYPES["full"])
    a = np.radians(12)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    for frame in range(frames):
        lm = (tpl - 50) @ rot.T * 1.2 + [150 + 4 * frame, 120]
        m = align_transform(lm, SIZE, "full")
        path = ws.faceset_dir(name) / f"m{media}_f{frame:06d}_0.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), np.full((SIZE, SIZE, 3), 120, np.uint8))
        ws.facesets.add(fs, FaceRecord(
            media_id=media, frame=frame, face_index=0, box=(0, 0, 1, 1), score=0.9,
            landmarks=np.zeros((468, 2), np.float32), landmarks68=lm.astype(np.float32), transform=m, image=path,
            track=1, face_type="full", size=SIZE))
    return ws.facesets.faces(name, media)


@pytest.fixture
def ws(tmp_path):
    w = Workspace(tmp_path / "ws")
    yield w
    w.close()


def call(ws, op, **args):
    return MASK_OPS[op](ws, args)


def test_every_contract_op_is_there():
    assert set(MASK_OPS) == {"mask.labels", "mask.label.get", "mask.label.set", "mask.frame", "mask.preview",
                             "mask.remove"}


def test_labels_in_face_space(ws, portrait_clips):
    faces = _fill(ws, portrait_clips["hopper"])
    assert call(ws, "mask.labels", faceset="f") == {"labelled": [], "count": 0, "faces": 5}
    got = call(ws, "mask.label.get", face=faces[0].id)
    assert got == {"face": faces[0].id, "polygons": [], "space": "face", "size": SIZE, "crop": str(faces[0].image),
                   "width": 320, "height": 240}
    assert call(ws, "mask.label.set", face=faces[3].id, polygons=LABEL) == {"face": faces[3].id, "count": 1}
    assert call(ws, "mask.label.set", face=faces[1].id, polygons=LABEL, space="face")["count"] == 2
    assert call(ws, "mask.label.get", face=faces[3].id)["polygons"] == LABEL
    assert call(ws, "mask.labels", faceset="f") == {"labelled": [faces[1].id, faces[3].id], "count": 2, "faces": 5}
    assert call(ws, "mask.label.set", face=faces[1].id, polygons=[])["count"] == 1  # [] deletes


def test_a_label_drawn_on_the_frame_lands_on_the_crop(ws, portrait_clips):
    face = _fill(ws, portrait_clips["hopper"])[2]
    drawn = [{"include": True, "points": [[120, 80], [200, 90], [190, 170], [125, 160]]}]
    call(ws, "mask.label.set", face=face.id, polygons=drawn, space="frame")
    stored = call(ws, "mask.label.get", face=face.id)["polygons"]
    assert all(-0.5 < v < 1.5 for p in stored for pt in p["points"] for v in pt)
    # the face-space label rasterised in the crop matches the frame raster warped with the face's transform
    warped = cv2.warpAffine(rasterize_pixels(drawn, (240, 320)), face.transform, (SIZE, SIZE))
    assert np.abs(rasterize(stored, SIZE) - warped).mean() < 0.01
    back = call(ws, "mask.label.get", face=face.id, space="frame")
    assert back["space"] == "frame" and back["width"] == 320
    np.testing.assert_allclose(back["polygons"][0]["points"], drawn[0]["points"], atol=1e-6)


@pytest.mark.parametrize("op, args, code", [
    ("mask.labels", {}, "bad_request"),
    ("mask.labels", {"faceset": "nobody"}, "not_found"),
    ("mask.label.get", {"face": "1"}, "bad_request"),
    ("mask.label.get", {"face": True}, "bad_request"),
    ("mask.label.get", {"face": 999}, "not_found"),
    ("mask.label.get", {"face": 1, "space": "world"}, "bad_request"),
    ("mask.label.set", {"face": 1}, "bad_request"),
    ("mask.label.set", {"face": 1, "polygons": [{"include": True, "points": [[0, 0], [1, 1]]}]}, "bad_request"),
    ("mask.label.set", {"face": 1, "polygons": "square"}, "bad_request"),
    ("mask.frame", {"face": 999}, "not_found"),
    ("mask.preview", {"faces": [1.0]}, "bad_request"),
    ("mask.preview", {"faces": list(range(300))}, "bad_request"),
    ("mask.remove", {"faceset": 3}, "bad_request"),
])
def test_bad_arguments_are_clear_errors(ws, portrait_clips, op, args, code):
    _fill(ws, portrait_clips["hopper"], frames=1)
    with pytest.raises(Exception) as err:
        MASK_OPS[op](ws, args)
    assert getattr(err.value, "code", None) == code


def test_frame_is_decoded_once_and_a_missing_video_is_not_found(ws, portrait_clips, tmp_path):
    faces = _fill(ws, portrait_clips["hopper"])
    got = call(ws, "mask.frame", face=faces[4].id)
    assert got["width"] == 320 and got["height"] == 240 and got["size"] == SIZE and got["crop"] == str(faces[4].image)
    img = cv2.imread(got["image"])
    assert img.shape == (240, 320, 3) and got["image"].startswith(str(ws.root / "cache" / "frames"))
    from engine.media.decode import iter_frames
    expected = next(f for _, f in iter_frames(portrait_clips["hopper"], 4, 5))
    assert np.abs(img.astype(int) - expected).max() <= 1  # PNG is lossless: the decoded frame itself
    mtime = (ws.root / got["image"]).stat().st_mtime_ns
    assert call(ws, "mask.frame", face=faces[4].id)["image"] == got["image"]
    assert (ws.root / got["image"]).stat().st_mtime_ns == mtime  # cached, not decoded again
    # a workspace whose video went away
    gone = tmp_path / "gone.mp4"
    gone.write_bytes(portrait_clips["hopper"].read_bytes())
    other = _fill(ws, gone, name="g", frames=1)[0]
    gone.unlink()
    with pytest.raises(Exception) as err:
        call(ws, "mask.frame", face=other.id)
    assert err.value.code == "not_found" and "gone.mp4" in err.value.message


def test_previews_show_the_mask_and_change_with_it(ws, portrait_clips):
    faces = _fill(ws, portrait_clips["hopper"], frames=2)
    got = call(ws, "mask.preview", faces=[faces[0].id, faces[1].id])
    key = str(faces[0].id)
    assert set(got["previews"]) == {key, str(faces[1].id)} and got["sources"][key] == "hull"
    first = got["previews"][key]
    img = cv2.imread(first)
    assert img.shape == (SIZE, SIZE, 3)
    assert img[SIZE // 2, SIZE // 2, 2] > img[SIZE // 2, SIZE // 2, 0] + 30  # tinted inside the face
    assert tuple(img[1, 1]) == (120, 120, 120)  # untouched outside
    assert call(ws, "mask.preview", faces=[faces[0].id])["previews"][key] == first  # same mask, same file
    call(ws, "mask.label.set", face=faces[0].id, polygons=LABEL)
    again = call(ws, "mask.preview", faces=[faces[0].id])
    assert again["sources"][key] == "label" and again["previews"][key] != first
    assert not Path(first).exists()  # the stale preview is gone


def test_remove_learned_masks_keeps_labels(ws, portrait_clips):
    faces = _fill(ws, portrait_clips["hopper"], frames=3)
    items = []
    for f in faces:
        path = ws.masks.learned_path(f)
        cv2.imwrite(str(path), np.full((SIZE, SIZE), 255, np.uint8))
        items.append((f.id, path))
    ws.masks.set_learned(items, "xseg")
    call(ws, "mask.label.set", face=faces[0].id, polygons=LABEL)
    assert call(ws, "mask.preview", faces=[faces[1].id])["sources"][str(faces[1].id)] == "learned"
    assert call(ws, "mask.remove", faceset="f") == {"removed": 3}
    assert not any(p.exists() for _, p in items)
    assert call(ws, "mask.labels", faceset="f")["count"] == 1


def test_the_server_dispatches_mask_ops(tmp_path, portrait_clips):
    svc = EngineService(tmp_path / "svc")
    try:
        faces = _fill(svc.workspace, portrait_clips["hopper"], frames=1)
        assert svc.handle("mask.labels", {"faceset": "f"}, None)["faces"] == 1
        with pytest.raises(BridgeError) as err:
            svc.handle("mask.label.get", {"face": faces[0].id + 100}, None)
        assert err.value.code == "not_found"
    finally:
        svc.stop()
