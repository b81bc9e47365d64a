"""Mask recipes as jobs: mask_train refuses without labels, trains on every labelled face of the
facesets (labels rasterised from their polygons), mask_apply masks the faceset; and the CLI."""

import cv2
import numpy as np
import pytest

from engine import cli
from engine.facesets import FaceRecord
from engine.geometry.align import FACE_TYPES, align_transform, template_points
from engine.jobs import JobRunner
from engine.recipes import STAGES
from engine.workspace import Workspace

LABEL = [{"include": True, "points": [[0.25, 0.17], [0.75, 0.17], [0.75, 0.83], [0.25, 0.83]]},
         {"include": False, "points": [[0.3, 0.6], [0.7, 0.6], [0.7, 0.7], [0.3, 0.7]]}]
SIZE = 64


def fill(ws: Workspace, name: str = "f", frames: int = 5, people: int = 2) -> list[FaceRecord]:
    """A faceset of synthetic faces (a bright ellipse on noise), `people` tracks per frame."""
    rng = np.random.default_rng(0)
    video = ws.root / "clip.mp4"
    video.write_bytes(b"clip")
    media = ws.register_media(video, 320, 240, 25.0, frames)
    fs = ws.facesets.ensure(name, "full", SIZE)
    tpl = template_points(100, FACE_TYPES["full"])
    for frame in range(frames):
        for person in range(people):
            lm = tpl + [100 + 3 * frame + 150 * person, 60]
            img = rng.integers(0, 120, (SIZE, SIZE, 3)).astype(np.uint8)
            cv2.ellipse(img, (SIZE // 2, SIZE // 2), (SIZE // 4, SIZE // 3), 0, 0, 360, (90, 140, 200), -1)
            path = ws.faceset_dir(name) / f"m{media}_f{frame:06d}_{person}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(path), img)
            ws.facesets.add(fs, FaceRecord(
                media_id=media, frame=frame, face_index=person, box=(0, 0, 1, 1), score=0.9,
                landmarks=np.zeros((468, 2), np.float32), landmarks68=lm.astype(np.float32),
                transform=align_transform(lm, SIZE, "full"), image=path, track=1 + person, face_type="full",
                size=SIZE))
    return ws.facesets.faces(name, everyone=True)


TINY = {"resolution": 32, "width": 4, "iterations": 3, "batch_size": 2}


@pytest.fixture()
def runner(tmp_path):
    ws = Workspace(tmp_path / "ws")
    fill(ws, "a", frames=3, people=1)
    fill(ws, "b", frames=2, people=2)
    r = JobRunner(ws, STAGES)
    yield ws, r
    r.shutdown()
    ws.close()


def _wait(r, kind, params):
    return r.wait(r.submit(kind, params)["id"])


def test_train_refuses_without_labels_then_trains_and_applies(runner):
    ws, r = runner
    job = _wait(r, "mask_train", {"facesets": ["a", "b"], **TINY})
    assert job["state"] == "failed" and job["error"]["code"] == "no_labels"
    a, b = ws.facesets.faces("a", everyone=True), ws.facesets.faces("b", everyone=True)
    for face in (a[0], a[2], b[3]):  # b[3]: the second person's face counts too
        ws.masks.set_label(face.id, LABEL)
    job = _wait(r, "mask_train", {"facesets": ["a", "b"], **TINY})
    assert job["state"] == "done", job["error"]
    assert job["result"]["labelled"] == 3 and job["result"]["iterations"] == 3 and job["result"]["model"] == "xseg"
    assert (ws.root / "mask_models" / "xseg" / "model.safetensors").is_file()
    assert "loss" in job["stats"] and "iteration" in job["stats"]
    job = _wait(r, "mask_train", {"facesets": ["a"], **TINY, "iterations": 5})  # resumes
    assert job["state"] == "done" and job["result"]["iterations"] == 5 and job["result"]["labelled"] == 2
    more = {k: v for k, v in TINY.items() if k != "iterations"}
    job = _wait(r, "mask_train", {"facesets": ["a"], **more, "more": 2})  # pressing Train again trains on
    assert job["state"] == "done" and job["result"]["iterations"] == 7
    job = _wait(r, "mask_apply", {"faceset": "b"})
    assert job["state"] == "done" and job["result"]["faces"] == 4
    assert {ws.masks.mask_of(f)[1] for f in b} == {"label", "learned"}  # a drawn label still wins
    assert ws.masks.mask_of(a[1])[1] == "hull"


@pytest.mark.parametrize("kind, params, code", [
    ("mask_train", {"facesets": "a"}, "bad_request"),
    ("mask_train", {"facesets": ["a"], "resolution": 100}, "bad_request"),
    ("mask_train", {"facesets": ["a"], "colour": 1}, "bad_request"),
    ("mask_train", {"facesets": ["nope"]}, "not_found"),
    ("mask_train", {"facesets": ["a"], "more": 0}, "bad_request"),
    ("mask_train", {"facesets": ["a"], "more": 2, "iterations": 9}, "bad_request"),
    ("mask_apply", {"faceset": "a", "model": "missing"}, "not_found"),
    ("mask_apply", {"faceset": "a", "size": 3}, "bad_request"),
    ("mask_apply", {}, "bad_request"),
])
def test_bad_params_are_refused(runner, kind, params, code):
    _, r = runner
    job = _wait(r, kind, params)
    assert job["state"] == "failed" and job["error"]["code"] == code, job["error"]


def test_mask_train_and_apply_from_the_command_line(runner, capsys):
    ws, _ = runner
    for face in ws.facesets.faces("a"):
        ws.masks.set_label(face.id, LABEL)
    root = str(ws.root)
    assert cli.main(["mask", "train", "--workspace", root, "--facesets", "a", "b", "--resolution", "32",
                     "--iterations", "2", "--batch-size", "2", "--model", "m1"]) == 0
    assert '"labelled": 3' in capsys.readouterr().out
    assert cli.main(["mask", "apply", "--workspace", root, "--faceset", "b", "--model", "m1"]) == 0
    assert '"faces": 4' in capsys.readouterr().out
    assert cli.main(["mask", "apply", "--workspace", root, "--faceset", "b", "--model", "none"]) == 1


def test_a_bad_device_is_the_callers_mistake():
    from engine.errors import EngineError
    from engine.models import resolve_device

    with pytest.raises(EngineError) as exc:
        resolve_device("gpu")
    assert exc.value.code == "bad_request" and "'gpu'" in exc.value.message
    assert resolve_device("auto").type in ("cpu", "cuda")
