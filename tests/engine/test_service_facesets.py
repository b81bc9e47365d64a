"""The faceset operations the add-on calls, through EngineService.handle in-process and the CLI."""

import json
import subprocess
import sys
from pathlib import Path

import cv2
import msgpack
import numpy as np
import pytest

from bridge import BridgeError
from engine.facesets import FaceRecord
from engine.faces.quality import face_quality
from engine.media.synthetic import portrait
from engine.service import EngineService
from engine.workspace import Workspace

ROOT = Path(__file__).resolve().parents[2]


def _crops():
    """Ten faces of one person (shifted, blurred, lit a little differently) and an all-blue misdetection."""
    base = portrait("hopper")
    crops = []
    for i in range(10):
        face = cv2.resize(base[40 + i:552 + i, 2 * i:512 + 2 * i], (256, 256), interpolation=cv2.INTER_AREA)
        crops.append(cv2.GaussianBlur(face, (0, 0), 0.5 + 0.15 * i) if i else face)
    blue = np.zeros((256, 256, 3), np.uint8)
    blue[..., 0] = 255
    return crops + [blue]


def _fill(ws: Workspace, name: str = "src") -> list[FaceRecord]:
    """Faces 0..7 are track 1 (the longest, so the default person), 8..10 track 2 (8 is the blue one)."""
    video = ws.root / "clip.mp4"
    video.write_bytes(b"stand-in")
    media = ws.register_media(video, 640, 480, 25.0, 11)
    fs = ws.facesets.ensure(name, "full", 256)
    crops = _crops()
    crops[8], crops[10] = crops[10], crops[8]
    for frame, image in enumerate(crops):
        path = ws.faceset_dir(name) / f"{frame:05d}_0.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), image)
        sharpness, brightness = face_quality(image)
        ws.facesets.add(fs, FaceRecord(
            media_id=media, frame=frame, face_index=0, box=(0, 0, 1, 1), score=0.9,
            landmarks=np.zeros((468, 2), np.float32), landmarks68=np.zeros((68, 2), np.float32),
            transform=np.array([[1.0, 0, 0], [0, 1, 0]]), image=path, track=1 if frame < 8 else 2,
            yaw=-40.0 + 10 * frame, pitch=0.0, sharpness=sharpness, brightness=brightness, size=256))
    return ws.facesets.faces(name, everyone=True)


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    svc = EngineService(tmp_path_factory.mktemp("ws"))
    yield svc
    svc.stop()


@pytest.fixture
def faces(service):
    for name in [f["name"] for f in service.workspace.facesets.list()]:
        service.workspace.facesets.delete(name, [f.id for f in service.workspace.facesets.faces(name, everyone=True)])
    return _fill(service.workspace)


def call(service, op, args):
    result = service.handle(op, args, None)
    msgpack.packb(result, use_bin_type=True)  # everything must cross the bridge as it is
    return result


def refused(service, op, args) -> str:
    with pytest.raises(BridgeError) as err:
        service.handle(op, args, None)
    return err.value.code


def test_list_and_faces(service, faces):
    (listed,) = call(service, "faceset.list", {})["facesets"]
    assert listed["name"] == "src" and listed["faces"] == 11 and listed["tracks"] == 2
    page = call(service, "faceset.faces", {"faceset": "src"})
    assert page["total"] == 8 and [f["frame"] for f in page["faces"]] == list(range(8))
    first = page["faces"][0]
    assert set(first) == {"id", "media_id", "frame", "track", "image", "yaw", "pitch", "roll", "sharpness",
                          "brightness", "score"}
    assert Path(first["image"]).is_absolute() and Path(first["image"]).is_file()
    sharp = call(service, "faceset.faces", {"faceset": "src", "sort": "sharpness", "limit": 3, "offset": 1})
    assert [f["frame"] for f in sharp["faces"]] == [1, 2, 3] and sharp["total"] == 8
    everyone = call(service, "faceset.faces", {"faceset": "src", "everyone": True, "sort": "histogram-dissimilar"})
    assert everyone["total"] == 11 and everyone["faces"][0]["frame"] == 8  # the blue crop stands out
    track = call(service, "faceset.faces", {"faceset": "src", "track": 2, "sort": "yaw"})
    assert [f["frame"] for f in track["faces"]] == [8, 9, 10]


def test_tracks_and_choose(service, faces):
    tracks = call(service, "faceset.tracks", {"faceset": "src"})["tracks"]
    assert [(t["track"], t["faces"], t["chosen"]) for t in tracks] == [(1, 8, True), (2, 3, False)]
    chosen = call(service, "faceset.choose", {"faceset": "src", "tracks": [2]})["tracks"]
    assert [t["chosen"] for t in chosen] == [False, True]
    assert call(service, "faceset.faces", {"faceset": "src"})["total"] == 3
    call(service, "faceset.choose", {"faceset": "src", "tracks": None})
    assert call(service, "faceset.faces", {"faceset": "src"})["total"] == 8


def test_delete(service, faces):
    doomed = [faces[0].id, faces[1].id]
    assert call(service, "faceset.delete", {"faceset": "src", "faces": doomed}) == {"deleted": 2}
    assert not faces[0].image.exists() and faces[2].image.exists()
    assert call(service, "faceset.delete", {"faceset": "src", "faces": doomed}) == {"deleted": 0}
    assert call(service, "faceset.faces", {"faceset": "src"})["total"] == 6


def test_best_and_outliers(service, faces):
    best = call(service, "faceset.best", {"faceset": "src", "count": 3})
    chosen = [f.id for f in faces if f.track == 1]
    assert len(best["keep"]) == 3 and sorted(best["keep"] + best["drop"]) == sorted(chosen)
    assert call(service, "faceset.faces", {"faceset": "src"})["total"] == 8  # nothing deleted
    assert call(service, "faceset.best", {"faceset": "src", "count": 50})["drop"] == []
    assert call(service, "faceset.outliers", {"faceset": "src"}) == {"faces": []}
    call(service, "faceset.choose", {"faceset": "src", "tracks": [1, 2]})
    flagged = call(service, "faceset.outliers", {"faceset": "src"})["faces"]
    assert [f["id"] for f in flagged] == [faces[8].id] and "unlike the other faces" in flagged[0]["reason"]


@pytest.mark.parametrize("op, args", [
    ("faceset.faces", {}),
    ("faceset.faces", {"faceset": 3}),
    ("faceset.faces", {"faceset": "src", "sort": "colour"}),
    ("faceset.faces", {"faceset": "src", "limit": "10"}),
    ("faceset.faces", {"faceset": "src", "limit": True}),
    ("faceset.faces", {"faceset": "src", "offset": -1}),
    ("faceset.faces", {"faceset": "src", "everyone": 1}),
    ("faceset.faces", {"faceset": "src", "track": "2"}),
    ("faceset.tracks", {"faceset": None}),
    ("faceset.choose", {"faceset": "src"}),
    ("faceset.choose", {"faceset": "src", "tracks": 2}),
    ("faceset.choose", {"faceset": "src", "tracks": ["2"]}),
    ("faceset.delete", {"faceset": "src", "faces": [1.5]}),
    ("faceset.delete", {"faceset": "src"}),
    ("faceset.best", {"faceset": "src", "count": 0}),
    ("faceset.best", {"faceset": "src", "count": 2.0}),
    ("faceset.outliers", {"faceset": ["src"]}),
])
def test_bad_arguments_are_bad_requests(service, faces, op, args):
    assert refused(service, op, args) == "bad_request"


@pytest.mark.parametrize("op, args", [
    ("faceset.faces", {"faceset": "nobody"}),
    ("faceset.tracks", {"faceset": "nobody"}),
    ("faceset.choose", {"faceset": "nobody", "tracks": None}),
    ("faceset.choose", {"faceset": "src", "tracks": [99]}),
    ("faceset.delete", {"faceset": "nobody", "faces": [1]}),
    ("faceset.best", {"faceset": "nobody", "count": 3}),
    ("faceset.outliers", {"faceset": "nobody"}),
])
def test_unknown_facesets_and_tracks_are_not_found(service, faces, op, args):
    assert refused(service, op, args) == "not_found"


def _engine(*args):
    return subprocess.run([sys.executable, "-m", "engine", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)


def test_command_line_round_trip(tmp_path):
    ws = Workspace(tmp_path)
    faces = _fill(ws)
    ws.close()
    run = _engine("faceset", "--workspace", str(tmp_path), "list")
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["facesets"][0]["faces"] == 11
    run = _engine("faceset", "--workspace", str(tmp_path), "faces", "src", "--sort", "sharpness", "--limit", "2")
    assert [f["frame"] for f in json.loads(run.stdout)["faces"]] == [0, 1]
    run = _engine("faceset", "--workspace", str(tmp_path), "best", "src", "3")
    best = json.loads(run.stdout)
    assert len(best["keep"]) == 3 and len(best["drop"]) == 5 and "deleted" not in best
    run = _engine("faceset", "--workspace", str(tmp_path), "best", "src", "3", "--apply")
    assert json.loads(run.stdout)["deleted"] == 5
    assert sum(1 for f in faces if f.image.exists()) == 6  # 3 kept and the other track's 3
    run = _engine("faceset", "--workspace", str(tmp_path), "choose", "src", "2")
    assert [t["chosen"] for t in json.loads(run.stdout)["tracks"]] == [False, True]
    run = _engine("faceset", "--workspace", str(tmp_path), "outliers", "nobody")
    assert run.returncode == 2 and "[not_found]" in run.stderr and "Traceback" not in run.stderr
