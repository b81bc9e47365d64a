"""Mask recipes as jobs: mask_train refuses without labels, trains on every labelled face of the
facesets (labels rasterised from their polygons), mask_apply masks the faceset; and the CLI."""

import pytest

from engine import cli
from engine.jobs import JobRunner
from engine.recipes import STAGES
from engine.workspace import Workspace

LABEL = [{"include": True, "points": [[0.25, 0.17], [0.75, 0.17], [0.75, 0.83], [0.25, 0.83]]},
         {"include": False, "points": [[0.3, 0.6], [0.7, 0.6], [0.7, 0.7], [0.3, 0.7]]}]
SIZE = 64


TINY = {"resolution": 32, "width": 4, "iterations": 3, "batch_size": 2}


@pytest.fixture()
def runner(tmp_path, fill_faceset):
    ws = Workspace(tmp_path / "ws")
    fill_faceset(ws, "a", frames=3, people=1)
    fill_faceset(ws, "b", frames=2, people=2)
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
