"""Bundles: a model and a faceset's faces of one video packed on one workspace and unpacked on
another merge the same frames; unpacking twice changes nothing; hostile zips are refused."""

import hashlib
import io
import json
import shutil
import sys
import zipfile
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

sys.path.append(str(Path(__file__).resolve().parent))  # the shared tiny pair (farm_pair.py)

from farm_pair import about_equal, copy_of, read_sequence, run_job, tiny_pair  # noqa: E402

from engine import bundle as bundle_mod  # noqa: E402
from engine.bundle import pack_bundle, unpack_bundle  # noqa: E402
from engine.errors import EngineError  # noqa: E402
from engine.service_bundle import BUNDLE_OPS  # noqa: E402
from engine.workspace import Workspace  # noqa: E402

LABEL = [{"include": True, "points": [[0.2, 0.2], [0.8, 0.2], [0.8, 0.85], [0.2, 0.85]]},
         {"include": False, "points": [[0.4, 0.3], [0.6, 0.3], [0.5, 0.45]]}]


@pytest.fixture(scope="module")
def first(tmp_path_factory, portrait_clips):
    """The first engine's workspace: the tiny pair, one destination face with a drawn label and one
    with a learned mask."""
    ws = Workspace(copy_of(tiny_pair(tmp_path_factory, portrait_clips), tmp_path_factory.mktemp("first") / "ws"))
    faces = ws.facesets.faces("dst")
    ws.masks.set_label(faces[3].id, LABEL)
    learned = ws.masks.learned_path(faces[4])
    mask = np.zeros((faces[4].size, faces[4].size), np.uint8)
    cv2.circle(mask, (64, 70), 40, 255, -1)
    cv2.imwrite(str(learned), mask)
    ws.masks.set_learned([(faces[4].id, learned)], "segnet")
    yield ws
    ws.close()


@pytest.fixture(scope="module")
def packed(first, portrait_clips):
    return pack_bundle(first, "m", "dst", portrait_clips["astronaut"])


def _uploaded(ws: Workspace, clip: Path) -> Path:
    """The clip as an upload lands on another engine: media/<sha256>.mp4 in its workspace."""
    dest = ws.root / "media" / f"{hashlib.sha256(clip.read_bytes()).hexdigest()}.mp4"
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(clip, dest)
    return dest


def _merge(ws: Workspace, video: Path, faceset: str, out: Path) -> dict:
    run_job(ws, "merge", {"model": "m", "faceset": faceset, "video": str(video), "frame_start": 1, "frame_end": 7,
                          "output": str(out)})
    return read_sequence(out)


def test_a_frame_merged_on_the_second_workspace_equals_the_firsts(first, packed, portrait_clips, tmp_path):
    second = Workspace(tmp_path / "second")
    try:
        names = unpack_bundle(second, packed)
        assert (names["model"], names["faceset"]) == ("m", "dst")
        assert names["faces"] == len(first.facesets.faces("dst"))
        # the faces match the uploaded copy by content, wherever it lies
        video = _uploaded(second, portrait_clips["astronaut"])
        theirs = _merge(second, video, names["faceset"], tmp_path / "theirs")
        ours = _merge(first, portrait_clips["astronaut"], "dst", tmp_path / "ours")
        assert sorted(theirs) == sorted(ours) and len(ours) == 12
        for name in ours:
            assert about_equal(theirs[name], ours[name]), name
        # the drawn label, the learned mask and the landmarks came across as they were
        mine, copied = first.facesets.faces("dst"), second.facesets.faces("dst")
        for a, b in zip(mine, copied):
            assert (a.frame, a.track, a.face_index) == (b.frame, b.track, b.face_index)
            assert np.array_equal(a.landmarks, b.landmarks) and np.array_equal(a.transform, b.transform)
            mask_a, source_a = first.masks.mask_of(a)
            mask_b, source_b = second.masks.mask_of(b)
            assert source_a == source_b and np.array_equal(mask_a, mask_b)
        assert second.masks.label(copied[3].id) == LABEL and second.masks.learned_model(copied[4].id) == "segnet"
    finally:
        second.close()


def _snapshot(ws: Workspace) -> tuple:
    files = sorted(str(p.relative_to(ws.root)) for p in ws.root.rglob("*") if p.is_file() and "catalog" not in p.name)
    rows = [tuple(r) for t in ("faces", "facesets", "media", "mask_labels", "learned_masks", "models")
            for r in ws._q(f"SELECT * FROM {t}")]
    return files, rows, ws.facesets.list()


def test_packing_again_gives_the_same_file_and_unpacking_twice_changes_nothing(first, packed, portrait_clips, tmp_path):
    assert pack_bundle(first, "m", "dst", portrait_clips["astronaut"]) == packed
    second = Workspace(tmp_path / "second")
    try:
        unpack_bundle(second, packed)
        before = _snapshot(second)
        assert unpack_bundle(second, packed)["faceset"] == "dst"
        assert _snapshot(second) == before
    finally:
        second.close()


def test_a_different_faceset_and_model_of_the_same_name_are_left_alone(packed, fill_faceset, tmp_path):
    second = Workspace(tmp_path / "second")
    try:
        theirs = fill_faceset(second, "dst", frames=3, people=1)
        (second.model_dir("m")).mkdir(parents=True)
        (second.model_dir("m") / "model.safetensors").write_bytes(b"another model")
        names = unpack_bundle(second, packed)
        assert names["faceset"].startswith("dst-") and names["model"].startswith("m-")
        assert [f.id for f in second.facesets.faces("dst", everyone=True)] == [f.id for f in theirs]
        assert (second.model_dir("m") / "model.safetensors").read_bytes() == b"another model"
        assert len(second.facesets.faces(names["faceset"])) == names["faces"]
        assert unpack_bundle(second, packed) == names
    finally:
        second.close()


def test_the_service_ops_pack_to_a_workspace_path_and_unpack_from_one(first, portrait_clips, tmp_path):
    packed = BUNDLE_OPS["bundle.pack"](SimpleNamespace(workspace=first, confine=False),
                                       {"model": "m", "faceset": "dst", "video": str(portrait_clips["astronaut"])})
    assert packed["path"].startswith("bundles/") and packed["hash"] == Path(packed["path"]).stem
    assert packed["size"] == (first.root / packed["path"]).stat().st_size
    second = Workspace(tmp_path / "second")
    try:
        upload = second.root / "media" / f"{packed['hash']}.zip"
        upload.parent.mkdir(parents=True)
        shutil.copyfile(first.root / packed["path"], upload)
        service = SimpleNamespace(workspace=second, confine=False)
        names = BUNDLE_OPS["bundle.unpack"](service, {"path": f"media/{packed['hash']}.zip"})
        assert names["model"] == "m" and names["faces"] > 0
        with pytest.raises(EngineError) as err:  # a bundle is read from the workspace only
            BUNDLE_OPS["bundle.unpack"](service, {"path": str(first.root / packed["path"])})
        assert err.value.code == "forbidden_path"
    finally:
        second.close()


# Hostile zips -----------------------------------------------------------------------------------


def _members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as zf:
        return {i.filename: zf.read(i) for i in zf.infolist()}


def _rezip(path: Path, members: dict[str, bytes], relist: bool = True) -> Path:
    """A zip of these members; with `relist` the manifest's file list is made to match them."""
    if relist:
        manifest = json.loads(members["manifest.json"])
        manifest["files"] = {n: {"size": len(d), "sha256": hashlib.sha256(d).hexdigest()}
                             for n, d in members.items() if n != "manifest.json"}
        members = {**members, "manifest.json": json.dumps(manifest).encode()}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    path.write_bytes(buf.getvalue())
    return path


def _evil(good: dict[str, bytes], kind: str) -> tuple[dict[str, bytes], bool]:
    model = good["model/model.safetensors"]
    if kind == "absolute":
        return {**good, "/tmp/evil.json": b"{}"}, True
    if kind == "dotdot":
        return {**good, "model/../../evil.json": b"{}"}, True
    if kind == "pickle":
        return {**good, "model/evil.pkl": b"cos\nsystem\n"}, True
    if kind == "folder":
        return {**good, "model/sub/x.json": b"{}"}, True
    if kind == "unlisted":
        return {**good, "model/extra.json": b"{}"}, False
    if kind == "tampered":
        return {**good, "model/model.safetensors": model[:-1] + bytes([model[-1] ^ 1])}, False
    if kind == "no manifest":
        return {n: d for n, d in good.items() if n != "manifest.json"}, False
    if kind == "faces point elsewhere":
        doc = json.loads(good["faceset/faces.json"])
        doc["faces"][0]["files"] = {"model/model.safetensors": hashlib.sha256(model).hexdigest()}
        doc["faces"][0]["image"] = "model/model.safetensors"
        return {**good, "faceset/faces.json": json.dumps(doc).encode()}, True
    if kind == "bad landmarks":
        doc = json.loads(good["faceset/faces.json"])
        doc["faces"][0]["transform"] = [[1e400, 0, 0], [0, 1, 0]]
        return {**good, "faceset/faces.json": json.dumps(doc).encode()}, True
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["absolute", "dotdot", "pickle", "folder", "unlisted", "tampered", "no manifest",
                                  "faces point elsewhere", "bad landmarks"])
def test_hostile_bundles_are_refused_and_leave_nothing(packed, tmp_path, kind):
    members, relist = _evil(_members(packed), kind)
    evil = _rezip(tmp_path / "evil.zip", members, relist)
    second = Workspace(tmp_path / "second")
    try:
        with pytest.raises(EngineError) as err:
            unpack_bundle(second, evil)
        assert err.value.code == "bad_bundle", err.value.message
        assert not (second.root / "models" / "m").exists() and second.facesets.list() == []
        assert not (tmp_path / "evil.json").exists() and not Path("/tmp/evil.json").exists()
    finally:
        second.close()


def test_sizes_are_bounded_whatever_a_member_claims(packed, tmp_path, monkeypatch):
    second = Workspace(tmp_path / "second")
    try:
        monkeypatch.setitem(bundle_mod.MAX_SIZE, ".jpg", 100)
        with pytest.raises(EngineError) as err:
            unpack_bundle(second, packed)
        assert err.value.code == "bad_bundle" and "size" in err.value.message
        (tmp_path / "junk.zip").write_bytes(b"PK not a zip")
        with pytest.raises(EngineError) as err:
            unpack_bundle(second, tmp_path / "junk.zip")
        assert err.value.code == "bad_bundle"
    finally:
        second.close()


def test_a_mask_model_the_merge_names_travels_along(first, portrait_clips, tmp_path):
    folder = first.root / "mask_models" / "xseg"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.safetensors").write_bytes(b"weights of a mask model")
    (folder / "notes.txt").write_text("stays home")
    packed = pack_bundle(first, "m", "dst", portrait_clips["astronaut"], mask_model="xseg")
    second = Workspace(tmp_path / "second")
    try:
        names = unpack_bundle(second, packed)
        assert names["mask_model"] == "xseg"
        assert sorted(p.name for p in (second.root / "mask_models" / "xseg").iterdir()) == ["model.safetensors"]
        assert (second.root / "mask_models" / "xseg" / "model.safetensors").read_bytes() == b"weights of a mask model"
        assert unpack_bundle(second, packed) == names
    finally:
        second.close()
    with pytest.raises(EngineError) as err:
        pack_bundle(first, "m", "dst", portrait_clips["astronaut"], mask_model="absent")
    assert err.value.code == "not_found"


def test_every_track_travels_and_the_chosen_person_stays_chosen(fill_faceset, tmp_path):
    first = Workspace(tmp_path / "first")
    second = Workspace(tmp_path / "second")
    try:
        faces = fill_faceset(first, "crowd", frames=4, people=2)
        first.facesets.choose_people("crowd", [2])
        first.model_dir("m").mkdir(parents=True)
        (first.model_dir("m") / "model.safetensors").write_bytes(b"weights")
        names = unpack_bundle(second, pack_bundle(first, "m", "crowd", first.root / "clip.mp4"))
        assert names["faces"] == len(faces) == 8
        assert [t["track"] for t in second.facesets.tracks("crowd") if t["chosen"]] == [2]
        assert [(f.frame, f.track) for f in second.facesets.faces("crowd")] == [(i, 2) for i in range(4)]
        # the video is known by content: a copy under another name finds the faces
        copy = tmp_path / "elsewhere.mp4"
        copy.write_bytes((first.root / "clip.mp4").read_bytes())
        assert len(second.facesets.faces("crowd", second.media_id(copy), everyone=True)) == 8
    finally:
        first.close()
        second.close()
