"""Media to a remote engine and results back: a real engine on loopback with its own workspace."""

import hashlib
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]


def _clips(clips: Path) -> tuple[Path, Path]:
    """A source clip and a shot, which stay on "this machine" (the engine gets them by upload)."""
    from engine.media.synthetic import make_clip

    source = make_clip("hopper", clips / "hopper.mp4", seconds=1.0, fps=12, size=(320, 240))
    shot = make_clip("astronaut", clips / "shot.mp4", seconds=1.0, fps=12, size=(320, 240), seed=1)
    return source, shot


@pytest.mark.skipif(not (REPO / ".venv" / "bin" / "python").is_file(), reason="no .venv with the engine")
def test_clips_go_up_once_and_the_merge_comes_back_next_to_the_blend(run_scenario, train_tiny_pair, tmp_path):
    clips, engine_ws, project = tmp_path / "clips", tmp_path / "engine_ws", tmp_path / "project"
    clips.mkdir()
    project.mkdir()
    source, shot = _clips(clips)
    train_tiny_pair(engine_ws, source, shot)
    out = run_scenario("remote_transfers", source, shot, engine_ws, project, timeout=900)
    digests = {hashlib.sha256(p.read_bytes()).hexdigest(): p.name for p in (source, shot)}

    # first extract: both clips uploaded, the jobs name them by their place in the engine's workspace
    assert out["extract_ops"][0] == ["FINISHED"]
    assert sorted(t["state"] for t in out["first_transfers"]) == ["done", "done"], out["first_transfers"]
    assert all(t["sent"] > 0 for t in out["first_transfers"]), out["first_transfers"]
    # (the add-on sends "media/<sha256>.mp4"; the engine resolves it in its workspace)
    videos = [Path(v) for _, v, _ in out["first"]]
    assert all(v.parent == engine_ws / "media" and v.suffix == ".mp4" for v in videos), videos
    assert {v.stem for v in videos} == set(digests)
    assert all(state == "done" for state, _, _ in out["first"])
    for digest in digests:
        assert (engine_ws / "media" / f"{digest}.mp4").is_file()
    assert any("Uploading" in line or "Hashing" in line for line in out["upload_lines"]), out["upload_lines"]
    # the same clip again: no transfer at all (known here), then after a reconnect: asked, not sent
    assert out["again"][0][0] == "done" and out["again_transfers"] == []
    assert out["reconnected"][0][0] == "done"
    assert [(t["state"], t["sent"]) for t in out["reconnected_transfers"]] == [("done", 0)]

    merged = out["merged"]
    assert out["merge_op"] == ["FINISHED"] and merged["state"] == "done", merged["error"]
    assert Path(merged["params"]["video"]).parent == engine_ws / "media" and "output" not in merged["params"]
    [download] = out["merge_transfers"]
    assert download["state"] == "done" and download["total"] > 0
    # the strips show the downloaded files, next to the saved .blend
    folder = Path(out["results_folder"])
    assert folder == project / "edit_swapline" / "results" / str(merged["id"])
    layer, found = out["layer"], out["matte"]
    assert layer is not None and layer["blend"] == "ALPHA_OVER", out["_output"]
    assert Path(layer["directory"]).resolve() == (folder / "layer").resolve()
    assert (layer["start"], layer["end"]) == (1, 13)
    assert layer["files"] and all(Path(f).is_file() for f in layer["files"])
    assert found is not None and Path(found["directory"]).resolve() == (folder / "matte").resolve()
    assert all(Path(f).is_file() for f in found["files"])
    remote_layer = Path(merged["result"]["layer"]["directory"])
    for name in (Path(f).name for f in layer["files"]):
        assert (folder / "layer" / name).read_bytes() == (remote_layer / name).read_bytes()
    assert out["last_error"] == ""
    print("upload lines:", out["upload_lines"])
    print(f"remote merge of 12 frames through the add-on, download included: {out['merge_s']:.1f} s")


def test_an_upload_resumes_after_the_connection_breaks(run_scenario, tmp_path):
    clip = tmp_path / "big.mp4"
    clip.write_bytes(np.random.default_rng(0).integers(0, 256, 10 * 2**20 + 12345, np.uint8).tobytes())
    out = run_scenario("remote_resume", clip, tmp_path / "out" / "m.dfm", timeout=180)
    # every byte accepted once, in order: nothing sent before the break was sent again
    assert out["contiguous"] and out["accepted"][0][0] == 0
    assert sum(n for _, n in out["accepted"]) == out["size"] and out["blobs"] == 1
    upload, download, stopped = out["transfers"]
    assert upload["state"] == "done" and 0 < upload["sent"] < out["size"], upload
    assert out["params"][0] == {"video": f"media/{out['digest']}.mp4", "faceset": "f"}
    assert out["jobs"] == ["done"]
    # the .dfm is written in the engine's workspace under its name, then fetched to the asked path
    assert out["params"][1] == {"model": "m", "output": "m.dfm"}
    assert download["state"] == "done" and out["exported"] == ["done"] and out["dfm_ok"]
    # a slow upload: a line in the extract job list, with progress; cancelled from there
    kind, state, message = out["shown"]
    assert (kind, state) == ("extract", "queued") and message.startswith("Uploading slow.mp4: "), out["shown"]
    assert out["cancel"] == ["FINISHED"] and stopped["state"] == "cancelled", stopped
    assert out["last_error"] == "Extract g failed: Upload cancelled" and out["lines_left"] == []
    assert out["cancelled"] == [] and not out["slow_present"] and out["slow_received"] < 24 * 2**20
