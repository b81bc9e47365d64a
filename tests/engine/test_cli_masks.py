"""`python -m engine mask ...`: labels, a label from a file, removal and a matte from the command line."""

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from engine.cli import main
from engine.facesets import FaceRecord
from engine.geometry.align import FACE_TYPES, align_transform, template_points
from engine.workspace import Workspace

ROOT = Path(__file__).resolve().parents[2]
SIZE = 128
LABEL = [{"include": True, "points": [[0.2, 0.2], [0.8, 0.2], [0.8, 0.8], [0.2, 0.8]]}]


@pytest.fixture
def ws_path(tmp_path, portrait_clips) -> Path:
    """A workspace with four faces of one person on the hopper clip."""
    ws = Workspace(tmp_path / "ws")
    media = ws.register_media(portrait_clips["hopper"], 320, 240, 12.0, 12)
    fs = ws.facesets.ensure("f", "full", SIZE)
    for frame in range(4):
        lm = template_points(100, FACE_TYPES["full"]) * 1.1 + [90 + 2 * frame, 50]
        path = ws.faceset_dir("f") / f"m{media}_f{frame:06d}_0.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), np.full((SIZE, SIZE, 3), 100, np.uint8))
        face_id = ws.facesets.add(fs, FaceRecord(
            media_id=media, frame=frame, face_index=0, box=(0, 0, 1, 1), score=0.9,
            landmarks=np.zeros((468, 2), np.float32), landmarks68=lm.astype(np.float32),
            transform=align_transform(lm, SIZE, "full"), image=path, track=1, face_type="full", size=SIZE))
        learned = ws.masks.learned_path(ws.facesets.face(face_id))
        cv2.imwrite(str(learned), np.full((SIZE, SIZE), 255, np.uint8))
        ws.masks.set_learned([(face_id, learned)], "xseg")
    ws.close()
    return tmp_path / "ws"


def _json(capsys):
    return json.loads(capsys.readouterr().out)


def test_labels_label_and_remove(ws_path, tmp_path, capsys):
    ws = str(ws_path)
    assert main(["mask", "labels", "--workspace", ws, "--faceset", "f"]) == 0
    got = _json(capsys)
    assert got == {"labelled": [], "count": 0, "faces": 4}
    face = 2
    (tmp_path / "label.json").write_text(json.dumps(LABEL))
    assert main(["mask", "label", "--workspace", ws, "--face", str(face), "--set", str(tmp_path / "label.json")]) == 0
    assert _json(capsys) == {"face": face, "count": 1}
    assert main(["mask", "label", "--workspace", ws, "--face", str(face)]) == 0
    assert _json(capsys)["polygons"] == LABEL
    # the same label sent back in frame pixels, as a {polygons, space} file
    assert main(["mask", "label", "--workspace", ws, "--face", str(face), "--space", "frame"]) == 0
    in_frame = _json(capsys)
    assert in_frame["width"] == 320 and in_frame["space"] == "frame"
    (tmp_path / "frame.json").write_text(json.dumps({"polygons": in_frame["polygons"], "space": "frame"}))
    assert main(["mask", "label", "--workspace", ws, "--face", "3", "--set", str(tmp_path / "frame.json")]) == 0
    assert _json(capsys)["count"] == 2
    assert main(["mask", "remove", "--workspace", ws, "--faceset", "f"]) == 0
    assert _json(capsys) == {"removed": 4}
    assert main(["mask", "labels", "--workspace", ws, "--faceset", "f"]) == 0
    assert _json(capsys)["labelled"] == [2, 3]  # labels stay


def test_command_line_mask_errors_are_readable(ws_path, tmp_path, capsys):
    ws = str(ws_path)
    (tmp_path / "bad.json").write_text("[{\"include\": true, \"points\": [[0, 0]]}]")
    assert main(["mask", "label", "--workspace", ws, "--face", "1", "--set", str(tmp_path / "bad.json")]) == 2
    assert "[bad_request]" in capsys.readouterr().err
    (tmp_path / "broken.json").write_text("{not json")
    assert main(["mask", "label", "--workspace", ws, "--face", "1", "--set", str(tmp_path / "broken.json")]) == 2
    assert "not JSON" in capsys.readouterr().err
    assert main(["mask", "label", "--workspace", ws, "--face", "77"]) == 2
    assert "[not_found]" in capsys.readouterr().err
    assert main(["mask", "labels", "--workspace", ws, "--faceset", "nobody"]) == 2


def test_matte_from_the_command_line(ws_path, tmp_path, portrait_clips):
    out = tmp_path / "matte"
    run = subprocess.run([sys.executable, "-m", "engine", "mask", "matte", "--workspace", str(ws_path),
                          "--faceset", "f", "--video", str(portrait_clips["hopper"]), "--end", "6",
                          "--output", str(out), "--source", "hull", "--top", "0.05", "--blur", "0.02",
                          "--temporal", "1"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["count"] == 6 and result["directory"] == str(out) and "100.0%" in run.stderr
    assert sorted(p.name for p in out.glob("*.png")) == [f"matte_{i:06d}.png" for i in range(6)]
    m = cv2.imread(str(out / "matte_000001.png"), cv2.IMREAD_UNCHANGED)
    assert m.shape == (240, 320) and m.max() == 255 and m[0, 0] == 0
    assert cv2.imread(str(out / "matte_000005.png"), cv2.IMREAD_UNCHANGED).max() == 0  # no face there
    bad = subprocess.run([sys.executable, "-m", "engine", "mask", "matte", "--workspace", str(ws_path),
                          "--faceset", "f", "--video", str(portrait_clips["hopper"]), "--erode", "3"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert bad.returncode == 1 and "[bad_request]" in bad.stderr and "Traceback" not in bad.stderr
