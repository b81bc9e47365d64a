"""The mask store: labels and learned masks in a real workspace, which mask a face has, and masks
leaving with their faces."""

import json

import cv2
import numpy as np
import pytest

from engine.errors import EngineError
from engine.facesets import FaceRecord
from engine.geometry.align import FACE_TYPES, align_transform, template_points, transform_points
from engine.geometry.hull import hull_mask
from engine.workspace import Workspace

SIZE = 128
LABEL = [{"include": True, "points": [[0.2, 0.2], [0.8, 0.2], [0.8, 0.8], [0.2, 0.8]]},
         {"include": False, "points": [[0.4, 0.6], [0.6, 0.6], [0.6, 0.9], [0.4, 0.9]]}]


def _fill(ws: Workspace, name: str = "f", frames: int = 4, media_name: str = "clip.mp4") -> list[FaceRecord]:
    video = ws.root / media_name
    video.write_bytes(media_name.encode())
    media = ws.register_media(video, 320, 240, 25.0, frames)
    fs = ws.facesets.ensure(name, "full", SIZE)
    tpl = template_points(100, FACE_TYPES["full"])
    for frame in range(frames):
        lm = tpl + [100 + 3 * frame, 60]
        m = align_transform(lm, SIZE, "full")
        path = ws.faceset_dir(name) / f"m{media}_f{frame:06d}_0.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), np.full((SIZE, SIZE, 3), 90, np.uint8))
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


def _write_learned(ws, face, value=200):
    path = ws.masks.learned_path(face)
    cv2.imwrite(str(path), np.full((SIZE, SIZE), value, np.uint8))
    return path


def test_labels_round_trip_and_survive_reopening(tmp_path):
    ws = Workspace(tmp_path / "ws")
    faces = _fill(ws)
    assert ws.masks.label(faces[0].id) is None and ws.masks.labelled("f") == []
    ws.masks.set_label(faces[2].id, LABEL)
    ws.masks.set_label(faces[0].id, LABEL[:1])
    ws.close()
    ws = Workspace(tmp_path / "ws")
    assert ws.masks.label(faces[2].id) == LABEL
    assert ws.masks.labelled("f") == [faces[0].id, faces[2].id]
    ws.masks.set_label(faces[0].id, [])  # an empty label deletes it
    assert ws.masks.labelled("f") == [faces[2].id]
    ws.close()


def test_bad_labels_and_unknown_faces_are_errors(ws):
    faces = _fill(ws)
    with pytest.raises(EngineError) as err:
        ws.masks.set_label(faces[0].id, [{"include": True, "points": [[0, 0], [1, float("nan")], [1, 1]]}])
    assert err.value.code == "bad_request"
    with pytest.raises(EngineError) as err:
        ws.masks.set_label(9999, LABEL)
    assert err.value.code == "not_found"
    with pytest.raises(EngineError) as err:
        ws.masks.labelled("nobody")
    assert err.value.code == "not_found"


def test_mask_of_prefers_label_then_learned_then_imported_then_hull(ws):
    faces = _fill(ws)
    face = faces[1]
    hull, source = ws.masks.mask_of(face)
    assert source == "hull" and hull.shape == (SIZE, SIZE) and hull.dtype == np.float32
    expected = hull_mask(transform_points(face.transform, face.landmarks68), (SIZE, SIZE), 0.25)
    np.testing.assert_array_equal(hull, expected)
    # at another size the hull is the same shape, scaled
    half, _ = ws.masks.mask_of(face, size=SIZE // 2)
    assert abs(half.sum() * 4 - hull.sum()) / hull.sum() < 0.02
    assert ws.masks.mask_of(face, brow_expand=0.0)[0].sum() < hull.sum()

    imported = ws.faceset_dir("f") / "imp_mask.png"
    cv2.imwrite(str(imported), np.full((256, 256), 255, np.uint8))
    face = FaceRecord(**{**face.__dict__, "extra": {"mask": str(imported.relative_to(ws.root))}})
    m, source = ws.masks.mask_of(face)
    assert source == "imported" and m.shape == (SIZE, SIZE) and m.min() == 1.0

    path = _write_learned(ws, face, 200)
    ws.masks.set_learned([(face.id, path)], "xseg")
    m, source = ws.masks.mask_of(face)
    assert source == "learned" and m.max() == pytest.approx(200 / 255)
    assert ws.masks.learned(face.id) == path and ws.masks.learned_model(face.id) == "xseg"

    ws.masks.set_label(face.id, LABEL)
    m, source = ws.masks.mask_of(face)
    assert source == "label" and m[SIZE // 2, SIZE // 2] == 1 and m[int(0.75 * SIZE), SIZE // 2] == 0
    ex = ws.masks.exclusion_of(face)
    assert ex[int(0.75 * SIZE), SIZE // 2] == 1 and ex[SIZE // 2, SIZE // 2] == 0
    assert ws.masks.exclusion_of(faces[0]) is None

    path.unlink()  # a learned file removed by hand: the next source answers
    ws.masks.set_label(face.id, [])
    assert ws.masks.mask_of(face)[1] == "imported"


def test_learned_masks_replace_and_remove(ws):
    faces = _fill(ws)
    a = _write_learned(ws, faces[0])
    ws.masks.set_learned([(faces[0].id, a), (faces[1].id, _write_learned(ws, faces[1]))], "one")
    other = ws.faceset_dir("f") / "other.png"
    cv2.imwrite(str(other), np.zeros((SIZE, SIZE), np.uint8))
    ws.masks.set_learned([(faces[0].id, other)], "two")  # a new file replaces (and removes) the old one
    assert not a.exists() and ws.masks.learned(faces[0].id) == other and ws.masks.learned_model(faces[0].id) == "two"
    with pytest.raises(EngineError):
        ws.masks.set_learned([(faces[2].id, ws.root.parent / "outside.png")], "x")
    ws.masks.set_label(faces[0].id, LABEL)
    assert ws.masks.remove_learned("f") == 2
    assert ws.masks.learned(faces[0].id) is None and not other.exists()
    assert ws.masks.label(faces[0].id) == LABEL  # labels stay
    assert ws.masks.remove_learned("f") == 0


def test_deleting_faces_removes_their_labels_and_learned_masks(ws):
    faces = _fill(ws, frames=6)
    paths = {}
    for f in faces:
        ws.masks.set_label(f.id, LABEL)
        paths[f.id] = _write_learned(ws, f)
    ws.masks.set_learned(list(paths.items()), "xseg")
    # faceset.delete
    assert ws.facesets.delete("f", [faces[0].id]) == 1
    assert ws.masks.label(faces[0].id) is None and ws.masks.learned(faces[0].id) is None
    assert not paths[faces[0].id].exists() and paths[faces[1].id].exists()
    # clear (a re-extracted range)
    fs = ws.facesets.get("f")
    ws.facesets.clear(fs["id"], faces[1].media_id, 1, 3)
    for f in faces[1:3]:
        assert ws.masks.label(f.id) is None and not paths[f.id].exists()
    assert ws.masks.labelled("f") == [f.id for f in faces[3:]]
    # drop_media (the video changed)
    ws.facesets.drop_media(faces[3].media_id)
    assert ws.masks.labelled("f") == [] and not any(p.exists() for p in paths.values())
    n = ws._q("SELECT COUNT(*) AS n FROM learned_masks")[0]["n"] + ws._q("SELECT COUNT(*) AS n FROM mask_labels")[0]["n"]
    assert n == 0


def test_labels_are_plain_json_in_the_catalog(ws):
    faces = _fill(ws, frames=1)
    ws.masks.set_label(faces[0].id, LABEL)
    raw = ws._q("SELECT polygons FROM mask_labels WHERE face_id=?", (faces[0].id,))[0]["polygons"]
    assert json.loads(raw) == LABEL


def test_a_mask_for_a_face_deleted_meanwhile_is_not_recorded(ws):
    faces = _fill(ws)
    paths = [_write_learned(ws, face) for face in faces[:2]]
    ws.facesets.delete("f", [faces[1].id])  # deleted while the apply job was drawing its mask
    ws.masks.set_learned([(faces[0].id, paths[0]), (faces[1].id, paths[1])], "xseg")
    assert ws.masks.learned(faces[0].id) == paths[0] and paths[0].is_file()
    assert ws.masks.learned(faces[1].id) is None and not paths[1].exists()
    ws.masks.set_label(faces[2].id, LABEL)
    assert ws.masks.masked("f") == {faces[0].id, faces[2].id}
