import json
import os
import pickle
import struct

import cv2
import numpy as np
import pytest

from engine.errors import EngineError
from engine.faces.dfl_jpeg import read_dfl_jpeg, write_dfl_jpeg
from engine.faces.export import export_faceset
from engine.faces.interchange import import_dfl_faceset, import_faceset
from engine.geometry.align import ALIGN_POINTS, face_type, invert, template_points, transform_points
from engine.geometry.pose import pose_from_68
from engine.media.synthetic import portrait
from engine.workspace import Workspace

DFL = 256  # side of the DeepFaceLab crops the tests make
IDX = list(ALIGN_POINTS)


def _similarity(scale: float, degrees: float, shift=(0.0, 0.0), centre=(0.0, 0.0)) -> np.ndarray:
    """2x3: rotate and scale about `centre`, then move by `shift`."""
    a = np.radians(degrees)
    rot = scale * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    return np.hstack([rot, (np.asarray(shift) + np.asarray(centre) - rot @ np.asarray(centre))[:, None]])


def _then(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The transform applying `b`, then `a`."""
    return (np.vstack([a, [0, 0, 1]]) @ np.vstack([b, [0, 0, 1]]))[:2]


def _geometry(k: int) -> tuple[np.ndarray, np.ndarray]:
    """(frame→our-256-crop transform, frame→DeepFaceLab crop transform) of the k-th test face.

    The face's frame landmarks are our template mapped back into the portrait; DeepFaceLab's crop is
    a slightly different alignment of the same face (its template is not ours), so importing has to
    re-align for real.
    """
    centre = np.array([256.0 + 6 * k, 216.0 - 4 * k])  # around Grace Hopper's face
    ours = _similarity(DFL / (300 + 10 * k), 3.0 * k - 3, shift=DFL / 2 - centre, centre=centre)
    dfl_from_ours = _similarity(1.06, 2.5 - k, shift=(5.0, -7.0), centre=(DFL / 2, DFL / 2))
    return ours, _then(dfl_from_ours, ours)


def _dfl_meta(k: int, arrays: bool = False) -> tuple[np.ndarray, dict]:
    frame = portrait("hopper")
    ours, mat = _geometry(k)
    lm_src = transform_points(invert(ours), template_points(DFL, face_type("full")))
    crop = cv2.warpAffine(frame, mat, (DFL, DFL), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
    mask = np.zeros((DFL // 2, DFL // 2), np.uint8)
    cv2.circle(mask, (80, 48), 20, 255, -1)  # stretched over the crop: a disc around (160, 96)
    meta = {
        "face_type": "full_face", "landmarks": transform_points(mat, lm_src), "source_filename": f"{100 + k:05d}.png",
        "source_rect": [200.0, 150.0, 320.0, 290.0], "source_landmarks": lm_src, "image_to_face_mat": mat,
        "eyebrows_expand_mod": 1.0,
        "seg_ie_polys": {"polys": [{"type": 1, "pts": [[60, 60], [200, 60], [200, 200]]}]},
        "xseg_mask": cv2.imencode(".png", mask)[1] if arrays else cv2.imencode(".png", mask)[1].tobytes(),
    }
    if not arrays:
        meta = {k: v.tolist() if isinstance(v, np.ndarray) else v for k, v in meta.items()}
    return crop, meta


def _write_raw(path, crop: np.ndarray, payload: bytes) -> None:
    """A JPG whose APP15 holds exactly `payload` (the writer only makes plain pickles)."""
    jpeg = cv2.imencode(".jpg", crop)[1].tobytes()
    path.write_bytes(jpeg[:2] + struct.pack(">BBH", 0xFF, 0xEF, len(payload) + 2) + payload + jpeg[2:])


@pytest.fixture
def dfl_folder(tmp_path):
    folder = tmp_path / "aligned"
    folder.mkdir()
    for k in range(3):
        crop, meta = _dfl_meta(k)
        write_dfl_jpeg(folder / f"{100 + k:05d}_0.jpg", crop, meta)
    return folder


def _import(ws, folder, name="src", size=128, dfl=True):
    progress = []
    run = import_dfl_faceset if dfl else import_faceset
    result = run(ws, folder, name, size, lambda p, m, s: progress.append(p), lambda: False)
    assert progress and progress[-1] == pytest.approx(1.0)
    return result


def _check_aligned(ws, name: str, size: int) -> None:
    """Each face's crop is the portrait warped by its stored transform, which puts its landmarks on
    our template: exactly what extracting the face from the portrait itself would give."""
    frame, tpl = portrait("hopper"), template_points(size, face_type("full"))
    for f in ws.facesets.faces(name, everyone=True):
        np.testing.assert_allclose(transform_points(f.transform, f.landmarks68)[IDX], tpl[IDX], atol=0.05)
        crop = cv2.imread(str(f.image))
        assert crop.shape == (size, size, 3)
        # the two went through different resamplings (and JPEG twice): compared blurred, and the
        # portrait smoothed first so the direct warp does not alias; a shift of half a pixel would show
        scale = np.sqrt(abs(np.linalg.det(f.transform[:, :2])))
        direct = cv2.warpAffine(cv2.GaussianBlur(frame, (0, 0), 0.5 / scale), f.transform, (size, size),
                                flags=cv2.INTER_CUBIC)
        a, b = (cv2.GaussianBlur(cv2.cvtColor(x, cv2.COLOR_BGR2GRAY), (0, 0), 1.5).astype(float) for x in (crop, direct))
        inner = slice(size // 8, -size // 8)
        assert np.abs(a[inner, inner] - b[inner, inner]).mean() < 1.0


def test_imports_a_deepfacelab_faceset_realigned(tmp_path, dfl_folder):
    ws = Workspace(tmp_path / "ws")
    result = _import(ws, dfl_folder, size=128)
    assert result == {"faceset": "src", "faces": 3, "skipped": [], "skipped_count": 0}
    _check_aligned(ws, "src", 128)
    faces = ws.facesets.faces("src")  # one clip, one track: all of it is the person
    assert [f.frame for f in faces] == [100, 101, 102] and len({f.track for f in faces}) == 1
    f = faces[0]
    assert f.face_type == "full" and f.size == 128 and f.landmarks.shape == (68, 2)
    assert f.extra["source_filename"] == "00100.png" and f.extra["eyebrows_expand_mod"] == 1.0
    yaw, _, roll = pose_from_68(template_points(DFL, face_type("full")))
    assert f.yaw == pytest.approx(yaw, abs=0.01) and f.roll == pytest.approx(roll + 3.0, abs=0.01)  # 3° clockwise
    assert f.sharpness > 0 and 0 < f.brightness < 255
    ours, mat = _geometry(0)
    to_crop = _then(f.transform, invert(mat))  # DeepFaceLab crop → ours
    expected = transform_points(to_crop, [[60, 60], [200, 60], [200, 200]])
    label = ws.masks.label(f.id)  # DeepFaceLab's drawn polygon is our label, in face space
    assert len(label) == 1 and label[0]["include"] and "polys" not in f.extra
    np.testing.assert_allclose(np.asarray(label[0]["points"]) * 128 - 0.5, expected, atol=0.01)
    assert ws.masks.mask_of(f)[1] == "label" and set(ws.masks.labelled("src")) == {g.id for g in faces}
    mask = cv2.imread(str(ws.root / f.extra["mask"]), cv2.IMREAD_GRAYSCALE)
    ys, xs = np.nonzero(mask > 127)
    centre = transform_points(to_crop, [[160.5, 96.5]])[0]  # the disc's centre in DeepFaceLab pixels
    assert mask.shape == (128, 128) and np.hypot(xs.mean() - centre[0], ys.mean() - centre[1]) < 1.5


def test_numpy_metadata_and_missing_transform(tmp_path):
    folder = tmp_path / "aligned"
    folder.mkdir()
    crop, meta = _dfl_meta(1, arrays=True)  # older DeepFaceLab: numpy arrays inside the pickle
    _write_raw(folder / "a_0.jpg", crop, pickle.dumps(meta, protocol=4))
    crop, meta = _dfl_meta(2, arrays=True)
    del meta["image_to_face_mat"]  # recovered from the two sets of landmarks
    _write_raw(folder / "b_0.jpg", crop, pickle.dumps(meta, protocol=3))
    ws = Workspace(tmp_path / "ws")
    assert _import(ws, folder, size=96)["faces"] == 2
    _check_aligned(ws, "src", 96)
    assert all(f.extra["xseg_mask"] is True for f in ws.facesets.faces("src"))

    crop, meta = _dfl_meta(0)
    for key in ("image_to_face_mat", "source_landmarks"):
        del meta[key]  # nothing ties it to a frame: the crop itself stands in for one
    write_dfl_jpeg(folder / "c_0.jpg", crop, {**meta, "source_filename": "still.png"})
    assert _import(ws, folder, name="bare", size=None)["faces"] == 3
    faces = ws.facesets.faces("bare")
    assert {f.size for f in faces} == {DFL}  # no size asked for: the crops' own
    bare = [f for f in faces if f.extra["source_filename"] == "still.png"]
    assert len(bare) == 1 and bare[0].frame == 2  # no frame number in its name: its place in the folder
    np.testing.assert_allclose(bare[0].landmarks68, meta["landmarks"], atol=1e-3)


class _Pwn:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_malicious_metadata_is_refused_without_running(tmp_path, dfl_folder):
    marker = tmp_path / "pwned"
    crop, meta = _dfl_meta(0)
    evil = tmp_path / "evil"
    evil.mkdir()
    _write_raw(evil / "x_0.jpg", crop, pickle.dumps({**meta, "source_filename": _Pwn(marker)}, protocol=4))
    with pytest.raises(EngineError) as err:
        read_dfl_jpeg(evil / "x_0.jpg")
    assert err.value.code == "bad_faceset" and "system, which is not plain data" in err.value.message
    assert "x_0.jpg" in err.value.message
    with pytest.raises(EngineError) as err:
        _import(Workspace(tmp_path / "ws"), evil)
    assert err.value.code == "bad_faceset"
    # object arrays need no foreign global, but are refused all the same
    _write_raw(evil / "y_0.jpg", crop, pickle.dumps({**meta, "landmarks": np.array([1, "a"], object)}, protocol=4))
    with pytest.raises(EngineError, match="Python objects"):
        read_dfl_jpeg(evil / "y_0.jpg")
    # eight bytes that would have the unpickler allocate a memo of 2**26 slots (512 MB)
    _write_raw(evil / "z_0.jpg", crop, b"\x80\x04N" + b"r" + struct.pack("<I", 2**26) + b".")
    with pytest.raises(EngineError, match="memo index"):
        read_dfl_jpeg(evil / "z_0.jpg")
    # beside good faces, a bad file is skipped with its reason
    os.replace(evil / "x_0.jpg", dfl_folder / "99999_0.jpg")
    result = _import(Workspace(tmp_path / "ws2"), dfl_folder)
    assert result["faces"] == 3 and result["skipped_count"] == 1 and "not plain data" in result["skipped"][0]
    assert not marker.exists()


def test_damaged_files_are_skipped_with_a_reason(tmp_path, dfl_folder):
    crop, meta = _dfl_meta(0)
    payload = pickle.dumps(meta, protocol=4)
    _write_raw(dfl_folder / "t_0.jpg", crop, payload[: len(payload) // 2])  # truncated pickle
    _write_raw(dfl_folder / "g_0.jpg", crop, b"\x00garbage\xff" * 10)
    (dfl_folder / "n_0.jpg").write_bytes(cv2.imencode(".jpg", crop)[1].tobytes())  # a plain JPG, no metadata
    (dfl_folder / "z_0.jpg").write_bytes(b"\xff\xd8\xff\xef\x40\x00short")  # segment runs off the end
    (dfl_folder / "p_0.png").write_bytes(cv2.imencode(".png", crop)[1].tobytes())
    _write_raw(dfl_folder / "w_0.jpg", crop, pickle.dumps({**meta, "landmarks": [[1, 2]] * 5}, protocol=4))
    write_dfl_jpeg(dfl_folder / "zz_0.jpg", crop, {**meta, "face_type": "half_face"})  # too tight for "full"
    result = _import(Workspace(tmp_path / "ws"), dfl_folder)
    assert result["faces"] == 3 and result["skipped_count"] == 7
    reasons = "\n".join(result["skipped"])
    for expected in ("g_0.jpg: its metadata", "t_0.jpg: its metadata", "n_0.jpg: carries no DeepFaceLab metadata",
                     "z_0.jpg: a JPEG segment", "1 non-JPG images", "w_0.jpg: landmarks is not (68, 2)",
                     "zz_0.jpg: a half crop holds too little of the head"):
        assert expected in reasons


def test_empty_or_missing_folder(tmp_path):
    ws = Workspace(tmp_path / "ws")
    (tmp_path / "empty").mkdir()
    with pytest.raises(EngineError) as err:
        _import(ws, tmp_path / "empty")
    assert err.value.code == "bad_faceset"
    with pytest.raises(EngineError) as err:
        _import(ws, tmp_path / "nowhere")
    assert err.value.code == "not_found"


def _export(ws, name, out, dfl=False):
    return export_faceset(ws, name, out, lambda p, m, s: None, lambda: False, dfl=dfl)


def test_export_then_import_keeps_faces(tmp_path, dfl_folder):
    ws = Workspace(tmp_path / "ws")
    _import(ws, dfl_folder, size=128)
    shot2 = tmp_path / "shot2"
    shot2.mkdir()
    crop, meta = _dfl_meta(1)
    write_dfl_jpeg(shot2 / "x.jpg", crop, {**meta, "source_filename": "shot2_00007.png"})
    _import(ws, shot2, size=None)  # into the same faceset, at its size: a second clip, a second track
    before = ws.facesets.faces("src", everyone=True)
    assert len({f.track for f in before}) == 2 and len({f.media_id for f in before}) == 2
    ws.facesets.choose_people("src", [before[-1].track])
    out = tmp_path / "out"
    assert _export(ws, "src", out)["faces"] == 4
    doc = json.loads((out / "faceset.json").read_text())
    assert doc["format"] == "swapline-faceset" and doc["face_type"] == "full" and doc["size"] == 128
    assert len(doc["faces"][0]["landmarks68_crop"]) == 68 and (out / doc["faces"][0]["extra"]["mask"]).is_file()

    other = Workspace(tmp_path / "other")
    assert _import(other, out, name="copy", size=None, dfl=False)["faces"] == 4
    after = other.facesets.faces("copy", everyone=True)
    assert [f.frame for f in after] == [f.frame for f in before] == [100, 101, 102, 7]
    assert [f.frame for f in other.facesets.faces("copy")] == [7]  # the chosen person came along
    for a, b in zip(after, before):
        np.testing.assert_allclose(a.landmarks68, b.landmarks68, atol=1e-2)
        np.testing.assert_allclose(a.transform, b.transform, atol=1e-3)
        np.testing.assert_allclose(other.masks.label(a.id)[0]["points"], ws.masks.label(b.id)[0]["points"], atol=1e-3)
        assert (other.root / a.extra["mask"]).is_file() and a.yaw == pytest.approx(b.yaw)
        assert a.extra["source_filename"] == b.extra["source_filename"]
    _check_aligned(other, "copy", 128)
    assert _export(ws, "src", out)["faces"] == 4  # a folder holding an export may be written again


def test_deepfacelab_export_imports_back(tmp_path, dfl_folder):
    ws = Workspace(tmp_path / "ws")
    _import(ws, dfl_folder, size=128)
    out = tmp_path / "dfl_out"
    assert _export(ws, "src", out, dfl=True)["faces"] == 3
    image, meta = read_dfl_jpeg(out / "000000.jpg")
    assert image.shape == (128, 128, 3) and meta["face_type"] == "full_face" and meta["source_filename"] == "00100.png"
    assert isinstance(meta["landmarks"], list) and isinstance(meta["image_to_face_mat"], list)
    assert isinstance(meta["xseg_mask"], bytes) and meta["seg_ie_polys"]["polys"][0]["type"] == 1
    (out / "faceset.json").unlink()  # as DeepFaceLab sees it: the JPGs alone
    back = Workspace(tmp_path / "back")
    assert _import(back, out, name="back", size=128, dfl=False)["faces"] == 3  # no faceset.json: read as DFL
    for a, b in zip(back.facesets.faces("back"), ws.facesets.faces("src")):
        assert a.frame == b.frame
        np.testing.assert_allclose(a.landmarks68, b.landmarks68, atol=1e-2)
    _check_aligned(back, "back", 128)


def test_export_refuses_a_folder_of_other_files(tmp_path, dfl_folder):
    ws = Workspace(tmp_path / "ws")
    _import(ws, dfl_folder)
    with pytest.raises(EngineError) as err:
        _export(ws, "src", dfl_folder)
    assert err.value.code == "bad_request"
    with pytest.raises(EngineError) as err:
        _export(ws, "nobody", tmp_path / "x")
    assert err.value.code == "not_found"


def test_cancel_and_a_faceset_of_another_size(tmp_path, dfl_folder):
    ws = Workspace(tmp_path / "ws")
    with pytest.raises(EngineError) as err:
        import_dfl_faceset(ws, dfl_folder, "src", 128, lambda *a: None, lambda: True)
    assert err.value.code == "cancelled"
    _import(ws, dfl_folder, size=128)
    with pytest.raises(EngineError) as err:
        _import(ws, dfl_folder, size=256)
    assert err.value.code == "bad_request"
    with pytest.raises(EngineError) as err:
        _import(ws, dfl_folder, size=8)
    assert err.value.code == "bad_request"


def test_labels_drawn_here_and_learned_masks_go_out_to_deepfacelab(tmp_path, dfl_folder):
    ws = Workspace(tmp_path / "ws")
    _import(ws, dfl_folder, size=128)
    f = ws.facesets.faces("src")[0]
    ws.masks.set_label(f.id, [{"include": True, "points": [[0.25, 0.25], [0.75, 0.25], [0.5, 0.75]]},
                              {"include": False, "points": [[0.4, 0.4], [0.6, 0.4], [0.5, 0.6]]}])
    learned = ws.masks.learned_path(f)
    cv2.imwrite(str(learned), np.full((128, 128), 255, np.uint8))
    ws.masks.set_learned([(f.id, learned)], "xseg")
    out = tmp_path / "dfl_out"
    _export(ws, "src", out, dfl=True)
    _, meta = read_dfl_jpeg(out / "000000.jpg")
    polys = meta["seg_ie_polys"]["polys"]
    assert [p["type"] for p in polys] == [1, 0]
    np.testing.assert_allclose(polys[0]["pts"], [[31.5, 31.5], [95.5, 31.5], [63.5, 95.5]], atol=0.01)
    exported = cv2.imdecode(np.frombuffer(meta["xseg_mask"], np.uint8), cv2.IMREAD_GRAYSCALE)
    assert exported.min() == 255  # the learned mask, not the disc the face came with
