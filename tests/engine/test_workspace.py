import os
import sqlite3

import numpy as np
import pytest

from engine.errors import EngineError
from engine.files import atomic_write
from engine.facesets import FaceRecord
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


def _face(ws, media, frame, track=0, index=0):
    img = ws.faceset_dir("src") / f"{frame}_{index}.jpg"
    atomic_write(img, b"jpeg")
    return FaceRecord(media_id=media, frame=frame, face_index=index, box=(1, 2, 3, 4), score=0.9,
                      landmarks=np.random.rand(468, 2).astype(np.float32),
                      landmarks68=np.random.rand(68, 2).astype(np.float32),
                      transform=np.array([[1.0, 0, 2], [0, 1, 3]]), image=img, track=track, yaw=float(frame))


def test_faces_round_trip_and_reextract_replaces(tmp_path):
    ws = Workspace(tmp_path / "ws")
    video = tmp_path / "v.mp4"
    video.write_bytes(b"0")
    media = ws.register_media(video, 64, 48, 25.0, 10)
    assert ws.register_media(video, 64, 48, 25.0, 10) == media
    fs = ws.facesets.ensure("src", "full", 256)
    stored = [_face(ws, media, frame) for frame in range(5)]
    for face in stored:
        ws.facesets.add(fs, face)
    faces = ws.facesets.faces("src", media)
    assert [f.frame for f in faces] == [0, 1, 2, 3, 4]
    np.testing.assert_array_equal(faces[0].landmarks68, stored[0].landmarks68)
    np.testing.assert_array_equal(faces[0].transform, stored[0].transform)
    assert faces[3].yaw == 3.0
    ws.facesets.clear(fs, media, 1, 3)
    assert [f.frame for f in ws.facesets.faces("src", media)] == [0, 3, 4]
    assert not (ws.faceset_dir("src") / "1_0.jpg").exists()
    assert ws.facesets.list()[0]["faces"] == 3
    ws.close()
    # the catalog survives a reopen
    assert len(Workspace(tmp_path / "ws").facesets.faces("src")) == 3


def test_people_default_to_the_longest_track_and_can_be_chosen(tmp_path):
    ws = Workspace(tmp_path)
    video = tmp_path / "v.mp4"
    video.write_bytes(b"0")
    media = ws.register_media(video, 64, 48, 25.0, 10)
    fs = ws.facesets.ensure("src", "full", 256)
    for frame in range(6):
        ws.facesets.add(fs, _face(ws, media, frame, track=1, index=0))
    for frame in range(2):
        ws.facesets.add(fs, _face(ws, media, frame, track=2, index=1))
    assert {f.track for f in ws.facesets.faces("src")} == {1}
    assert len(ws.facesets.faces("src", everyone=True)) == 8
    tracks = ws.facesets.tracks("src")
    assert [(t["track"], t["faces"], t["chosen"]) for t in tracks] == [(1, 6, True), (2, 2, False)]
    ws.facesets.choose_people("src", [2])
    assert [f.frame for f in ws.facesets.faces("src")] == [0, 1]
    with pytest.raises(EngineError) as err:
        ws.facesets.choose_people("src", [9])
    assert err.value.code == "not_found"
    ws.facesets.choose_people("src", None)
    doomed = ws.facesets.faces("src")[:2]
    assert ws.facesets.delete("src", [f.id for f in doomed]) == 2
    assert not doomed[0].image.exists()
    assert [f.frame for f in ws.facesets.faces("src")] == [2, 3, 4, 5]


def test_media_are_known_by_content(tmp_path):
    ws = Workspace(tmp_path / "ws")
    video = tmp_path / "v.mp4"
    video.write_bytes(b"first content")
    media = ws.register_media(video, 64, 48, 25.0, 10)
    fs = ws.facesets.ensure("src", "full", 256)
    ws.facesets.add(fs, _face(ws, media, 0))
    moved = tmp_path / "moved.mp4"
    video.rename(moved)
    assert ws.media_id(moved) == media  # found by content before it is registered again
    assert ws.register_media(moved, 64, 48, 25.0, 10) == media
    assert len(ws.facesets.faces("src")) == 1  # a moved clip keeps its faces
    moved.write_bytes(b"edited content")
    assert ws.register_media(moved, 64, 48, 25.0, 10) == media
    assert ws.facesets.faces("src", everyone=True) == []  # an edited clip loses them


def test_old_catalogs_gain_the_new_columns(tmp_path):
    db = sqlite3.connect(tmp_path / "catalog.sqlite")
    db.executescript("""
        CREATE TABLE media (id INTEGER PRIMARY KEY, path TEXT NOT NULL UNIQUE, width INTEGER, height INTEGER,
            fps REAL, frames INTEGER, size_bytes INTEGER, mtime REAL);
        CREATE TABLE facesets (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, face_type TEXT NOT NULL,
            size INTEGER NOT NULL, created REAL NOT NULL);
        CREATE TABLE faces (id INTEGER PRIMARY KEY, faceset_id INTEGER NOT NULL, media_id INTEGER NOT NULL,
            frame INTEGER NOT NULL, face_index INTEGER NOT NULL, box TEXT NOT NULL, score REAL NOT NULL,
            landmarks BLOB NOT NULL, landmarks68 BLOB NOT NULL, transform BLOB NOT NULL, image TEXT NOT NULL);
        INSERT INTO media VALUES (1, '/x.mp4', 64, 48, 25, 10, 1, 1);
        INSERT INTO facesets VALUES (1, 'old', 'full', 256, 0);
    """)
    lm = np.zeros((68, 2), np.float32).tobytes()
    db.execute("INSERT INTO faces VALUES (1, 1, 1, 0, 0, '[0,0,1,1]', 0.9, ?, ?, ?, 'facesets/old/a.jpg')",
               (lm, lm, np.eye(2, 3).tobytes()))
    db.commit()
    db.close()
    (face,) = Workspace(tmp_path).facesets.faces("old")
    assert face.track == 0 and face.sharpness == 0.0 and face.extra == {}


def test_faceset_errors(tmp_path):
    ws = Workspace(tmp_path)
    with pytest.raises(EngineError) as err:
        ws.facesets.get("nope")
    assert err.value.code == "not_found"
    with pytest.raises(EngineError):
        ws.facesets.ensure("../escape", "full", 256)
    ws.facesets.ensure("a", "full", 256)
    with pytest.raises(EngineError):
        ws.facesets.ensure("a", "full", 512)


def test_jobs_persist(tmp_path):
    ws = Workspace(tmp_path)
    job = {"id": "j1", "kind": "extract", "state": "running", "params": {"a": 1}, "progress": 0.5, "message": "m",
           "stats": {}, "result": None, "error": None, "created": 1.0}
    ws.save_job(job)
    (loaded,) = Workspace(tmp_path).load_jobs()
    assert loaded["params"] == {"a": 1} and loaded["state"] == "running"
