"""merge.preview: a real engine subprocess answers a frame's face layer as PNG bytes over the bridge."""

import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from bridge import PROTOCOL_VERSION, BridgeClient, BridgeError
from engine.errors import EngineError
from engine.jobs import JobRunner
from engine.media.decode import probe
from engine.recipes import STAGES
from engine.service_merge import PreviewSessions, merge_preview
from engine.workspace import Workspace

ROOT = Path(__file__).resolve().parents[2]
TINY = {"resolution": 32, "ae_dims": 32, "e_dims": 8, "d_dims": 8, "d_mask_dims": 4, "batch_size": 4}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, portrait_clips, wait_job):
    """Two tiny models of one pair, trained in a workspace that is closed again for the engine to open."""
    root = tmp_path_factory.mktemp("ws")
    ws = Workspace(root)
    runner = JobRunner(ws, STAGES)
    wait_job(runner, "extract", {"video": str(portrait_clips["hopper"]), "faceset": "src", "size": 128})
    wait_job(runner, "extract", {"video": str(portrait_clips["astronaut"]), "faceset": "dst", "size": 128})
    for model in ("m", "m2"):
        wait_job(runner, "train", {"model": model, "source": "src", "destination": "dst", "iterations": 4, **TINY})
    runner.shutdown()
    ws.close()
    return root


@pytest.fixture
def engine(workspace):
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine", "serve", "--workspace", str(workspace), "--port", "0", "--token", "tok"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    match = re.search(r"listening on ([\d.]+):(\d+)", proc.stdout.readline())
    assert match, "engine did not start"
    # what the engine prints later is read away: a full pipe would stall it
    threading.Thread(target=proc.stdout.read, daemon=True).start()
    client = BridgeClient("127.0.0.1", int(match.group(2)), "tok", timeout=120)
    client.connect()
    client.start()
    yield client
    client.close()
    proc.terminate()
    proc.wait(timeout=20)


def test_preview_over_the_bridge(engine, portrait_clips):
    clip = str(portrait_clips["astronaut"])
    info = probe(Path(clip))
    args = {"model": "m", "video": clip, "faceset": "dst", "frame": 5, "settings": {"colour": "rct"}}
    first = engine.call("merge.preview", args, timeout=120)
    assert first["frame"] == 5 and first["cached"] is False and isinstance(first["layer"], bytes)
    layer = cv2.imdecode(np.frombuffer(first["layer"], np.uint8), cv2.IMREAD_UNCHANGED)
    assert layer.shape == (info.height, info.width, 4)
    x0, y0, x1, y1 = first["box"]
    assert layer[y0:y1, x0:x1, 3].any()
    outside = layer[..., 3].copy()
    outside[y0:y1, x0:x1] = 0
    assert not outside.any()  # transparent outside the face's box
    again = engine.call("merge.preview", args)
    assert again["cached"] is True and again["layer"] == first["layer"]
    moved = engine.call("merge.preview", {**args, "settings": {"colour": "rct", "blur": 0.2}})
    assert moved["cached"] is False and moved["layer"] != first["layer"]
    assert engine.call("merge.preview", {**args, "frame": 6})["frame"] == 6


@pytest.mark.parametrize("change, code", [
    ({"model": "nope"}, "not_found"),
    ({"faceset": "nobody"}, "not_found"),
    ({"video": "/nowhere/clip.mp4"}, "not_found"),
    ({"model": "../m"}, "bad_request"),
    ({"frame": "5"}, "bad_request"),
    ({"frame": 10_000}, "bad_request"),
    ({"settings": {"mode": "paint"}}, "bad_request"),
    ({"settings": [1, 2]}, "bad_request"),
    ({"range": [8, 2]}, "bad_request"),
    ({"range": [3]}, "bad_request"),
    ({"range": "0-8"}, "bad_request"),
    ({"range": [-1, 4]}, "bad_request"),
])
def test_preview_errors_cross_as_codes(engine, portrait_clips, change, code):
    args = {"model": "m", "video": str(portrait_clips["astronaut"]), "faceset": "dst", "frame": 5, **change}
    with pytest.raises(BridgeError) as err:
        engine.call("merge.preview", args, timeout=120)
    assert err.value.code == code
    assert engine.call("engine.info")["protocol"] == PROTOCOL_VERSION  # the engine is fine


class _Service:
    """What the op needs of the engine service: its workspace (sessions are kept on it)."""

    def __init__(self, ws):
        self.workspace = ws


def test_at_most_two_sessions_are_kept_and_the_evicted_one_is_closed(workspace, portrait_clips):
    ws = Workspace(workspace)
    service = _Service(ws)
    astronaut, hopper = str(portrait_clips["astronaut"]), str(portrait_clips["hopper"])
    try:
        def preview(model, video, faceset):
            return merge_preview(service, {"model": model, "video": video, "faceset": faceset, "frame": 2})

        assert preview("m", astronaut, "dst")["cached"] is False
        first = service.previews.get("m", astronaut, "dst")
        assert preview("m", astronaut, "dst")["cached"] is True  # the same session, warm
        preview("m2", astronaut, "dst")
        preview("m", astronaut, "dst")  # used again: now the most recent
        preview("m", hopper, "src")  # a third shot: the least recently used (m2) goes
        assert service.previews.keys() == [("m", astronaut, "dst"), ("m", hopper, "src")]
        assert service.previews.get("m", astronaut, "dst") is first
        assert preview("m", astronaut, "dst")["cached"] is True
        preview("m", hopper, "src")  # now the astronaut's session is the least recently used
        preview("m2", astronaut, "dst")
        assert first.merger is None  # evicted and closed
        with pytest.raises(EngineError) as err:
            first.render(2, {})
        assert err.value.code == "busy"
        warm = service.previews.get("m2", astronaut, "dst")
        newest = max((p for p in ws.model_dir("m2").iterdir() if p.is_file()), key=lambda p: p.stat().st_mtime_ns)
        os.utime(newest, ns=(newest.stat().st_atime_ns, newest.stat().st_mtime_ns + 10**9))  # saved again
        assert preview("m2", astronaut, "dst")["cached"] is False  # a fresh session on the new checkpoint
        assert warm.merger is None and service.previews.get("m2", astronaut, "dst") is not warm
        assert len(service.previews.keys()) == 2
    finally:
        service.previews.close()
        ws.close()
    assert service.previews.keys() == []


def test_a_session_that_cannot_open_is_not_kept(workspace, portrait_clips):
    ws = Workspace(workspace)
    sessions = PreviewSessions(ws)
    try:
        with pytest.raises(EngineError):
            sessions.get("nope", str(portrait_clips["astronaut"]), "dst")
        assert sessions.keys() == []
    finally:
        sessions.close()
        ws.close()


@pytest.fixture
def opened(monkeypatch) -> list:
    """The (video, faceset, ...) of every PreviewSession opened while the test runs."""
    from engine.merge import preview

    calls = []

    class Counted(preview.PreviewSession):
        def __init__(self, *args, **kwargs):
            calls.append(args[1:])
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(preview, "PreviewSession", Counted)
    return calls


def test_concurrent_requests_for_a_new_shot_open_it_once(workspace, portrait_clips, opened):
    import threading

    ws = Workspace(workspace)
    sessions = PreviewSessions(ws)
    clip = portrait_clips["astronaut"]
    try:
        got = []
        threads = [threading.Thread(target=lambda: got.append(sessions.get("m", str(clip), "dst"))) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert len(got) == 3 and got[0] is got[1] is got[2] and len(opened) == 1
        # the same file by another spelling of its path is the same shot
        assert sessions.get("m", str(clip.parent / ".." / clip.parent.name / clip.name), "dst") is got[0]
        assert len(opened) == 1
    finally:
        sessions.close()
        ws.close()


def test_a_session_is_reopened_when_the_faceset_or_its_masks_change(workspace, portrait_clips):
    ws = Workspace(workspace)
    sessions = PreviewSessions(ws)
    clip = str(portrait_clips["astronaut"])
    face = next(f for f in ws.facesets.faces("dst") if f.frame == 2)
    try:
        first = sessions.get("m", clip, "dst")
        assert sessions.get("m", clip, "dst") is first
        # a label drawn on one of the shot's faces: the open session merged with the old mask
        ws.masks.set_label(face.id, [{"include": True, "points": [[0.1, 0.1], [0.9, 0.1], [0.9, 0.6]]}])
        labelled = sessions.get("m", clip, "dst")
        assert labelled is not first and first.merger is None and sessions.keys() == [("m", clip, "dst")]
        assert sessions.get("m", clip, "dst") is labelled
        ws.masks.set_label(face.id, [])  # removed again: another change
        assert sessions.get("m", clip, "dst") is not labelled
    finally:
        ws.masks.set_label(face.id, [])
        sessions.close()
        ws.close()


def test_a_failed_open_answers_its_waiters_and_the_next_requests_at_once(workspace, portrait_clips, opened,
                                                                         monkeypatch):
    from engine import service_merge
    ws = Workspace(workspace)
    sessions = PreviewSessions(ws)
    clip = str(portrait_clips["astronaut"])
    try:
        errors = []

        def ask():
            try:
                sessions.get("m", clip, "nobody")
            except EngineError as exc:
                errors.append(exc.code)
        threads = [threading.Thread(target=ask) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert errors == ["not_found"] * 3 and len(opened) == 1  # opened once, its error handed on
        with pytest.raises(EngineError) as err:
            sessions.get("m", clip, "nobody")
        assert err.value.code == "not_found" and len(opened) == 1
        monkeypatch.setattr(service_merge, "FAILED_FOR", 0.0)  # the failure is old now: tried again
        with pytest.raises(EngineError):
            sessions.get("m", clip, "nobody")
        assert len(opened) == 2 and sessions.keys() == []
    finally:
        sessions.close()
        ws.close()


def test_the_preview_takes_the_shots_range_and_answers_the_matte(workspace, portrait_clips):
    ws = Workspace(workspace)
    service = _Service(ws)
    clip = str(portrait_clips["astronaut"])
    try:
        args = {"model": "m", "video": clip, "faceset": "dst", "frame": 4, "range": [2, 8]}
        r = merge_preview(service, args)
        assert r["frame"] == 4
        layer = cv2.imdecode(np.frombuffer(r["layer"], np.uint8), cv2.IMREAD_UNCHANGED)
        matte = cv2.imdecode(np.frombuffer(r["matte"], np.uint8), cv2.IMREAD_UNCHANGED)
        assert matte.shape == layer.shape[:2] and matte.max() == 255
        assert np.array_equal(matte, layer[..., 3]), "the matte is the layer's alpha, passed on unchanged"
        for bad in ([4, 4], [2, 3.5], [True, 8], [1, 2, 3]):
            with pytest.raises(EngineError) as err:
                merge_preview(service, {**args, "range": bad})
            assert err.value.code == "bad_request" and "'range'" in err.value.message
    finally:
        service.previews.close()
        ws.close()
