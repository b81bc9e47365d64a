"""The quality report's inputs (a result video, a frames folder, a merge folder) and its one pass over
a shot with the real pieces: the untouched destination judged as its own swap is the sanity anchor,
a face changed on purpose moves the figures the way it should."""

import json

import cv2
import numpy as np
import pytest

from engine.errors import Cancelled, EngineError
from engine.evaluate import report as report_module
from engine.evaluate.inputs import open_shot
from engine.evaluate.report import EvaluateParams, default_output, evaluate
from engine.evaluate.types import HEADLINE_KEYS, SCHEMA
from engine.geometry.hull import hull_mask
from engine.media.decode import iter_frames
from engine.media.encode import write_video

TRAIN = "styletalk__samples_source_video_video_{}.mp4"


@pytest.fixture(scope="module")
def frames(portrait_clips):
    """The destination clip's frames (320x240, 12 frames)."""
    return dict(iter_frames(portrait_clips["astronaut"]))


def _write(folder, images: dict, pattern="frame_{:06d}.png"):
    folder.mkdir(parents=True, exist_ok=True)
    for i, image in images.items():
        cv2.imwrite(str(folder / pattern.format(i)), image)


def _merge_state(folder, first, done):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "merge.json").write_text(json.dumps({"first_frame": first, "end": first + len(done), "done": done}))


# --- inputs --------------------------------------------------------------------------------------

def test_a_result_video_pairs_with_the_destination_frame_by_frame(portrait_clips, frames):
    shot = open_shot(portrait_clips["astronaut"], portrait_clips["astronaut"])
    assert shot.result_kind == "video" and shot.frames == tuple(range(12)) and shot.first == 0
    pairs = list(shot.pairs())
    assert [p[0] for p in pairs] == list(range(12))
    for index, dst, res, matte in pairs:
        assert np.array_equal(dst, frames[index]) and np.array_equal(res, dst) and matte is None
    assert open_shot(portrait_clips["astronaut"], portrait_clips["astronaut"], frames=5).frames == tuple(range(5))


def test_numbered_frames_keep_the_destination_numbers_and_others_count_from_zero(portrait_clips, frames, tmp_path):
    _write(tmp_path / "numbered", {i: frames[i] for i in (3, 4, 5, 7)})
    shot = open_shot(portrait_clips["astronaut"], tmp_path / "numbered")
    assert shot.result_kind == "frames" and shot.frames == (3, 4, 5, 7)
    for index, dst, res, matte in shot.pairs():
        assert np.array_equal(dst, frames[index]) and np.array_equal(res, frames[index]) and matte is None
    assert open_shot(portrait_clips["astronaut"], tmp_path / "numbered", frames=2).frames == (3, 4)

    loose = tmp_path / "loose"
    _write(loose, {0: frames[0], 1: frames[1], 2: frames[2]}, pattern="shot_{}.png")
    (loose / "notes.txt").write_text("not a frame")
    shot = open_shot(portrait_clips["astronaut"], loose)
    assert shot.frames == (0, 1, 2)
    assert all(np.array_equal(res, frames[i]) for i, _, res, _ in shot.pairs())


def test_a_merge_folder_lays_its_layer_over_the_destination_with_its_matte(portrait_clips, frames, tmp_path):
    out = tmp_path / "merge"
    _merge_state(out, first=2, done=[2, 3, 4])
    layers, mattes = {}, {}
    for i in (2, 3, 4, 5):  # 5 is on disk but not done: a half run's frame is not the merge's
        layer = np.zeros((240, 320, 4), np.uint8)
        layer[60:180, 100:220] = (0, 0, 255, 255)  # an opaque red face
        layer[60:180, 90:100] = (255, 0, 0, 128)  # a half-covered blue edge
        layers[i], mattes[i] = layer, layer[..., 3]
    _write(out / "layer", layers)
    _write(out / "matte", mattes)
    shot = open_shot(portrait_clips["astronaut"], out)
    assert shot.result_kind == "merge" and shot.frames == (2, 3, 4)
    for index, dst, res, matte in shot.pairs():
        assert np.array_equal(dst, frames[index])
        assert (res[100, 150] == (0, 0, 255)).all(), "the layer covers the face"
        assert np.array_equal(res[10, 10], dst[10, 10]), "the destination shows where the layer is clear"
        half = (dst[100, 95].astype(np.float32) + (255, 0, 0)) / 2
        assert np.abs(res[100, 95] - half).max() <= 1, "straight alpha over"
        assert np.array_equal(matte, mattes[index])

    _write(out / "frames", {i: 255 - frames[i] for i in (2, 3, 4)})  # merged frames win over the layer
    shot = open_shot(portrait_clips["astronaut"], out)
    assert all(np.array_equal(res, 255 - frames[i]) and matte is not None for i, _, res, matte in shot.pairs())


def test_a_merge_folder_with_only_its_video_starts_at_its_first_frame(portrait_clips, frames, tmp_path):
    out = tmp_path / "merge"
    _merge_state(out, first=4, done=[4, 5, 6])
    write_video(out / "merged.mp4", [frames[i] for i in (4, 5, 6)], 12.0)
    shot = open_shot(portrait_clips["astronaut"], out)
    assert shot.result_kind == "merge" and shot.frames == (4, 5, 6)
    pairs = list(shot.pairs())
    assert [p[0] for p in pairs] == [4, 5, 6]
    assert all(np.abs(res.astype(int) - dst).mean() < 8 for _, dst, res, _ in pairs), "H.264 of the same frames"


@pytest.mark.parametrize("case, code, words", [
    ("missing_result", "not_found", "result not found"),
    ("missing_destination", "not_found", "video file not found"),
    ("unreadable", "bad_media", "cannot read"),
    ("smaller", "bad_media", "160x120 but the destination astronaut.mp4 is 320x240"),
    ("smaller_video", "bad_media", "160x120 but the destination"),
    ("empty", "bad_media", "no frame images"),
    ("longer", "bad_media", "past the end of the destination"),
    ("longer_video", "bad_media", "more than the destination"),
    ("empty_merge", "bad_media", "no merged frames, face layer or video"),
    ("broken_merge", "bad_media", "cannot be read"),
])
def test_inputs_that_cannot_be_judged_are_refused_clearly(portrait_clips, frames, tmp_path, case, code, words):
    destination, result = portrait_clips["astronaut"], tmp_path / "result"
    if case == "missing_destination":
        destination = tmp_path / "nope.mp4"
        _write(result, {0: frames[0]})
    elif case == "unreadable":
        result.mkdir()
        (result / "frame_000000.png").write_bytes(b"not a png")
    elif case == "smaller":
        _write(result, {0: cv2.resize(frames[0], (160, 120))})
    elif case == "smaller_video":
        result = write_video(tmp_path / "small.mp4", [cv2.resize(frames[i], (160, 120)) for i in range(3)], 12.0)
    elif case == "empty":
        result.mkdir()
    elif case == "longer":
        _write(result, {0: frames[0], 12: frames[11]})
    elif case == "longer_video":
        result = write_video(tmp_path / "long.mp4", [frames[i % 12] for i in range(20)], 12.0)
    elif case == "empty_merge":
        _merge_state(result, 0, [0])
    elif case == "broken_merge":
        result.mkdir()
        (result / "merge.json").write_text("{half")
    with pytest.raises(EngineError) as err:
        open_shot(destination, result)
    assert err.value.code == code and words in err.value.message, err.value.message


def test_params_are_strict_and_the_output_defaults_beside_the_result(tmp_path):
    ok = {"source_video": "s.mp4", "destination": "d.mp4", "result": "r.mp4"}
    assert EvaluateParams.from_dict(ok).samples == 4
    for bad, words in (({**ok, "colour": 1}, "unknown"), ({**ok, "source_faceset": "f"}, "one source"),
                       ({"destination": "d", "result": "r"}, "one source"), ({**ok, "frames": "all"}, "'frames'"),
                       ({**ok, "frames": 0}, "'frames'"), ({**ok, "samples": 99}, "'samples'"),
                       ({**ok, "result": ""}, "'result'"), ({**ok, "samples": True}, "'samples'")):
        with pytest.raises(ValueError, match=words):
            EvaluateParams.from_dict(bad)
    (tmp_path / "frames").mkdir()
    assert default_output(tmp_path / "frames") == tmp_path / "frames" / "evaluation"
    assert default_output(tmp_path / "swap.mp4") == tmp_path / "swap_evaluation"


# --- the report, with the real pieces ------------------------------------------------------------

@pytest.fixture
def fast_identity(monkeypatch):
    """The source identity from 4 faces instead of 64: the figures stay real, the test stays short."""
    monkeypatch.setattr(report_module, "IDENTITY_LIMIT", 4)


def test_the_untouched_destination_judged_as_its_own_swap(shared_clip, fast_identity, tmp_path):
    from engine.evaluate.observe import identity_available

    destination = shared_clip(TRAIN.format("KristiNoem"))
    seen = []
    out = evaluate(EvaluateParams(source_video=str(shared_clip(TRAIN.format("Obama_clip1"))),
                                  destination=str(destination), result=str(destination),
                                  output=str(tmp_path / "out"), frames=6, samples=2),
                   None, lambda p, m="": seen.append((p, m)))
    assert out["output"] == str(tmp_path / "out") and out["sheet"] == str(tmp_path / "out" / "summary.png")
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["schema"] == SCHEMA and report["sheet"] == "summary.png" and report["seconds"] > 0
    assert report["inputs"]["source"]["kind"] == "video" and report["inputs"]["result"]["kind"] == "video"
    assert report["frames"] == {"first": 0, "count": 6, "destination_faces": 6, "result_faces": 6}
    assert len(report["per_frame"]) == 6 and [r["frame"] for r in report["per_frame"]] == list(range(6))
    assert report["samples"] == [0, 5]
    h = report["headline"]
    assert tuple(h) == HEADLINE_KEYS and out["headline"] == h
    # nothing was swapped: the same landmarks, pose, flicker and border as the destination
    assert h["landmark_distance"] == 0 and h["yaw_difference"] == 0 and h["roll_difference"] == 0
    assert h["flicker_ratio"] == pytest.approx(1.0) and h["seam_gradient_ratio"] == pytest.approx(1.0)
    assert h["seam_colour"] == pytest.approx(h["seam_colour_destination"]) and h["seam_colour"] > 0
    assert h["faces_found"] == 1.0
    assert h["ssim_source_held_back"] is None and not report["metrics"]["reconstruction"]["available"]
    flicker_rows = [r["flicker"] for r in report["per_frame"]]
    assert flicker_rows[0] is None and all(r["result"] == r["destination"] for r in flicker_rows[1:])
    if identity_available():  # the identity is the destination's, far from the source's
        identity = report["metrics"]["identity"]
        assert identity["available"] and h["closer_to_source"] == 0.0
        assert h["identity_to_destination"] < 0.3 < 0.6 < h["identity_to_source"]
        assert identity["destination_to_source"]["median"] == pytest.approx(h["identity_to_source"])
        assert report["inputs"]["source"]["faces"] == 4
    else:
        assert h["closer_to_source"] is None and "identity extra" in report["metrics"]["identity"]["reason"]
    sheet = cv2.imread(out["sheet"])
    assert sheet is not None and sheet.shape[1] >= 1200
    assert [m for _, m in seen if m.startswith("frame")] == [f"frame {i}/6" for i in range(7)]
    assert [p for p, _ in seen] == sorted(p for p, _ in seen) and seen[-1][0] == 1.0


def test_a_changed_face_moves_the_figures(shared_clip, portrait_clips, monkeypatch, tmp_path):
    """A merge folder whose face is tinted (a seam at the matte's border), shifted (other landmarks)
    and pulses in brightness from frame to frame (flicker the destination does not have)."""
    from engine.evaluate import observe
    from engine.evaluate.observe import FaceObserver

    monkeypatch.setattr(observe, "identity_available", lambda: False)  # the identity part: the test above
    destination = shared_clip(TRAIN.format("KristiNoem"))
    out = tmp_path / "merge"
    _merge_state(out, first=0, done=list(range(6)))
    observer, layers = FaceObserver(identity=False), {}
    for i, frame in iter_frames(destination, 0, 6):
        face = observer.step(i, frame)
        alpha = (hull_mask(face.landmarks68, frame.shape[:2]) > 0.5).astype(np.uint8) * 255
        moved = cv2.warpAffine(frame, np.float32([[1, 0, 6], [0, 1, 4]]), frame.shape[1::-1],
                               borderMode=cv2.BORDER_REPLICATE)
        tinted = np.clip(moved.astype(np.int16) + (30, -20, 40) + (25 if i % 2 else -25), 0, 255).astype(np.uint8)
        layers[i] = np.dstack([tinted, alpha])
    _write(out / "layer", layers)
    _write(out / "matte", {i: layer[..., 3] for i, layer in layers.items()})
    result = evaluate(EvaluateParams(source_video=str(portrait_clips["hopper"]), destination=str(destination),
                                     result=str(out), samples=3), None)
    assert result["output"] == str(out / "evaluation"), "a folder's report lands inside it"
    report = json.loads((out / "evaluation" / "report.json").read_text())
    h = report["headline"]
    assert report["inputs"]["result"]["kind"] == "merge" and report["frames"]["count"] == 6
    assert h["landmark_distance"] > 0.02, "the face moved by 6 px"
    assert h["seam_colour"] > h["seam_colour_destination"] + 5, "a tinted face steps at the border"
    assert h["flicker_ratio"] > 2, "it pulses from frame to frame"
    assert h["closer_to_source"] is None and report["metrics"]["identity"]["available"] is False
    assert report["inputs"]["source"] == {"kind": "video", "path": str(portrait_clips["hopper"].resolve()),
                                          "faces": None}
    assert len(report["samples"]) == 3 and cv2.imread(result["sheet"]) is not None


def test_a_report_stops_when_asked(portrait_clips, monkeypatch, tmp_path):
    from engine.evaluate import observe

    monkeypatch.setattr(observe, "identity_available", lambda: False)
    calls = []

    def stop():
        calls.append(1)
        return len(calls) > 3

    with pytest.raises(Cancelled):
        evaluate(EvaluateParams(source_video=str(portrait_clips["hopper"]), destination=str(portrait_clips["astronaut"]),
                                result=str(portrait_clips["astronaut"]), output=str(tmp_path / "out")), None,
                 should_stop=stop)
    assert not (tmp_path / "out" / "report.json").exists() and len(calls) == 4


def test_a_source_faceset_or_model_needs_a_workspace(portrait_clips):
    for extra in ({"source_faceset": "src"}, {"source_video": "s.mp4", "model": "m"}):
        with pytest.raises(EngineError, match="needs a workspace"):
            evaluate(EvaluateParams(destination=str(portrait_clips["astronaut"]),
                                    result=str(portrait_clips["astronaut"]), **extra), None)


def test_a_shorter_result_that_loses_the_face_in_some_frames(shared_clip, monkeypatch, tmp_path):
    """Frames 2..7 of the destination only, the face painted over in 4 and 5 (a swap that lost it):
    those frames count as found in the destination only, have no expression row, and the rest of
    the report stands on the frames that have both."""
    from engine.evaluate import observe

    monkeypatch.setattr(observe, "identity_available", lambda: False)
    destination = shared_clip(TRAIN.format("KristiNoem"))
    frames = dict(iter_frames(destination, 2, 8))
    for i in (4, 5):
        frames[i] = np.full_like(frames[i], 128)
    _write(tmp_path / "result", frames)
    evaluate(EvaluateParams(source_video=str(destination), destination=str(destination),
                            result=str(tmp_path / "result"), samples=2), None)
    report = json.loads((tmp_path / "result" / "evaluation" / "report.json").read_text())
    assert report["frames"] == {"first": 2, "count": 6, "destination_faces": 6, "result_faces": 4}
    rows = {r["frame"]: r for r in report["per_frame"]}
    assert sorted(rows) == list(range(2, 8)) and report["samples"] == [2, 7]
    assert [f for f, r in rows.items() if r["expression"] is None] == [4, 5]
    assert rows[2]["flicker"] is None and rows[4]["flicker"]["result"] > 10 * rows[4]["flicker"]["destination"]
    h = report["headline"]
    assert h["faces_found"] == pytest.approx(4 / 6) and h["landmark_distance"] == 0
    assert report["metrics"]["expression"]["landmarks"]["count"] == 4
    assert report["metrics"]["expression"]["offset"] == {"yaw": 0.0, "pitch": 0.0, "roll": 0.0}
