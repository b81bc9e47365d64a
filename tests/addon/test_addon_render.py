"""Render Edit through real bpy: Blender's sequencer render writes the files, the test reads them back
(PyAV for the movie's streams and container tags, PIL for PNG text chunks, the EXR header's bytes)."""

import json
import tomllib
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from engine.media.encode import write_video

REPO = Path(__file__).resolve().parents[2]
VERSION = tomllib.loads((REPO / "blender_manifest.toml").read_text())["version"]  # the add-on's version
FRAMES, FPS, RATE = 12, 30, 48000


def _clip_with_audio(path: Path) -> Path:
    frames = [np.full((48, 64, 3), (20 * i) % 256, np.uint8) for i in range(FRAMES)]
    t = np.arange(int(RATE * FRAMES / FPS)) / RATE
    return write_video(path, frames, FPS, audio=(0.4 * np.sin(2 * np.pi * 440 * t)).astype(np.float32),
                       sample_rate=RATE)


def _sidecar(output: str) -> dict:
    return json.loads(Path(f"{output}.swapline.json").read_text())


def test_render_edit_formats_tags_and_sidecar(run_scenario, tmp_path):
    clip = _clip_with_audio(tmp_path / "clip.mp4")
    folder = tmp_path / "renders"
    out = run_scenario("render_edit", clip, folder, timeout=240)
    assert "Save the .blend first" in out["unsaved"]
    assert "Nothing to render" in out["empty"]
    assert out["default"] == {"H264": str(folder / "project_swapline.mp4"),
                              "PRORES": str(folder / "project_swapline.mov"), "PNG": str(folder / "project_swapline")}
    assert out["relative"] == str(folder / "sub" / "cut.mp4"), "the format decides the extension"
    for name in ("h264", "prores", "png", "png_label", "exr"):
        assert out[name]["result"] == ["FINISHED"], (name, out[name]["error"])
        assert out[name]["after"] == out["before"], f"{name}: the user's render settings come back"

    # H.264 MP4 with the edit's audio, named as asked, tagged in the container
    mp4 = out["h264"]["output"]
    assert mp4 == str(folder / "edit.mp4")
    with av.open(mp4) as container:
        kinds = {s.type: s.codec_context.name for s in container.streams}
        tags = dict(container.metadata)
        frames = sum(1 for _ in container.decode(video=0))
    assert kinds == {"video": "h264", "audio": "aac"}
    assert frames == FRAMES
    assert "synthetic faces" in tags["comment"] and f"Swapline {VERSION}" in tags["comment"]
    assert tags["synthetic_faces"] == "yes" and tags["swapline_version"] == VERSION
    side = _sidecar(mp4)
    assert side["synthetic_faces"] is True and side["tool"] == "Swapline" and side["version"] == VERSION
    assert side["date"] == tags["swapline_date"] and side["container_tags"] is True
    assert side["frames"] == [1, FRAMES] and side["format"] == "H.264 MP4"
    assert {s["name"] for s in side["strips"]} == {"Shot", "Sound", "Shot swap"}, "muted strips are not used"
    assert side["models"] == [{"name": "tiny", "workspace": side["models"][0]["workspace"]}]
    assert not list(folder.glob("edit0*.mp4")), "Blender's frame-range name is moved to the asked one"

    mov = out["prores"]["output"]
    assert mov.endswith("edit_prores.mov")
    with av.open(mov) as container:
        assert {s.type: s.codec_context.name for s in container.streams} == {"video": "prores", "audio": "aac"}
        assert "Swapline" in container.metadata["comment"]

    # PNG: Blender's own stamp metadata carries the Note; the label burns in
    plain, labelled = Path(out["png"]["output"]), Path(out["png_label"]["output"])
    files = sorted(plain.glob("*.png"))
    assert len(files) == FRAMES and _sidecar(str(plain))["files"] == [f.name for f in files]
    note = Image.open(files[0]).text["Note"]
    assert note.startswith("Contains synthetic faces") and f"Swapline {VERSION}" in note
    with_label = sorted(labelled.glob("*.png"))
    label = Image.open(with_label[0]).text["Note"]
    assert label.startswith(f"Synthetic face (Swapline)  |  Swapline {VERSION}, 20"), label
    a = np.asarray(Image.open(files[5]).convert("RGB"), np.int16)
    b = np.asarray(Image.open(with_label[5]).convert("RGB"), np.int16)
    assert (np.abs(a - b).max(axis=2) > 10).mean() > 0.05, "the label is drawn on the picture"
    assert _sidecar(str(labelled))["label"] == label and _sidecar(str(plain))["label"] is None

    exr = sorted(Path(out["exr"]["output"]).glob("*.exr"))
    assert len(exr) == FRAMES
    assert exr[0].read_bytes()[:4] == b"\x76\x2f\x31\x01"
    header = exr[0].read_bytes()[:4096]
    assert b"Note\0string" in header and f"Swapline {VERSION}".encode() in header


def test_render_job_handlers_finish_on_the_main_thread(run_scenario, tiny_clips, tmp_path):
    folder = tmp_path / "job"
    out = run_scenario("render_job", tiny_clips["a"], folder)
    assert out["hooked"] == [True, True] and out["queued"] == 1, "render_complete only posts to the queue"
    assert out["before_drain"][1] is False
    assert out["drain"] is None, "nothing pending: the timer stops"
    assert out["after_drain"] == ["/user/own/", ["job.mp4", "job.mp4.swapline.json"], 0, False]
    with av.open(str(folder / "job.mp4")) as container:
        assert "synthetic faces" in container.metadata["comment"]
    assert out["during"][1] is True and out["during"][0] != "/user/own/"
    assert out["cancelled"] == ["/user/own/", False, False]
    drawn = out["drawn"]
    assert drawn["problems"] == []
    assert drawn["operators"] == ["swapline.face_grade", "swapline.render"]
    assert drawn["labels"] == ["Grade and Render", "Frames 1-5 (the scene's range)"]


def _provenance():
    """addon/provenance.py alone (the add-on package imports bpy, which must stay out of this process)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("swapline_provenance", REPO / "addon" / "provenance.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_container_tags_in_place_and_only_when_the_header_is_last(tmp_path):
    prov = _provenance()
    clip = _clip_with_audio(tmp_path / "clip.mp4")  # PyAV, like Blender's FFmpeg, writes moov last
    size = clip.stat().st_size
    values = prov.tags("2026-01-02T03:04:05+00:00")
    prov.tag_movie(str(clip), values)
    prov.tag_movie(str(clip), dict(values, comment="second"))  # a re-tag replaces, never piles up
    with av.open(str(clip)) as container:
        tags = dict(container.metadata)
        frames = sum(1 for _ in container.decode(video=0))
    assert tags["comment"] == "second" and tags["swapline_date"] == "2026-01-02T03:04:05+00:00"
    assert tags["description"].startswith("Contains synthetic faces") and frames == FRAMES
    assert 0 < clip.stat().st_size - size < 1000, "only the header grew"

    fast = tmp_path / "fast.mp4"
    with av.open(str(fast), "w", options={"movflags": "faststart"}) as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(3):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(np.zeros((48, 64, 3), np.uint8), format="rgb24")))
        container.mux(stream.encode())
    before = fast.read_bytes()
    with pytest.raises(ValueError, match="not at the end"):
        prov.tag_movie(str(fast), values)
    assert fast.read_bytes() == before, "a file it cannot tag is left as it was"
    assert prov.version() == VERSION
