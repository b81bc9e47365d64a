"""Render Edit through real bpy: Blender's sequencer render writes the files, the test reads them back
(PyAV for the movie's streams and container tags, PIL for PNG text chunks, the EXR header's bytes)."""

import json
import struct
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
    assert label.startswith(f"Synthetic face (Swapline) | Contains synthetic faces"), label
    assert f"made with Swapline {VERSION}, 20" in label, "with the label the Note still carries the statement"
    a = np.asarray(Image.open(files[5]).convert("RGB"), np.int16)
    b = np.asarray(Image.open(with_label[5]).convert("RGB"), np.int16)
    assert (np.abs(a - b).max(axis=2) > 10).mean() > 0.05, "the label is drawn on the picture"
    side = _sidecar(str(labelled))
    assert side["label"] == "Synthetic face (Swapline)" and side["metadata"] == label
    assert _sidecar(str(plain))["label"] is None

    # An RGBA QuickTime (PNG codec) setup comes back whole: every setting read before equals after
    rgba = out["rgba"]
    assert rgba["user"] == ["RGBA", "PNG"] and rgba["snapshot_size"] > 30
    for fmt, done in rgba["renders"].items():
        assert done["result"] == ["FINISHED"], (fmt, done["error"])
        assert done["changed"] == [], f"{fmt}: settings not restored {done['changed']}"
    assert "use_stamp_date" in out["stamp_fields"] and "use_stamp_labels" in out["stamp_fields"]
    assert "use_stamp_note" not in out["stamp_fields"]

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
    rendered, sidecar, moved, restored = out["partial"]
    assert rendered.startswith("partial0") and sidecar and not moved and restored == "/user/own/"
    partial = json.loads(Path(out["partial_sidecar"]).read_text())
    assert partial["cancelled"] is True and partial["container_tags"] is True
    with av.open(str(folder / rendered)) as container:
        assert "synthetic faces" in container.metadata["comment"], "a cancelled movie is tagged too"
    timer, pending, queued, error = out["finish_error"]
    assert timer is None and pending == 0 and queued == 0 and "could not finish" in error
    assert out["stale"][:2] == [0.25, None], "finished on the second idle poll"
    assert out["stale"][3:] == [False, "old", "/user/own/"], "an earlier render's file is not this one's"
    assert out["load_hook"] is True
    assert out["loaded_now"] == ["/user/own/", 0, 1], "settings back at the load; the file left to the timer"
    polls, filepath, sidecar, detached, rendered = out["loaded_after"]
    assert polls[-1] is None and filepath == "/new/file/" and sidecar and detached == 0
    with av.open(str(folder / rendered)) as container:
        assert "synthetic faces" in container.metadata["comment"]
    assert out["started"] == [True, 1, True]
    assert out["started_drain"] == [None, 0, "/user/own/", True]
    for name in ("refused_raise", "refused_cancel"):
        started, pending, hooked, filepath, reports = out[name]
        assert [started, pending, hooked, filepath] == [False, 0, False, "/user/own/"], (name, reports)
        assert any(level == "ERROR" and "did not start" in text for level, text in reports), reports
    assert out["disabled"] == ["/user/own/", 0, False, False]
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


def _decoded(path) -> tuple[dict, int]:
    with av.open(str(path)) as container:
        return dict(container.metadata), sum(1 for _ in container.decode(video=0))


def test_container_tags_never_rewrite_the_movie_and_only_when_the_header_is_last(tmp_path, monkeypatch):
    prov = _provenance()
    clip = _clip_with_audio(tmp_path / "clip.mp4")  # PyAV, like Blender's FFmpeg, writes moov last
    size = clip.stat().st_size
    values = prov.tags("2026-01-02T03:04:05+00:00")
    sizes = []
    for run in range(6):  # a re-tag replaces, never piles up; the file plays after every run
        prov.tag_movie(str(clip), dict(values, comment=f"run {run}"))
        tags, frames = _decoded(clip)
        assert tags["comment"] == f"run {run}" and frames == FRAMES
        sizes.append(clip.stat().st_size - size)
    assert tags["swapline_date"] == "2026-01-02T03:04:05+00:00"
    assert tags["description"].startswith("Contains synthetic faces")
    header = sizes[0]  # the first run adds one header (the old one is kept as a free box)
    assert 0 < header < 4000 and max(sizes) <= 2 * header and sizes[-2:] == sizes[2:4], \
        f"repeated tags alternate between two sizes: {sizes}"

    # a failed append is cut back off: the file is as it was (a run from the larger size writes into the
    # free space; from the smaller one, the next run appends)
    if sizes[-1] != header:
        prov.tag_movie(str(clip), values)
    assert clip.stat().st_size - size == header
    before = clip.read_bytes()

    def no_sync(_fd):
        raise OSError("disk full")

    monkeypatch.setattr(prov.os, "fsync", no_sync)
    with pytest.raises(OSError, match="disk full"):
        prov.tag_movie(str(clip), values)
    monkeypatch.undo()
    assert clip.read_bytes() == before and _decoded(clip)[1] == FRAMES

    cut = tmp_path / "cut.mp4"
    cut.write_bytes(before[:24] + struct.pack(">I4s", 1, b"mdat") + b"\0\0\0")  # inside a 64-bit size
    with pytest.raises(ValueError, match="cut off"):
        prov.tag_movie(str(cut), values)

    sidecar = prov.write_sidecar(str(clip), {"what": "x"})
    assert json.loads(Path(sidecar).read_text()) == {"what": "x"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4", "clip.mp4.swapline.json", "cut.mp4"], \
        "no temporary file left beside the sidecar"

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
