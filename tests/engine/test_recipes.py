"""Recipes as jobs: faceset import and export run through the job runner with strict params."""

import pytest

from engine.jobs import JobRunner
from engine.recipes import STAGES
from engine.workspace import Workspace


@pytest.fixture()
def runner(tmp_path):
    ws = Workspace(tmp_path / "ws")
    r = JobRunner(ws, STAGES)
    yield ws, r
    r.shutdown()


def _wait(r, kind, params):
    return r.wait(r.submit(kind, params)["id"])


def test_export_then_import_a_faceset_as_jobs(runner, portrait_clips, tmp_path):
    ws, r = runner
    job = _wait(r, "extract", {"video": str(portrait_clips["hopper"]), "faceset": "src", "size": 128, "frame_end": 5})
    assert job["state"] == "done", job["error"]
    job = _wait(r, "export_faceset", {"faceset": "src", "output": str(tmp_path / "out")})
    assert job["state"] == "done" and job["result"]["faces"] == 5
    assert (tmp_path / "out" / "faceset.json").is_file()
    job = _wait(r, "import_faceset", {"folder": str(tmp_path / "out"), "faceset": "copy"})
    assert job["state"] == "done" and job["result"]["faces"] == 5
    assert len(ws.facesets.faces("copy")) == 5
    dfl = _wait(r, "export_faceset", {"faceset": "src", "output": str(tmp_path / "dfl"), "dfl": True})
    assert dfl["state"] == "done"
    back = _wait(r, "import_faceset", {"folder": str(tmp_path / "dfl"), "faceset": "from_dfl", "dfl": True})
    assert back["state"] == "done" and back["result"]["faces"] == 5


@pytest.mark.parametrize("params, words", [
    ({"faceset": "x"}, "'folder'"),
    ({"folder": "f", "faceset": "x", "colour": 1}, "unknown option"),
    ({"folder": "f", "faceset": "x", "size": "big"}, "'size'"),
    ({"folder": "f", "faceset": "x", "dfl": "yes"}, "'dfl'"),
])
def test_import_params_are_strict(runner, params, words):
    _, r = runner
    job = _wait(r, "import_faceset", params)
    assert job["state"] == "failed" and job["error"]["code"] == "bad_request" and words in job["error"]["message"]


def test_importing_a_missing_folder_is_not_found(runner, tmp_path):
    _, r = runner
    job = _wait(r, "import_faceset", {"folder": str(tmp_path / "nope"), "faceset": "x"})
    assert job["error"]["code"] == "not_found"


def test_training_samples_bring_drawn_masks_and_the_hull_elsewhere(runner, portrait_clips):
    from engine.recipes_train import load_samples

    ws, r = runner
    job = _wait(r, "extract", {"video": str(portrait_clips["hopper"]), "faceset": "src", "size": 128, "frame_end": 3})
    assert job["state"] == "done", job["error"]
    assert load_samples(ws, "src").masks is None  # nothing drawn: training draws the hull itself
    faces = ws.facesets.faces("src")
    ws.masks.set_label(faces[0].id, [{"include": True, "points": [[0.2, 0.2], [0.5, 0.2], [0.5, 0.8], [0.2, 0.8]]}])
    samples = load_samples(ws, "src")
    assert samples.masks.shape == (3, 128, 128)
    drawn, hull = samples.masks[0] > 127, samples.masks[1] > 127
    assert drawn[64, 40] and not drawn[64, 90]  # the label's left box, not the face's right cheek
    assert hull[64, 40] and hull[64, 90]
    narrow = load_samples(ws, "src", "half", max_size=64)  # re-cut: the mask follows the crop
    assert narrow.masks.shape == (3, 64, 64) and narrow.masks[0].mean() > narrow.masks[0][:, 40:].mean()


def test_training_samples_carry_each_faces_yaw(tmp_path, fill_faceset):
    from engine.recipes_train import load_samples

    ws = Workspace(tmp_path / "ws")
    faces = fill_faceset(ws, "f", frames=3, people=1)
    with ws.transaction():
        for i, face in enumerate(faces):
            ws._x("UPDATE faces SET yaw=? WHERE id=?", (10.0 * i - 10.0, face.id))
    samples = load_samples(ws, "f")
    assert samples.yaws.tolist() == [-10.0, 0.0, 10.0]


@pytest.mark.parametrize("kind, params, words", [
    ("train", {"model": "m", "source": "f"}, "'destination'"),
    ("train", {"model": "../m", "source": "f", "destination": "f"}, "plain name"),
    ("train", {"model": "m", "source": "f", "destination": "f", "preset": "huge"}, "unknown training preset"),
    ("pretrain", {"model": "m", "source": "f", "pretrain": False}, "cannot set 'pretrain' to false"),
    ("export_dfm", {"model": "m"}, "'output'"),
    ("export_dfm", {"model": "m", "output": "x.dfm"}, "no checkpoint"),
])
def test_training_params_are_checked(runner, kind, params, words):
    _, r = runner
    job = _wait(r, kind, params)
    assert job["state"] == "failed" and job["error"]["code"] in ("bad_request", "not_found"), job["error"]
    assert words in job["error"]["message"]


@pytest.mark.parametrize("params, words", [
    ({"video": "v.mp4", "faceset": "f"}, "model"),
    ({"model": "m", "video": "v.mp4", "faceset": "f", "outputs": ["layer", "gif"]}, "'outputs'"),
    ({"model": "m", "video": "v.mp4", "faceset": "f", "outputs": "layer"}, "'outputs'"),
    ({"model": "m", "video": "v.mp4", "faceset": "f", "settings": {"colour": "sepia"}}, "colour must be one of"),
    ({"model": "m", "video": "v.mp4", "faceset": "f", "settings": {"keys": {"smooth_colour": [[0, 1]]}}},
     "cannot be animated"),
    ({"model": "m", "video": "v.mp4", "faceset": "f", "settings": []}, "'settings'"),
    ({"model": "m", "video": "v.mp4", "faceset": "f", "batch_size": 0}, "'batch_size'"),
    ({"model": "m", "video": "v.mp4", "faceset": "f", "erode": 0.1}, "unknown merge option"),
])
def test_merge_params_are_checked_before_anything_loads(runner, params, words):
    _, r = runner
    job = _wait(r, "merge", params)
    assert job["state"] == "failed" and job["error"]["code"] == "bad_request", job["error"]
    assert words in job["error"]["message"]
