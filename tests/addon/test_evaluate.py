"""Evaluate in the add-on: after a merge, the quality report runs as an engine job on the shot's merge,
never blocking Blender (a timer drain follows it); its sheet lands as an image and its headline
figures on the shot, drawn in the Quality panel. Against a recording link (every path of the drain),
then end to end against a real engine on a tiny trained model."""

import json
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]

HEADLINE = {"closer_to_source": 0.875, "identity_to_source": 0.512, "identity_to_destination": 0.734,
            "landmark_distance": 0.0412, "yaw_difference": 2.14, "pitch_difference": 1.3, "roll_difference": 0.81,
            "flicker_ratio": 1.12, "seam_colour": 3.21, "seam_colour_destination": 2.9, "seam_gradient_ratio": 1.05,
            "ssim_source_held_back": None, "ssim_destination_held_back": 0.6912, "faces_found": 1.0}


def _sheet(folder: Path, size=(320, 200)) -> None:
    image = np.zeros((size[1], size[0], 3), np.uint8)
    image[:, : size[0] // 2] = (40, 160, 220)
    cv2.imwrite(str(folder / "summary.png"), image)
    (folder / "report.json").write_text(json.dumps({"schema": 1, "headline": HEADLINE}))


def test_evaluate_with_a_recording_link(run_scenario, tiny_clips, tmp_path):
    from engine.evaluate.types import HEADLINE_KEYS

    _sheet(tmp_path)
    out = run_scenario("evaluate_addon", tiny_clips["a"], tmp_path, json.dumps(HEADLINE), timeout=300)
    assert out["problems"] == [], out["problems"]
    assert ["swapline.evaluate", {}] in out["first_draw"]
    result, error = out["no_merge_op"]
    assert result is None and "has no merge result: press Merge Shot first" in error

    # the face layer's merge job is unknown to the engine: nothing sent, failed with why
    assert out["unknown"] == [["FINISHED"], ["FAILED", "No merge m1 on this engine: press Merge Shot first", ""]]
    # a merge still running: Evaluate waits for it (one evaluation at a time), then sends
    assert out["waiting"] == [["FINISHED"], ["WAITING", "Waiting for the merge to finish…", ""], []]
    assert out["again_while_waiting"][0] is None and "being evaluated already" in out["again_while_waiting"][1]
    assert "Waiting for the merge to finish…" in out["waiting_draw"]["labels"]
    op, args, tag = out["sent"]
    params = args["params"]
    assert op == "job.start" and args["kind"] == "evaluate"
    # the merge's own paths (as the engine knows them), the model, the model's training source faceset
    assert params["destination"] == "/engine/side/shot.mp4" and params["result"] == str(tmp_path / "merge")
    assert params["model"] == "m" and params["source_faceset"] == "src"
    assert params["output"].startswith("reports/Scene_Shot_") and len(params["output"]) == len("reports/Scene_Shot_") + 8
    assert set(params) == {"destination", "result", "model", "source_faceset", "output"}
    assert tag["purpose"] == "evaluate" and tag["kind"] == "evaluate" and tag["label"] == "Evaluate Shot"
    assert out["after_send"] == ["RUNNING", "Sent to the engine", ""]

    # followed through the job list: queued, running (progress bar and cancel), done
    assert out["queued"] == ["RUNNING", "queued", "e1"] and out["running"] == ["RUNNING", "frame 4/10", "e1"]
    assert "progress" in out["running_draw"]["calls"] and "frame 4/10" in out["running_draw"]["labels"]
    assert out["running_draw"]["cancel"] == [{"job_id": "e1", "kind": "evaluate"}]
    done = out["done"]
    assert done["state"] == ["DONE", "", "e1"] and out["changed"] == 1
    assert done["sheet"] == str(tmp_path / "ws" / params["output"] / "summary.png")
    assert done["report"].endswith("report.json")
    assert done["image"] == "Swapline evaluation Shot" and done["size"] == [320, 200] and done["preview"]
    assert done["headline"] == HEADLINE and done["merge_job"] == "m1"
    assert "swapline.evaluate_open" in out["done_draw"]["operators"]
    assert out["open"] == ["FINISHED"] and out["open_shows"] == ["Swapline evaluation Shot"], "Open Sheet shows it"

    # the panel shows every headline figure of the report, each once; missing ones read n/a
    assert sorted(out["figure_keys"]) == sorted(HEADLINE_KEYS)
    lines = dict(map(tuple, out["figure_lines"]))
    assert lines["Closer to source"] == "88 % of frames"
    assert lines["Identity distance"] == "source 0.51 · destination 0.73 (same person < 0.6)"
    assert lines["Landmarks"] == "0.041 × eye distance"
    assert lines["Pose difference"] == "yaw 2.1° · pitch 1.3° · roll 0.8°"
    assert lines["Flicker"] == "1.12 × the shot's own" and lines["Seam colour"] == "ΔE 3.2 (shot 2.9)"
    assert lines["SSIM held back"] == "source n/a · destination 0.691" and lines["Faces found"] == "100 %"
    labels = out["done_draw"]["labels"]
    assert all(label in labels and text in labels for label, text in lines.items())
    assert all("n/a" in text for _, text in out["empty_lines"])
    assert dict(map(tuple, out["empty_lines"]))["SSIM held back"] == "n/a: train a new model with Hold Back above 0"
    assert out["timer_after_done"] and out["timer_tick"] is None, "the timer ends once nothing is under way"
    assert out["stale_draw"], "a newer merge on the shot is pointed out"

    # remote engine: its output folder comes down into <blend>_swapline/results/<job id> first, once
    state, download = out["fetching"]
    assert state == ["FETCHING", "Downloading the report…", "e2"]
    assert download[:3] == ["e2", "evaluate", "Evaluate Shot"] and download[3].startswith("/remote/ws/reports/")
    assert download[4] == out["remote_done"]["local"] and download[4].endswith("results/e2")
    assert out["one_download"] == 1
    remote = out["remote_done"]
    assert remote["state"] == ["DONE", "", "e2"] and remote["sheet"] == str(Path(remote["local"]) / "summary.png")
    assert remote["flicker"] == 2.5 and remote["image"] == "Swapline evaluation Shot"
    assert out["download_failed"] == ["FAILED", "Could not fetch the report: disk full", "e3"]

    # failures end the evaluation with why
    assert out["job_failed"] == ["FAILED", "The evaluation failed: no face in the shot", "e4"]
    assert out["refused"][0] == "FAILED" and "unknown param 'x'" in out["refused"][1]
    assert out["failed_draw"]
    assert out["merge_failed"] == ["FAILED", "The merge m9 failed: merge the shot again first", ""]

    # saved with the file; an evaluation under way is followed again after loading
    assert out["reloaded"] == {"state": "RUNNING", "headline": True, "image": True, "preview": True, "timer": True}
    assert out["disconnected"] == ["RUNNING", "Connect the engine to follow the evaluation", 1.0]


@pytest.mark.skipif(not (REPO / ".venv" / "bin" / "python").is_file(), reason="no .venv with the engine")
@pytest.mark.parametrize("mode", ["local", "remote"])
def test_evaluate_a_tiny_merge_against_the_engine(run_scenario, train_tiny_pair, tmp_path, mode):
    """Last: a real engine merges the shot with the tiny model and evaluates the merge; a remote one
    (loopback `engine serve`) gets the clip uploaded and sends the merge and the report back."""
    import hashlib

    from engine.evaluate.types import HEADLINE_KEYS, SCHEMA
    from engine.media.synthetic import make_clip

    clips, workspace, project = tmp_path / "clips", tmp_path / "workspace", tmp_path / "project"
    clips.mkdir()
    project.mkdir()
    source = make_clip("hopper", clips / "hopper.mp4", seconds=1.0, fps=12, size=(320, 240))
    shot = make_clip("astronaut", clips / "shot.mp4", seconds=1.0, fps=12, size=(320, 240), seed=1)
    t = time.monotonic()
    train_tiny_pair(workspace, source, shot)
    trained = time.monotonic() - t
    out = run_scenario("evaluate_engine", shot, workspace, mode, project, timeout=600)
    print(f"{mode}: tiny model {trained:.0f} s, the add-on's merge and evaluation {time.monotonic() - t - trained:.0f} s")
    assert out["merge"] == ["FINISHED"] and out["merged"]["state"] == "done", out["merged"]["error"]
    assert out["evaluate"] == ["FINISHED"]
    evaluation, job = out["evaluation"], out["job"]
    assert evaluation["state"] == "DONE", (evaluation["message"], out["last_error"], out["_output"][-3000:])
    assert out["states"] == (["RUNNING", "DONE"] if mode == "local" else ["RUNNING", "FETCHING", "DONE"])
    # the job judged the merge the add-on made (as the engine knows its files), with the model and the
    # faceset it was trained from
    params = job["params"]
    assert params["result"] == out["merged"]["result"]["directory"]
    if mode == "local":
        assert params["destination"] == str(shot)
    else:  # the clip went up by content hash
        digest = hashlib.sha256(shot.read_bytes()).hexdigest()
        assert params["destination"] == str(workspace / "media" / f"{digest}.mp4")
    assert params["model"] == "m" and params["source_faceset"] == "src"
    assert params["output"] == str(workspace / "reports" / Path(params["output"]).name)
    assert evaluation["merge_job"] == out["merge_id"]
    # Blender never waited on the engine: the press and each drain are short
    steps = out["steps"]
    print(f"evaluate through the add-on: {out['evaluate_s']:.1f} s, {steps['count']} main-thread steps, longest "
          f"{steps['max_s'] * 1000:.0f} ms (the press {steps['operator_s'] * 1000:.0f} ms)")
    assert steps["operator_s"] < 0.25 and steps["max_s"] < 0.5, steps
    # the sheet is the job's own (a remote engine's: downloaded next to the .blend), loaded as an image
    if mode == "local":
        assert evaluation["sheet"] == job["result"]["sheet"]
    else:
        assert out["results_folder"] == str(project / "edit_swapline" / "results" / evaluation["job_id"])
        assert evaluation["sheet"] == str(Path(out["results_folder"]) / "summary.png")
        assert Path(evaluation["sheet"]).read_bytes() == Path(job["result"]["sheet"]).read_bytes()
    sheet = cv2.imread(evaluation["sheet"])
    assert evaluation["image"] == "Swapline evaluation Shot" and evaluation["size"] == [sheet.shape[1], sheet.shape[0]]
    report = json.loads(Path(evaluation["report"]).read_text())
    assert report["schema"] == SCHEMA and report["inputs"]["model"] == "m"
    assert evaluation["headline"] == report["headline"] == job["result"]["headline"]
    assert set(evaluation["headline"]) == set(HEADLINE_KEYS)
    assert report["frames"]["count"] == 12
    # 12 iterations make no face a detector finds: the frame figures are there, the face ones n/a
    figures = evaluation["headline"]
    assert 0.0 <= figures["faces_found"] <= 1.0
    assert all(isinstance(figures[k], float) and figures[k] > 0 for k in ("flicker_ratio", "seam_colour",
                                                                          "seam_colour_destination"))
    # drawn in the Quality panel
    assert out["draw"]["problems"] == []
    assert "Closer to source" in out["draw"]["labels"] and "Flicker" in out["draw"]["labels"]
    assert out["last_error"] == ""
