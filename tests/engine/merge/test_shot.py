"""The merge job on a tiny trained model: face layer, matte, merged frames and video; resume."""

import json
import os

import av
import cv2
import numpy as np
import pytest

from engine.errors import EngineError
from engine.jobs import JobRunner
from engine.media.decode import iter_frames
from engine.merge.frame import ShotMerger
from engine.recipes import STAGES


def _run(runner, kind, params):
    job = runner.wait(runner.submit(kind, params)["id"], timeout=300)
    if job["state"] != "done":
        raise EngineError(job["error"]["code"], job["error"]["message"])
    return job["result"]


@pytest.fixture(scope="module")
def trained(tiny_pair):
    runner = JobRunner(tiny_pair, STAGES)
    yield tiny_pair, runner
    runner.shutdown()


@pytest.fixture()
def model_faces(monkeypatch):
    """model_faces() -> how many faces the jobs since the last call ran the model on (padding not
    counted); the jobs run in-process, so the mergers they make can be watched."""
    made = []
    real = ShotMerger.__init__

    def init(self, *args, **kwargs):
        real(self, *args, **kwargs)
        made.append(self)
    monkeypatch.setattr(ShotMerger, "__init__", init)

    def count() -> int:
        total = sum(m.model_faces for m in made)
        made.clear()
        return total
    return count


def _read(path):
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert image is not None, f"{path} is missing"
    return image


def test_merge_writes_layer_matte_frames_and_video(trained, portrait_clips, tmp_path):
    ws, runner = trained
    out = tmp_path / "out"
    result = _run(runner, "merge", {"model": "m", "video": str(portrait_clips["astronaut"]), "faceset": "dst",
                                    "frame_start": 2, "frame_end": 8, "output": str(out),
                                    "outputs": ["layer", "matte", "frames", "video"],
                                    "settings": {"smooth_colour": 1.0, "blur": 0.08}})
    assert result["first_frame"] == 2 and result["count"] == 6 and result["swapped"] == 6
    assert result["layer"] == {"directory": str(out / "layer"), "pattern": "frame_%06d.png"}
    assert result["matte"]["directory"] == str(out / "matte") and result["frames"]["directory"] == str(out / "frames")
    assert result["video"] == str(out / "merged.mp4") and "pattern" not in result
    state = json.loads((out / "merge.json").read_text())
    assert state["settings"] == result["settings"] and state["done"] == list(range(2, 8)) and state["complete"]
    faces = {f.frame: f for f in ws.facesets.faces("dst")}
    for index, frame in iter_frames(portrait_clips["astronaut"], 2, 8):
        name = f"frame_{index:06d}.png"
        layer, matte, merged = _read(out / "layer" / name), _read(out / "matte" / name), _read(out / "frames" / name)
        assert layer.shape == (240, 320, 4) and matte.shape == (240, 320) and merged.shape == (240, 320, 3)
        assert np.array_equal(layer[..., 3], matte), "the matte is the layer's alpha"
        x0, y0, x1, y1 = (int(v) for v in faces[index].box)
        assert matte[(y0 + y1) // 2, (x0 + x1) // 2] == 255 and matte[0, 0] == 0
        assert 0 < (matte > 0).mean() < 0.5
        # the layer laid over the untouched original (straight alpha over) is the merged frame
        a = layer[..., 3:].astype(np.float32) / 255
        over = frame.astype(np.float32) * (1 - a) + layer[..., :3].astype(np.float32) * a
        assert np.abs(over - merged.astype(np.float32)).max() <= 1.01
        assert np.array_equal(merged[matte == 0], frame[matte == 0]), "pixels outside the face changed"
        diff = np.abs(merged.astype(int) - frame.astype(int)).sum(axis=2)
        assert diff[y0:y1, x0:x1].mean() > 5, "the face was not replaced"
    with av.open(str(out / "merged.mp4")) as container:
        assert container.streams.video[0].width == 320 and container.streams.audio, "the shot's audio came along"
        assert sum(1 for _ in container.decode(video=0)) == 6
    # the video is made in one go: a re-run with a frame missing merges them all again for it
    params = {"model": "m", "video": str(portrait_clips["astronaut"]), "faceset": "dst", "frame_start": 2,
              "frame_end": 8, "output": str(out), "outputs": ["layer", "matte", "frames", "video"],
              "settings": {"smooth_colour": 1.0, "blur": 0.08}}
    assert _run(runner, "merge", params)["merged"] == 0
    (out / "frames" / "frame_000005.png").unlink()
    assert _run(runner, "merge", params)["merged"] == 6 and (out / "merged.mp4").is_file()


def test_a_frame_without_a_face_gets_an_empty_layer_and_matte(trained, portrait_clips, tmp_path):
    ws, runner = trained
    _run(runner, "extract", {"video": str(portrait_clips["astronaut"]), "faceset": "part", "size": 128,
                             "frame_end": 4})
    out = tmp_path / "out"
    result = _run(runner, "merge", {"model": "m", "video": str(portrait_clips["astronaut"]), "faceset": "part",
                                    "frame_start": 2, "frame_end": 6, "output": str(out)})
    assert result["count"] == 4 and result["swapped"] == 2 and result["frames"] is None and result["video"] is None
    assert not (out / "frames").exists()
    for index in (4, 5):
        layer = _read(out / "layer" / f"frame_{index:06d}.png")
        assert layer.shape == (240, 320, 4) and not layer[..., 3].any()
        assert not _read(out / "matte" / f"frame_{index:06d}.png").any()
    assert _read(out / "matte" / "frame_000003.png").max() == 255


def test_resume_skips_the_frames_already_written(trained, portrait_clips, tmp_path, model_faces):
    ws, runner = trained
    out = tmp_path / "out"
    params = {"model": "m", "video": str(portrait_clips["astronaut"]), "faceset": "dst", "frame_start": 2,
              "frame_end": 8, "output": str(out), "settings": {"smooth_colour": 0.0}}
    _run(runner, "merge", params)
    assert model_faces() == 6
    kept = {i: (out / "layer" / f"frame_{i:06d}.png").stat().st_mtime_ns for i in range(2, 6)}
    for i in (6, 7):
        (out / "layer" / f"frame_{i:06d}.png").unlink()
    result = _run(runner, "merge", params)
    assert result["merged"] == 2 and model_faces() == 2, "only the missing frames were merged"
    assert {i: (out / "layer" / f"frame_{i:06d}.png").stat().st_mtime_ns for i in range(2, 6)} == kept
    assert (out / "layer" / "frame_000007.png").is_file()
    # other settings: nothing is reused
    params["settings"] = {"smooth_colour": 1.0}
    assert _run(runner, "merge", params)["merged"] == 6 and model_faces() == 6
    # smoothing over +-3 frames: the frames before the first missing one are merged again, not written
    (out / "matte" / "frame_000007.png").unlink()
    result = _run(runner, "merge", params)
    assert result["merged"] == 1 and model_faces() == 4, "frame 7 and its window 4..6 only"
    # nothing missing: nothing merged
    assert _run(runner, "merge", params)["merged"] == 0 and model_faces() == 0
    # the model trained on since: its faces differ, everything is merged again
    checkpoint = next((ws.model_dir("m")).glob("*.safetensors"))
    os.utime(checkpoint, ns=(checkpoint.stat().st_atime_ns, checkpoint.stat().st_mtime_ns + 10**9))
    assert _run(runner, "merge", params)["merged"] == 6


def test_merge_errors(trained, portrait_clips):
    ws, runner = trained
    video = str(portrait_clips["astronaut"])
    with pytest.raises(EngineError) as err:
        _run(runner, "merge", {"model": "nope", "video": video, "faceset": "dst"})
    assert err.value.code == "not_found"
    with pytest.raises(EngineError) as err:  # the source clip was never extracted into "dst"
        _run(runner, "merge", {"model": "m", "video": str(portrait_clips["hopper"]), "faceset": "dst"})
    assert err.value.code == "no_faces"
    for bad in ({"blend": 1}, {"outputs": ["layer", "mp4"]}, {"outputs": []}, {"settings": {"mode": "paint"}},
                {"settings": {"erosion": 0.1}}, {"settings": {"mask": "seg-dst"}}):
        with pytest.raises(EngineError) as err:
            _run(runner, "merge", {"model": "m", "video": video, "faceset": "dst", **bad})
        assert err.value.code == "bad_request", bad
    with pytest.raises(EngineError) as err:
        _run(runner, "merge", {"model": "m", "video": video, "faceset": "dst", "frame_end": 3,
                               "settings": {"mask": "seg-dst", "seg_model": "xseg"}})
    assert err.value.code == "not_found" and "'xseg'" in err.value.message


def test_a_drawn_mask_keeps_what_covers_the_face_in_front_of_the_swap(trained, portrait_clips, tmp_path):
    ws, runner = trained
    face = next(f for f in ws.facesets.faces("dst") if f.frame == 3)
    # the face is the crop's upper half only: a microphone covers everything below the nose
    ws.masks.set_label(face.id, [{"include": True, "points": [[0.1, 0.05], [0.9, 0.05], [0.9, 0.5], [0.1, 0.5]]}])
    try:
        _run(runner, "merge", {"model": "m", "video": str(portrait_clips["astronaut"]), "faceset": "dst",
                               "frame_start": 3, "frame_end": 4, "output": str(tmp_path / "out"),
                               "outputs": ["frames"]})
    finally:
        ws.masks.set_label(face.id, [])
    merged = cv2.imread(str(tmp_path / "out" / "frames" / "frame_000003.png"))
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


def test_a_cancelled_merge_keeps_what_it_wrote_and_resumes(trained, portrait_clips, tmp_path, model_faces):
    from engine.errors import Cancelled
    from engine.merge.shot import MergeParams, merge_shot

    ws, _ = trained
    out = tmp_path / "out"
    params = MergeParams.from_dict({"model": "m", "video": str(portrait_clips["astronaut"]), "faceset": "dst",
                                    "output": str(out), "batch_size": 2, "settings": {"smooth_colour": 0.0}})
    asked, reports = [], []

    def stop() -> bool:
        asked.append(1)
        return len(asked) > 6  # after six frames were decoded
    with pytest.raises(Cancelled):
        merge_shot(ws, params, out, lambda *a: reports.append(a), stop)
    state = json.loads((out / "merge.json").read_text())
    assert 0 < len(state["done"]) <= 6 and not state["complete"] and reports
    assert all((out / "layer" / f"frame_{i:06d}.png").is_file() for i in state["done"])
    model_faces()
    result = merge_shot(ws, params, out, lambda *a: None, lambda: False)
    assert result["merged"] == 12 - len(state["done"]) and model_faces() == result["merged"]
    assert json.loads((out / "merge.json").read_text())["complete"]


def test_resume_prepares_and_decodes_only_the_windows_of_the_missing_frames(trained, portrait_clips, tmp_path,
                                                                             model_faces, monkeypatch, about_equal):
    from engine.merge import shot

    ws, runner = trained
    out = tmp_path / "out"
    params = {"model": "m", "video": str(portrait_clips["astronaut"]), "faceset": "dst", "output": str(out),
              "settings": {"smooth_colour": 1.0}}  # +-3 frames of colour smoothing
    assert _run(runner, "merge", params)["merged"] == 12 and model_faces() == 12
    before = {i: _read(out / "layer" / f"frame_{i:06d}.png") for i in (0, 11)}
    decoded = []
    real = shot.iter_frames_at

    def watched(path, frames):
        decoded.append(list(frames))
        return real(path, frames)
    monkeypatch.setattr(shot, "iter_frames_at", watched)
    for i in (0, 11):
        (out / "layer" / f"frame_{i:06d}.png").unlink()
    result = _run(runner, "merge", params)
    # frames 4..7 are in neither window: not decoded to pixels, not put through the model
    assert result["merged"] == 2 and model_faces() == 8
    assert decoded == [[0, 1, 2, 3, 8, 9, 10, 11]]
    for i in (0, 11):  # the same smoothing window as in the full run: the same face
        again = _read(out / "layer" / f"frame_{i:06d}.png")
        assert about_equal(again, before[i])


def test_frames_the_preview_overwrote_or_merge_json_does_not_list_are_merged_again(trained, portrait_clips,
                                                                                    tmp_path, model_faces):
    ws, runner = trained
    out = tmp_path / "out"
    params = {"model": "m", "video": str(portrait_clips["astronaut"]), "faceset": "dst", "frame_start": 2,
              "frame_end": 8, "output": str(out), "settings": {"smooth_colour": 0.0}}
    _run(runner, "merge", params)
    model_faces()
    (out / "previewed.json").write_text(json.dumps({"frames": [3, 5, 40]}))
    result = _run(runner, "merge", params)
    assert result["merged"] == 2 and model_faces() == 2 and not (out / "previewed.json").exists()
    state = json.loads((out / "merge.json").read_text())
    assert state["done"] == list(range(2, 8)) and state["complete"]
    # a file merge.json does not list (the add-on's blank filler for a gap) is not trusted
    state["done"].remove(6)
    (out / "merge.json").write_text(json.dumps(state))
    assert _run(runner, "merge", params)["merged"] == 1 and model_faces() == 1
    # a previewed.json that cannot be read: which frames were overwritten is unknown, all are merged
    (out / "previewed.json").write_text("{broken")
    assert _run(runner, "merge", params)["merged"] == 6 and not (out / "previewed.json").exists()


def test_resume_checks_the_video_file_and_the_range(trained, portrait_clips, tmp_path, model_faces):
    ws, runner = trained
    clip = portrait_clips["astronaut"]
    out = tmp_path / "out"
    params = {"model": "m", "video": str(clip), "faceset": "dst", "frame_start": 2, "frame_end": 10,
              "output": str(out), "settings": {"smooth_colour": 1.0}}
    assert _run(runner, "merge", params)["merged"] == 8
    # a range ending earlier: frames 2..4 met the same range edges (+-3), 5..7 were smoothed with 8..9
    result = _run(runner, "merge", {**params, "frame_end": 8})
    assert result["merged"] == 3 and json.loads((out / "merge.json").read_text())["done"] == list(range(2, 8))
    st = clip.stat()
    os.utime(clip, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # the clip was replaced since
    try:
        assert _run(runner, "merge", {**params, "frame_end": 8})["merged"] == 6
    finally:
        os.utime(clip, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_a_video_output_whose_audio_cannot_be_read_leaves_no_file_behind(tmp_path):
    from engine.merge.shot import _VideoOut

    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video at all" * 100)

    class Info:
        path, fps, width, height = junk, 25.0, 64, 48
    with pytest.raises(Exception):
        _VideoOut(tmp_path / "merged.mp4", Info(), 0, 10)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["junk.mp4"]
