"""The merge job on a tiny trained model: swapped inside the face, untouched outside it."""

import cv2
import numpy as np
import pytest

from engine.errors import EngineError
from engine.jobs import JobRunner
from engine.media.decode import iter_frames
from engine.recipes import STAGES
from engine.workspace import Workspace

TINY = {"resolution": 32, "ae_dims": 32, "e_dims": 8, "d_dims": 8, "d_mask_dims": 4, "batch_size": 4}


def _run(runner, kind, params):
    job = runner.wait(runner.submit(kind, params)["id"], timeout=300)
    if job["state"] != "done":
        raise EngineError(job["error"]["code"], job["error"]["message"])
    return job["result"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, portrait_clips):
    ws = Workspace(tmp_path_factory.mktemp("ws"))
    runner = JobRunner(ws, STAGES)
    _run(runner, "extract", {"video": str(portrait_clips["hopper"]), "faceset": "src", "size": 128})
    _run(runner, "extract", {"video": str(portrait_clips["astronaut"]), "faceset": "dst", "size": 128})
    result = _run(runner, "train", {"model": "m", "source": "src", "destination": "dst", "iterations": 12, **TINY})
    assert result["iterations"] == 12
    yield ws, runner
    runner.shutdown()


def test_merge_swaps_inside_the_face_only(trained, portrait_clips, tmp_path):
    ws, runner = trained
    result = _run(runner, "merge", {"model": "m", "video": str(portrait_clips["astronaut"]), "faceset": "dst",
                                    "frame_start": 2, "frame_end": 8, "output": str(tmp_path / "out")})
    assert result["first_frame"] == 2 and result["count"] == 6 and result["swapped"] == 6
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == [f"frame_{i:06d}.png" for i in range(2, 8)]
    faces = {f.frame: f for f in ws.facesets.faces("dst")}
    for index, frame in iter_frames(portrait_clips["astronaut"], 2, 8):
        merged = cv2.imread(str(tmp_path / "out" / f"frame_{index:06d}.png"))
        diff = np.abs(merged.astype(int) - frame.astype(int)).sum(axis=2)
        x0, y0, x1, y1 = (int(v) for v in faces[index].box)
        assert diff[y0:y1, x0:x1].mean() > 5, "the face was not replaced"
        outside = np.ones_like(diff, bool)
        pad = (x1 - x0) // 2  # the feathered hull stays within half a face-width of the detection box
        outside[max(0, y0 - pad):y1 + pad, max(0, x0 - pad):x1 + pad] = False
        assert diff[outside].max() == 0, "pixels outside the face changed"


def test_merge_errors(trained, portrait_clips):
    ws, runner = trained
    with pytest.raises(EngineError) as err:
        _run(runner, "merge", {"model": "nope", "video": str(portrait_clips["astronaut"]), "faceset": "dst"})
    assert err.value.code == "not_found"
    with pytest.raises(EngineError) as err:  # the source clip was never extracted into "dst"
        _run(runner, "merge", {"model": "m", "video": str(portrait_clips["hopper"]), "faceset": "dst"})
    assert err.value.code == "no_faces"
    with pytest.raises(EngineError) as err:
        _run(runner, "merge", {"model": "m", "video": str(portrait_clips["astronaut"]), "faceset": "dst", "blend": 1})
    assert err.value.code == "bad_request"


def test_a_drawn_mask_keeps_what_covers_the_face_in_front_of_the_swap(trained, portrait_clips, tmp_path):
    ws, runner = trained
    face = next(f for f in ws.facesets.faces("dst") if f.frame == 3)
    # the face is the crop's upper half only: a microphone covers everything below the nose
    ws.masks.set_label(face.id, [{"include": True, "points": [[0.1, 0.05], [0.9, 0.05], [0.9, 0.5], [0.1, 0.5]]}])
    try:
        _run(runner, "merge", {"model": "m", "video": str(portrait_clips["astronaut"]), "faceset": "dst",
                               "frame_start": 3, "frame_end": 4, "output": str(tmp_path / "out")})
    finally:
        ws.masks.set_label(face.id, [])
    merged = cv2.imread(str(tmp_path / "out" / "frame_000003.png"))
    frame = next(f for _, f in iter_frames(portrait_clips["astronaut"], 3, 4))
    diff = np.abs(merged.astype(int) - frame.astype(int)).sum(axis=2)
    # where the label's upper half and its lower half land in the frame
    ys, xs = np.mgrid[0:frame.shape[0], 0:frame.shape[1]]
    crop = np.stack([xs, ys], -1).reshape(-1, 2) @ face.transform[:, :2].T + face.transform[:, 2]
    u, v = (crop[:, 0] / face.size).reshape(ys.shape), (crop[:, 1] / face.size).reshape(ys.shape)
    upper = (u > 0.3) & (u < 0.7) & (v > 0.2) & (v < 0.4)
    lower = (u > 0.1) & (u < 0.9) & (v > 0.6) & (v < 1.0)
    assert diff[upper].mean() > 5, "the labelled part of the face was not replaced"
    assert diff[lower].max() == 0, "the swap was pasted over what the label leaves out"
