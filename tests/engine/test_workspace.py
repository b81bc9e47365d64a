import os

import numpy as np
import pytest

from engine.errors import EngineError
from engine.files import atomic_write
from engine.workspace import Workspace


def test_atomic_write_leaves_no_temp_and_replaces(tmp_path):
    p = tmp_path / "a" / "file.bin"
    atomic_write(p, b"one")
    atomic_write(p, b"two")
    assert p.read_bytes() == b"two"
    assert sorted(os.listdir(p.parent)) == ["file.bin"]


def test_atomic_write_failure_is_a_clear_error(tmp_path):
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("x")
    with pytest.raises(EngineError) as err:
        atomic_write(blocker / "f.bin", b"data")
    assert err.value.code == "io_error"


def test_faces_round_trip_and_reextract_replaces(tmp_path):
    ws = Workspace(tmp_path / "ws")
    video = tmp_path / "v.mp4"
    video.write_bytes(b"0")
    media = ws.register_media(video, 64, 48, 25.0, 10)
    assert ws.register_media(video, 64, 48, 25.0, 10) == media
    fs = ws.ensure_faceset("src", "full", 256)
    lm = np.random.rand(478, 2).astype(np.float32)
    lm68 = np.random.rand(68, 2).astype(np.float32)
    m = np.array([[1.0, 0, 2], [0, 1, 3]])
    for frame in range(5):
        img = ws.faceset_dir("src") / f"{frame}.jpg"
        atomic_write(img, b"jpeg")
        ws.add_face(fs, media, frame, 0, (1, 2, 3, 4), 0.9, lm, lm68, m, img)
    faces = ws.faces("src", media)
    assert [f.frame for f in faces] == [0, 1, 2, 3, 4]
    np.testing.assert_array_equal(faces[0].landmarks68, lm68)
    np.testing.assert_array_equal(faces[0].transform, m)
    ws.clear_faces(fs, media, 1, 3)
    assert [f.frame for f in ws.faces("src", media)] == [0, 3, 4]
    assert not (ws.faceset_dir("src") / "1.jpg").exists()
    assert ws.list_facesets()[0]["faces"] == 3
    ws.close()
    # the catalog survives a reopen
    assert len(Workspace(tmp_path / "ws").faces("src")) == 3


def test_faceset_errors(tmp_path):
    ws = Workspace(tmp_path)
    with pytest.raises(EngineError) as err:
        ws.faceset("nope")
    assert err.value.code == "not_found"
    with pytest.raises(EngineError):
        ws.ensure_faceset("../escape", "full", 256)
    ws.ensure_faceset("a", "full", 256)
    with pytest.raises(EngineError):
        ws.ensure_faceset("a", "full", 512)


def test_jobs_persist(tmp_path):
    ws = Workspace(tmp_path)
    job = {"id": "j1", "kind": "extract", "state": "running", "params": {"a": 1}, "progress": 0.5, "message": "m",
           "stats": {}, "result": None, "error": None, "created": 1.0}
    ws.save_job(job)
    (loaded,) = Workspace(tmp_path).load_jobs()
    assert loaded["params"] == {"a": 1} and loaded["state"] == "running"
