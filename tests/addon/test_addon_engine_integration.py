"""Extract → train → merge through the add-on against a real engine subprocess, then pixels.

The scenario (Blender process) launches the engine the way a user's Blender would; the pixel
comparison happens here, in the pytest process, with the same decoder the engine uses (OpenCV).
"""

import json
import sqlite3
from pathlib import Path

import cv2
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]

SOURCE = "styletalk__samples_source_video_video_Obama_clip1.mp4"
DESTINATION = "styletalk__samples_source_video_video_andrew_clip_1.mp4"
SETTINGS = {"resolution": 64, "iterations": 10, "batch_size": 4, "face_size": 128}


def decode(path: Path, frames: set[int]) -> dict[int, np.ndarray]:
    cap, found, index = cv2.VideoCapture(str(path)), {}, 0
    while len(found) < len(frames):
        ok, image = cap.read()
        if not ok:
            break
        if index in frames:
            found[index] = image
        index += 1
    cap.release()
    return found


def face_boxes(workspace: Path, faceset: str, video: str) -> dict[int, tuple]:
    with sqlite3.connect(workspace / "catalog.sqlite") as db:
        rows = db.execute(
            "SELECT faces.frame, faces.box FROM faces JOIN facesets ON facesets.id = faces.faceset_id "
            "JOIN media ON media.id = faces.media_id WHERE facesets.name = ? AND media.path = ?",
            (faceset, str(Path(video).resolve()))).fetchall()
    return {frame: tuple(json.loads(box)) for frame, box in rows}


@pytest.mark.skipif(not (REPO / ".venv" / "bin" / "python").is_file(), reason="no .venv with the engine")
def test_extract_train_merge_through_the_addon(run_scenario, shared_clip, tmp_path):
    src, dst = shared_clip(SOURCE), shared_clip(DESTINATION)
    workspace = tmp_path / "workspace"
    out = run_scenario("pipeline", src, dst, workspace, json.dumps(SETTINGS), timeout=600)
    print("add-on pipeline seconds:", {k: round(v, 1) for k, v in out["times"].items()})

    assert [j["state"] for j in out["extracted"]] == ["done", "done"]
    assert {j["params"]["faceset"] for j in out["extracted"]} == {"source", "destination"}
    for job in out["extracted"]:
        assert job["params"]["frame_end"] - job["params"]["frame_start"] == 20
        assert job["result"]["faces"] > 0
    [trained] = out["trained"]
    assert trained["state"] == "done" and trained["result"]["iterations"] >= 1
    assert out["iteration_seen"] >= 1
    # the second run resumed from the first one's checkpoint, and Stop cancelled it
    [stopped] = out["stopped"]
    assert stopped["state"] == "cancelled" and out["resumed_at"] > out["iteration_seen"]
    [merged] = out["merged"]
    assert merged["state"] == "done"

    d, r = out["destination"], out["result"]
    assert out["results"] == 1 and r["type"] == "IMAGE" and r["name"] == "Destination swap"
    assert r["job"] == merged["id"]
    assert (r["start"], r["end"]) == (d["start"], d["end"]) == (55, 75)
    assert d["source_range"] == [5, 25] and r["channel"] == 5, "channel 4 holds a strip in that range"
    assert isinstance(out["engine_exit"], int), f"unregister must stop the local engine: {out['engine_exit']}"

    # pixels: each result frame is its destination frame with only the face changed
    wanted = {int(f) - d["frame_start"]: path for f, path in r["frames"].items()}
    originals = decode(Path(d["video"]), set(wanted))
    boxes = face_boxes(workspace, "destination", d["video"])
    inside, outside = [], []
    for frame, path in sorted(wanted.items()):
        swapped, original = cv2.imread(path), originals[frame]
        assert swapped is not None and swapped.shape == original.shape, path
        diff = np.abs(swapped.astype(np.int16) - original.astype(np.int16)).mean(axis=2)
        if frame not in boxes:
            assert diff.mean() < 0.5, f"frame {frame} has no face but changed"
            continue
        x0, y0, x1, y1 = boxes[frame]
        w, h = x1 - x0, y1 - y0
        core = diff[int(y0 + 0.2 * h):int(y1 - 0.2 * h), int(x0 + 0.2 * w):int(x1 - 0.2 * w)]
        far = np.ones_like(diff, bool)
        far[max(0, int(y0 - 0.3 * h)):int(y1 + 0.3 * h), max(0, int(x0 - 0.3 * w)):int(x1 + 0.3 * w)] = False
        assert far.any()
        inside.append(core.mean())
        outside.append(diff[far].mean())
    assert len(inside) >= len(wanted) // 2, "the destination's faces were found in most frames"
    assert np.mean(inside) > 4.0, f"the face did not change: {inside}"
    assert max(outside) < 0.5, f"pixels away from the face changed: {outside}"
