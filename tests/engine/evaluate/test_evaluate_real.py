"""The quality report end to end, on two real people at tiny settings.

Obama is the source, Kristi Noem the shot: 40 frames of each extracted, a tiny model trained with
10 % of each faceset held back, the shot merged with the default settings. Then two reports:

- the swap, as the add-on asks for it: the "evaluate" job through a JobRunner, with the source's
  faceset, the merge folder and the model (for the reconstruction SSIM of the held-back faces);
- the anchor: `python -m engine evaluate` with the untouched destination video as the "result" and
  the source's video. Every figure has a known answer there (nearer the destination than the source,
  no landmark or pose change, flicker and seam gradient ratio 1), so a sign or scale error in any
  measure shows up as a wrong number rather than as a plausible one.

A tiny model's swap is a blur, so its figures are only checked to be measured and to differ from
the anchor's in the direction a changed face must move them. The source video of the anchor is the
source clip's first FRAMES frames (the faces the source faceset holds): the identity embedding is
the report's main cost (~0.2 s a face), and 64 frames of the whole clip would add a third to it.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import cv2
import pytest

from engine.evaluate.observe import identity_available
from engine.evaluate.types import HEADLINE_KEYS, SCHEMA
from engine.holdout import read_holdout
from engine.jobs import JobRunner
from engine.media.decode import iter_frames, probe
from engine.media.encode import write_video
from engine.recipes import STAGES
from engine.workspace import Workspace

ROOT = Path(__file__).resolve().parents[3]
CLIPS = ROOT.parent / "shared" / "data" / "faces" / "train"
SOURCE = CLIPS / "styletalk__samples_source_video_video_Obama_clip1.mp4"
DESTINATION = CLIPS / "styletalk__samples_source_video_video_KristiNoem.mp4"
FRAMES = 40
HOLDOUT = 0.1  # 4 of 40 faces per side
HELD_BACK = math.ceil(HOLDOUT * FRAMES)
# A tiny model pushed to a face-like blur fast (no random warp, a high learning rate): with the
# defaults, 20 iterations leave a pattern no detector calls a face, and the swap's identity and
# expression figures would all be null; 60 of these give a face in every frame in ~10 s. One torch
# thread: a model this small gains nothing from two, and on a busy 2-core machine two took 3x longer.
TINY = {"resolution": 32, "ae_dims": 32, "e_dims": 8, "d_dims": 8, "d_mask_dims": 4, "batch_size": 4,
        "workers": 0, "random_warp": False, "learning_rate": 2e-3, "seed": 0, "threads": 1}
ITERATIONS = 60
SAME_PERSON = 0.6  # dlib's descriptors: below this, one person
needs_identity = pytest.mark.skipif(not identity_available(), reason="the identity extra (dlib) is not installed")


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory, wait_job):
    """A workspace with facesets "src" (Obama) and "dst" (Noem, the shot), model "m" trained with a
    holdout, and the shot's first FRAMES frames merged into merged/ (layer, matte and frames)."""
    if not (SOURCE.is_file() and DESTINATION.is_file()):
        pytest.skip(f"real test clips are not here ({CLIPS}); they live in ../shared/data/faces")
    root = tmp_path_factory.mktemp("evaluate_real")
    ws = Workspace(root / "ws")
    runner = JobRunner(ws, STAGES, recover=False)
    try:
        for video, name in ((SOURCE, "src"), (DESTINATION, "dst")):
            wait_job(runner, "extract", {"video": str(video), "faceset": name, "frame_end": FRAMES, "size": 128})
        wait_job(runner, "train", {"model": "m", "source": "src", "destination": "dst", "iterations": ITERATIONS,
                                   "holdout": HOLDOUT, **TINY})
        wait_job(runner, "merge", {"model": "m", "video": str(DESTINATION), "faceset": "dst", "frame_end": FRAMES,
                                   "output": str(root / "merged"), "outputs": ["layer", "matte", "frames"]})
    finally:
        runner.shutdown()
        ws.close()
    return SimpleNamespace(root=root, workspace=root / "ws", merged=root / "merged")


@pytest.fixture(scope="module")
def swap(pipeline, wait_job):
    """The swap's report as the add-on asks for it: the "evaluate" job, source faceset, merge folder, model."""
    ws = Workspace(pipeline.workspace)
    runner = JobRunner(ws, STAGES, recover=False)
    try:
        job = wait_job(runner, "evaluate", {"source_faceset": "src", "destination": str(DESTINATION),
                                            "result": str(pipeline.merged), "model": "m"})
    finally:
        runner.shutdown()
        ws.close()
    return SimpleNamespace(job=job, report=json.loads(Path(job["result"]["report"]).read_text()))


@pytest.fixture(scope="module")
def anchor(pipeline):
    """The untouched destination judged as if it were the swap, from the command line (no workspace:
    the source is its video)."""
    out = pipeline.root / "anchor"
    source = write_video(pipeline.root / "source.mp4", (frame for _, frame in iter_frames(SOURCE, 0, FRAMES)),
                         probe(SOURCE).fps)
    run = subprocess.run([sys.executable, "-m", "engine", "evaluate", "--source", str(source),
                          "--destination", str(DESTINATION), "--result", str(DESTINATION),
                          "--frames", str(FRAMES), "--out", str(out)],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    return SimpleNamespace(run=run, out=out, source=source, report=json.loads((out / "report.json").read_text()))


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_layout(report: dict, frames: int) -> None:
    """What every report.json holds, whatever it measured."""
    assert report["schema"] == SCHEMA
    assert report["created"].endswith(("Z", "+00:00"))
    assert _finite(report["seconds"]) and report["seconds"] > 0
    assert set(report["headline"]) == set(HEADLINE_KEYS)
    assert set(report["metrics"]) == {"identity", "expression", "flicker", "seams", "reconstruction"}
    assert report["frames"]["first"] == 0 and report["frames"]["count"] == frames
    assert report["frames"]["destination_faces"] == frames  # Noem is in every frame
    assert [row["frame"] for row in report["per_frame"]] == list(range(frames))
    for row in report["per_frame"]:
        assert set(row) >= {"frame", "identity", "expression", "flicker", "seams"}
    assert report["sheet"] == "summary.png"
    samples = report["samples"]  # the default 4, spread over the shot, first and last frame included
    assert len(samples) == 4 and samples == sorted(samples) and samples[0] == 0 and samples[-1] == frames - 1


def _check_sheet(path: Path) -> None:
    sheet = cv2.imread(str(path))
    assert sheet is not None, f"{path} does not decode"
    assert sheet.shape[1] >= 1200 and sheet.shape[0] >= 600, sheet.shape
    assert sheet.std() > 10  # drawn on, not a blank page


def test_the_pipeline_holds_back_faces_and_merges_every_frame(pipeline):
    held = read_holdout(Path(pipeline.workspace) / "models" / "m")
    assert held["source"]["faceset"] == "src" and len(held["source"]["faces"]) == HELD_BACK
    assert held["destination"]["faceset"] == "dst" and len(held["destination"]["faces"]) == HELD_BACK
    state = json.loads((pipeline.merged / "merge.json").read_text())
    assert state["complete"] and state["first_frame"] == 0 and state["end"] == FRAMES
    for name in ("layer", "matte", "frames"):
        assert len(list((pipeline.merged / name).glob("frame_*.png"))) == FRAMES


def test_the_untouched_destination_reads_as_itself(anchor):
    report, h = anchor.report, anchor.report["headline"]
    _check_layout(report, FRAMES)
    assert report["inputs"]["source"]["kind"] == "video" and report["inputs"]["source"]["path"] == str(anchor.source)
    assert report["inputs"]["destination"] == str(DESTINATION)
    assert report["inputs"]["result"]["kind"] == "video" and report["inputs"]["model"] is None
    assert report["frames"]["result_faces"] == FRAMES and h["faces_found"] == 1.0
    # expression and pose: the same pixels give the same landmarks
    assert h["landmark_distance"] == pytest.approx(0, abs=1e-6)
    for key in ("yaw_difference", "pitch_difference", "roll_difference"):
        assert h[key] == pytest.approx(0, abs=1e-4), key
    # flicker and seams: the destination against itself
    assert h["flicker_ratio"] == pytest.approx(1.0)
    assert report["metrics"]["flicker"]["result"]["count"] == FRAMES - 1
    assert h["seam_gradient_ratio"] == pytest.approx(1.0)
    assert h["seam_colour"] == pytest.approx(h["seam_colour_destination"]) and h["seam_colour"] > 0
    # no model: no reconstruction
    assert report["metrics"]["reconstruction"]["available"] is False
    assert h["ssim_source_held_back"] is None and h["ssim_destination_held_back"] is None
    printed = json.loads(anchor.run.stdout.strip().splitlines()[-1])
    assert printed.get("headline", printed) == h
    _check_sheet(anchor.out / "summary.png")


@needs_identity
def test_the_untouched_destination_is_nearer_itself_than_the_source(anchor):
    """The "swap" is Noem: nearer her than Obama in every frame, on either side of dlib's threshold."""
    report, h = anchor.report, anchor.report["headline"]
    identity = report["metrics"]["identity"]
    assert report["inputs"]["source"]["faces"] == FRAMES  # a face in every frame of the source clip
    assert identity["available"] and identity["threshold"] == SAME_PERSON
    assert h["closer_to_source"] == 0
    assert h["identity_to_destination"] < SAME_PERSON < h["identity_to_source"]
    assert identity["to_source"]["count"] == FRAMES
    assert identity["destination_to_source"]["median"] > SAME_PERSON  # two people: the context figure
    assert identity["to_source"] == identity["destination_to_source"]  # the "swap" is that untouched face


def test_the_swap_job_measures_everything(pipeline, swap, anchor):
    result, report, h = swap.job["result"], swap.report, swap.report["headline"]
    output = pipeline.workspace / "reports" / swap.job["id"]
    assert Path(result["output"]) == output
    assert Path(result["report"]) == output / "report.json" and Path(result["sheet"]) == output / "summary.png"
    assert result["headline"] == h
    _check_layout(report, FRAMES)
    inputs = report["inputs"]
    assert inputs["source"]["kind"] == "faceset" and inputs["source"]["name"] == "src"
    assert inputs["source"]["faces"] > 0
    assert inputs["result"]["kind"] == "merge" and Path(inputs["result"]["path"]) == pipeline.merged
    assert inputs["model"] == "m"
    # the figures that need no face found in the swapped frame: measured on every frame
    for key in ("flicker_ratio", "seam_colour", "seam_colour_destination", "seam_gradient_ratio"):
        assert _finite(h[key]), (key, h[key])
    assert report["metrics"]["seams"]["colour"]["count"] == FRAMES  # every frame was swapped: a matte each
    # a changed face: in every frame the border and the frame-to-frame change are no longer the destination's own
    seams = [row["seams"] for row in report["per_frame"]]
    assert all(s["colour"] != s["colour_destination"] and s["gradient"] != s["gradient_destination"] for s in seams)
    steps = [row["flicker"] for row in report["per_frame"] if row["flicker"] is not None]
    assert len(steps) == FRAMES - 1 and all(step["result"] != step["destination"] for step in steps)
    # the blurred face is still found where the destination's is, so identity and landmarks are measured...
    assert report["frames"]["result_faces"] >= FRAMES // 2
    assert h["faces_found"] == pytest.approx(report["frames"]["result_faces"] / FRAMES)
    for key in ("landmark_distance", "yaw_difference", "pitch_difference", "roll_difference"):
        assert _finite(h[key]), (key, h[key])
    # ...and are farther from the destination's face than the untouched shot's own
    assert h["landmark_distance"] > anchor.report["headline"]["landmark_distance"]
    _check_sheet(Path(result["sheet"]))


@needs_identity
def test_the_swap_job_identifies_the_swapped_face(swap, anchor):
    report, h = swap.report, swap.report["headline"]
    assert report["metrics"]["identity"]["available"]
    for key in ("closer_to_source", "identity_to_source", "identity_to_destination"):
        assert _finite(h[key]), (key, h[key])
    assert report["metrics"]["identity"]["to_source"]["count"] == report["frames"]["result_faces"]
    rows = [row["identity"] for row in report["per_frame"] if row["identity"] is not None]
    assert h["closer_to_source"] == pytest.approx(sum(r["closer_to_source"] for r in rows) / len(rows))
    # the swapped face is no longer the untouched destination's
    assert h["identity_to_destination"] > anchor.report["headline"]["identity_to_destination"]


def test_the_swap_job_reconstructs_the_held_back_faces(swap):
    rec, h = swap.report["metrics"]["reconstruction"], swap.report["headline"]
    assert rec["available"] is True and rec["resolution"] == TINY["resolution"]
    for side in ("source", "destination"):
        held, seen = rec[side]["held_back"], rec[side]["seen"]
        assert held["faces"] == HELD_BACK and seen["faces"] == HELD_BACK
        assert held["ssim"]["count"] == HELD_BACK and seen["ssim"]["count"] == HELD_BACK
        for figures in (held["ssim"], seen["ssim"]):
            assert -1 <= figures["min"] <= figures["max"] <= 1
        assert h[f"ssim_{side}_held_back"] == pytest.approx(held["ssim"]["median"])
