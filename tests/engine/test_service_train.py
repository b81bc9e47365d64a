"""Training operations of the service: commands to a live training job, its pictures, the presets."""

import time

import cv2
import numpy as np
import pytest

from engine.errors import Cancelled, EngineError
from engine.jobs import JobRunner
from engine.service_train import TRAIN_OPS
from engine.train.preview import write_png
from engine.workspace import Workspace


@pytest.fixture
def service(tmp_path, obedient_stage):
    ws = Workspace(tmp_path / "ws")
    runner = JobRunner(ws, {"train": obedient_stage, "pretrain": obedient_stage, "extract": obedient_stage})
    yield ws, runner, lambda op, **args: TRAIN_OPS[op](ws, args, runner)
    runner.shutdown()


def _running(runner, job):
    deadline = time.monotonic() + 10
    while runner.get(job["id"])["state"] != "running":
        assert time.monotonic() < deadline
        time.sleep(0.01)


@pytest.mark.parametrize("command, words", [
    ({"command": "dance"}, "unknown training command"),
    ({"command": "phase", "phase": "sleep"}, "'phase' must be one of"),
    ({"command": "set"}, "needs 'options'"),
    ({"command": "set", "options": {"resolution": 128}}, "cannot change resolution"),
    ({"command": "set", "options": {"learning_rate": -1.0}}, "learning_rate"),
    ({"command": "set", "options": {"random_warp": "yes"}}, "random_warp"),
    ({"command": "save", "now": True}, "takes no 'now'"),
])
def test_bad_training_commands_are_refused_at_once(service, command, words):
    ws, runner, call = service
    job = runner.submit("train", {"model": "m", "source": "a", "destination": "b", "preset": "quick",
                                  "resolution": 32})
    with pytest.raises(EngineError) as err:
        call("job.control", job=job["id"], **command)
    assert err.value.code == "bad_request" and words in err.value.message
    runner.cancel(job["id"])


def test_commands_steer_a_training_job(service):
    ws, runner, call = service
    job = runner.submit("train", {"model": "m", "source": "a", "destination": "b"})
    _running(runner, job)
    assert call("job.control", job=job["id"], command="pause")["id"] == job["id"]
    deadline = time.monotonic() + 10
    while runner.get(job["id"])["state"] != "paused":
        assert time.monotonic() < deadline
        time.sleep(0.01)
    call("job.control", job=job["id"], command="resume")
    call("job.control", job=job["id"], command="set", options={"learning_rate": 1e-4, "random_warp": False})
    call("job.control", job=job["id"], command="phase", phase="refine")
    call("job.control", job=job["id"], command="backup")
    done = runner.wait(job["id"], 10)
    assert [c["command"] for c in done["result"]["seen"]] == ["pause", "resume", "set", "phase", "backup"]
    assert done["result"]["seen"][2]["options"] == {"learning_rate": 1e-4, "random_warp": False}
    with pytest.raises(EngineError) as err:
        call("job.control", job=job["id"], command="save")
    assert err.value.code == "bad_request"  # finished: nothing to steer
    with pytest.raises(EngineError) as err:
        call("job.control", job="nope", command="save")
    assert err.value.code == "not_found"


def test_other_jobs_take_any_named_command(service):
    ws, runner, call = service
    job = runner.submit("extract", {})
    call("job.control", job=job["id"], command="whatever")
    assert runner.wait(job["id"], 10)["result"]["seen"] == [{"command": "whatever"}]


def test_images_are_png_bytes_or_none(service):
    ws, runner, call = service
    empty = call("train.images", model="m")
    assert empty == {"model": "m", "iteration": None, "preview_version": None, "preview": None, "graph": None}
    grid = np.full((40, 50, 3), 90, np.uint8)
    write_png(ws.model_dir("m") / "preview.png", grid)
    job = runner.submit("train", {"model": "m", "source": "a", "destination": "b"})
    _running(runner, job)
    time.sleep(0.3)
    images = call("train.images", model="m")
    assert images["graph"] is None and images["iteration"] == 7 and images["preview_version"] == 2
    decoded = cv2.imdecode(np.frombuffer(images["preview"], np.uint8), cv2.IMREAD_COLOR)
    assert np.array_equal(decoded, grid)
    runner.cancel(job["id"])
    for bad in ("../x", "", "a/b"):
        with pytest.raises(EngineError) as err:
            call("train.images", model=bad)
        assert err.value.code == "bad_request"


def test_presets_and_defaults(service):
    ws, runner, call = service
    out = call("train.presets")
    assert set(out["presets"]) >= {"quick", "128", "192", "256_wf"}
    assert out["defaults"]["iterations"] > 0 and "learning_rate" in out["soft"] and "resolution" not in out["soft"]
    assert out["phases"] == ["warp", "refine", "gan"] and "set" in out["commands"]


TINY = {"resolution": 32, "arch": "df", "ae_dims": 32, "e_dims": 8, "d_dims": 8, "d_mask_dims": 4,
        "batch_size": 2, "workers": 0, "seed": 0, "device": "cpu", "report_every_s": 0.05,
        "preview_every_s": 0.2, "save_every_s": 600.0}


def test_a_real_training_job_pauses_takes_options_and_leaves_pictures(tmp_path, fill_faceset):
    from engine.recipes import STAGES

    ws = Workspace(tmp_path / "ws")
    fill_faceset(ws, "src", frames=4, people=1)
    runner = JobRunner(ws, STAGES)
    call = lambda op, **args: TRAIN_OPS[op](ws, args, runner)  # noqa: E731
    try:
        job = runner.submit("pretrain", {"model": "m", "source": "src", "iterations": 100_000, **TINY})
        deadline = time.monotonic() + 60
        while (runner.get(job["id"])["stats"].get("preview_version") or 0) < 1:
            assert runner.get(job["id"])["state"] in ("queued", "running"), runner.get(job["id"])
            assert time.monotonic() < deadline, "no preview in 60 s"
            time.sleep(0.05)
        call("job.control", job=job["id"], command="pause")
        while runner.get(job["id"])["state"] != "paused":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        call("job.control", job=job["id"], command="set", options={"learning_rate": 1e-4, "phase": "refine"})
        call("job.control", job=job["id"], command="resume")
        call("job.control", job=job["id"], command="backup")
        while runner.get(job["id"])["stats"].get("phase") != "refine":
            assert time.monotonic() < deadline, runner.get(job["id"])
            time.sleep(0.05)
        images = call("train.images", model="m")
        assert images["iteration"] >= 1 and images["preview_version"] >= 1
        for key in ("preview", "graph"):
            assert cv2.imdecode(np.frombuffer(images[key], np.uint8), cv2.IMREAD_COLOR).shape[2] == 3
        runner.cancel(job["id"])
        assert runner.wait(job["id"], 30)["state"] == "cancelled"
        assert list((ws.model_dir("m") / "backups").iterdir())
    finally:
        runner.shutdown()


def test_options_can_be_changed_on_a_job_that_holds_faces_back():
    from engine.service_train import _check_train_command

    job = {"kind": "train", "params": {"model": "m", "source": "a", "destination": "b", "holdout": 0.1,
                                       "preset": "quick"}}
    _check_train_command(job, {"command": "set", "options": {"learning_rate": 1e-4}})  # no "unknown setting holdout"
    with pytest.raises(EngineError, match="cannot change resolution"):  # and the real checks still run
        _check_train_command(job, {"command": "set", "options": {"resolution": 128}})
