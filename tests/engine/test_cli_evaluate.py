"""`python -m engine evaluate` and the "evaluate" job: plain files in-process, a workspace's faceset and
model through the job runner, strict job params, and the paths a remote engine keeps confined."""

import json
import shutil

import cv2
import pytest

from engine.cli import main
from engine.errors import EngineError
from engine.evaluate import report as report_module
from engine.evaluate.types import HEADLINE_KEYS
from engine.jobs import JobRunner
from engine.paths import JOB_PATHS, confine_paths
from engine.recipes import STAGES
from engine.workspace import Workspace

TINY = {"resolution": 32, "ae_dims": 32, "e_dims": 8, "d_dims": 8, "d_mask_dims": 4, "batch_size": 4, "workers": 0}


@pytest.fixture(scope="module")
def trained(tmp_path_factory, portrait_clips, wait_job):
    """A workspace with facesets "src" (hopper) and "dst" (astronaut) and a model "m" trained a few
    steps with a fifth of each faceset held back."""
    root = tmp_path_factory.mktemp("evaluate") / "ws"
    ws = Workspace(root)
    runner = JobRunner(ws, STAGES)
    try:
        wait_job(runner, "extract", {"video": str(portrait_clips["hopper"]), "faceset": "src", "size": 64})
        wait_job(runner, "extract", {"video": str(portrait_clips["astronaut"]), "faceset": "dst", "size": 64})
        wait_job(runner, "train", {"model": "m", "source": "src", "destination": "dst", "iterations": 4,
                                   "holdout": 0.2, **TINY})
    finally:
        runner.shutdown()
        ws.close()
    return root


@pytest.fixture
def fast(monkeypatch):
    monkeypatch.setattr(report_module, "IDENTITY_LIMIT", 4)


def _stdout_json(capsys) -> dict:
    out = capsys.readouterr().out.strip().splitlines()
    return json.loads(out[-1])


def test_plain_files_are_judged_in_process(portrait_clips, tmp_path, capsys, monkeypatch):
    from engine.evaluate import observe

    monkeypatch.setattr(observe, "identity_available", lambda: False)  # the job test below measures identity
    result = tmp_path / "swap.mp4"
    shutil.copy(portrait_clips["astronaut"], result)
    rc = main(["evaluate", "--source", str(portrait_clips["hopper"]), "--destination", str(portrait_clips["astronaut"]),
               "--result", str(result), "--frames", "3", "--samples", "2"])
    assert rc == 0
    out = _stdout_json(capsys)
    assert out["output"] == str(tmp_path / "swap_evaluation"), "beside the video by default"
    assert tuple(out["headline"]) == HEADLINE_KEYS and out["headline"]["landmark_distance"] == 0
    report = json.loads((tmp_path / "swap_evaluation" / "report.json").read_text())
    assert report["frames"]["count"] == 3 and report["inputs"]["source"]["kind"] == "video"
    assert cv2.imread(out["sheet"]) is not None


def test_the_progress_bar_goes_to_stderr_and_json_to_stdout(portrait_clips, tmp_path, capsys, monkeypatch):
    from engine.evaluate import observe

    monkeypatch.setattr(observe, "identity_available", lambda: False)
    rc = main(["evaluate", "--source", str(portrait_clips["hopper"]), "--destination", str(portrait_clips["astronaut"]),
               "--result", str(portrait_clips["astronaut"]), "--frames", "2", "--samples", "1",
               "--out", str(tmp_path / "out")])
    captured = capsys.readouterr()
    assert rc == 0 and json.loads(captured.out)["report"] == str(tmp_path / "out" / "report.json")
    assert "100.0%" in captured.err and "frame 2/2" in captured.err


@pytest.mark.parametrize("argv, words", [
    (["--source", "nobody"], "needs --workspace"),
    (["--source", "/no/such/source.mp4", "--workspace", "/no/ws"], "--source video not found: /no/such/source.mp4"),
    (["--model", "m"], "--model needs --workspace"),
    (["--destination", "/no/such/shot.mp4"], "video file not found"),
])
def test_command_line_mistakes_are_clear(portrait_clips, capsys, argv, words):
    args = {"--source": str(portrait_clips["hopper"]), "--destination": str(portrait_clips["astronaut"]),
            "--result": str(portrait_clips["astronaut"])}
    extra = []
    for key, value in zip(argv[::2], argv[1::2]):
        if key in args:
            args[key] = value
        else:
            extra += [key, value]
    assert main(["evaluate", *[x for kv in args.items() for x in kv], *extra]) == 2
    assert words in capsys.readouterr().err


def test_a_faceset_and_model_run_as_a_job(trained, portrait_clips, tmp_path, capsys, fast):
    from engine.evaluate.observe import identity_available

    rc = main(["evaluate", "--workspace", str(trained), "--source", "src", "--model", "m",
               "--destination", str(portrait_clips["astronaut"]), "--result", str(portrait_clips["astronaut"]),
               "--frames", "3", "--samples", "2", "--out", str(tmp_path / "out")])
    assert rc == 0
    out = _stdout_json(capsys)
    assert set(out) == {"report", "sheet", "output", "headline"}
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["inputs"]["source"] == {"kind": "faceset", "name": "src", "faces": 12}
    assert report["inputs"]["model"] == "m"
    recon = report["metrics"]["reconstruction"]
    assert recon["available"] and recon["source"]["held_back"]["faces"] >= 1
    h = out["headline"]
    assert 0 < h["ssim_source_held_back"] <= 1 and 0 < h["ssim_destination_held_back"] <= 1
    if identity_available():  # the untouched destination is nearer itself than hopper
        assert h["closer_to_source"] == 0.0 and h["identity_to_destination"] < h["identity_to_source"]


def test_the_job_writes_into_the_workspace_by_default(trained, portrait_clips, monkeypatch, wait_job):
    from engine.evaluate import observe

    monkeypatch.setattr(observe, "identity_available", lambda: False)
    ws = Workspace(trained)
    runner = JobRunner(ws, STAGES)
    try:
        job = wait_job(runner, "evaluate", {"source_faceset": "src", "destination": str(portrait_clips["astronaut"]),
                                            "result": str(portrait_clips["astronaut"]), "frames": 2, "samples": 1})
        assert job["result"]["output"] == str(ws.root / "reports" / job["id"])
        assert (ws.root / "reports" / job["id"] / "report.json").is_file()
        assert job["progress"] == 1.0
    finally:
        runner.shutdown()
        ws.close()


@pytest.mark.parametrize("change, code, words", [
    ({"colour": 1}, "bad_request", "unknown"),
    ({"frames": "all"}, "bad_request", "'frames'"),
    ({"source_video": "x.mp4"}, "bad_request", "one source"),
    ({"source_faceset": "nobody"}, "not_found", "no faceset named 'nobody'"),
    ({"source_faceset": "a/b"}, "bad_request", "plain name"),
    ({"model": "nomodel"}, "not_found", "no trained model named 'nomodel'"),
    ({"result": "missing.mp4"}, "not_found", "result not found"),
])
def test_job_params_are_strict(trained, portrait_clips, change, code, words, wait_job):
    ws = Workspace(trained)
    runner = JobRunner(ws, STAGES)
    try:
        params = {"source_faceset": "src", "destination": str(portrait_clips["astronaut"]),
                  "result": str(portrait_clips["astronaut"]), **change}
        job = wait_job(runner, "evaluate", params, state="failed")
        assert job["error"]["code"] == code and words in job["error"]["message"], job["error"]
    finally:
        runner.shutdown()
        ws.close()


def test_a_confined_engine_keeps_the_report_paths_in_its_workspace(tmp_path):
    root = tmp_path / "ws"
    root.mkdir()
    params = {"source_faceset": "src", "destination": "media/shot.mp4", "result": "renders/j1", "output": "reports/x",
              "model": "m"}
    inside = confine_paths(root, params, JOB_PATHS["evaluate"], confine=True)
    assert inside["destination"] == str(root / "media" / "shot.mp4") and inside["result"] == str(root / "renders/j1")
    for key in ("source_video", "destination", "result", "output"):
        with pytest.raises(EngineError) as err:
            confine_paths(root, {**params, key: "../outside.mp4"}, JOB_PATHS["evaluate"], confine=True)
        assert err.value.code == "forbidden_path"
    with pytest.raises(EngineError, match="plain name"):
        confine_paths(root, {**params, "model": "../m"}, JOB_PATHS["evaluate"], confine=False)
