"""Live preview: a warm session per shot answers a frame's face layer as a sparse PNG, from a frame cache."""

import cv2
import numpy as np
import pytest

from engine.errors import EngineError
from engine.jobs import JobRunner
from engine.media.decode import iter_frames, probe
from engine.merge import preview
from engine.merge.preview import FrameCache, PreviewSession
from engine.recipes import STAGES


def _run(runner, kind, params):
    job = runner.wait(runner.submit(kind, params)["id"], timeout=300)
    if job["state"] != "done":
        raise EngineError(job["error"]["code"], job["error"]["message"])
    return job["result"]


def _all_frames(clip):
    return dict(iter_frames(clip))


# Frame cache ------------------------------------------------------------------------------------

def test_frame_cache_fills_in_the_background_with_exact_raw_frames(portrait_clips):
    clip = portrait_clips["hopper"]
    truth = _all_frames(clip)
    cache = FrameCache(probe(clip), [2, 3, 5, 9])
    assert cache.raw  # a short shot keeps raw frames
    assert cache.filled.wait(30) and cache.error is None
    assert len(cache) == 4
    for i in (2, 3, 5, 9):
        assert np.array_equal(cache.cached(i), truth[i])
    assert cache.cached(4) is None  # not wanted: never decoded in the background
    assert np.array_equal(cache.frame(4), truth[4])  # decoded directly when asked
    assert np.array_equal(cache.cached(4), truth[4])  # and kept
    cache.close()
    assert len(cache) == 0


def test_frame_cache_in_jpeg_is_close(portrait_clips):
    clip = portrait_clips["astronaut"]
    truth = _all_frames(clip)
    cache = FrameCache(probe(clip), list(range(12)), raw=False)
    # frames asked while the background decodes: exact when decoded on the side, JPEG'd when cached
    for i in (11, 0, 7, 8, 3):
        assert np.abs(cache.frame(i).astype(int) - truth[i]).mean() < 2
    assert cache.filled.wait(30)
    for i in range(12):
        got = cache.cached(i)
        assert got.shape == truth[i].shape
        assert np.abs(got.astype(int) - truth[i]).mean() < 2  # JPEG q95: about a level
    with pytest.raises(EngineError) as err:
        cache.frame(12)
    assert err.value.code == "bad_request"
    cache.close()


def test_direct_decode_seeks_and_reads_on_exactly(portrait_clips, monkeypatch):
    clip = portrait_clips["hopper"]
    truth = _all_frames(clip)
    monkeypatch.setattr(preview, "SEEK_AHEAD", 2)
    cache = FrameCache(probe(clip), [])  # nothing in the background: every frame is a direct decode
    for i in (5, 6, 8, 1, 11, 0, 10):  # read on (6, 8), seek back (1, 0) and forward (11)
        assert np.array_equal(cache.frame(i), truth[i]), i
    cache.close()


def test_the_cache_stops_at_its_budget(portrait_clips, monkeypatch):
    clip = portrait_clips["hopper"]
    info = probe(clip)
    monkeypatch.setattr(preview, "RAW_BUDGET", 3 * info.width * info.height * 3)
    cache = FrameCache(info, list(range(12)), raw=True)
    assert cache.filled.wait(30)
    assert len(cache) == 3  # the rest are decoded when asked, and not kept
    cache.frame(10)
    assert len(cache) == 3 and cache.cached(10) is None
    cache.close()


# Sessions ---------------------------------------------------------------------------------------

def _alpha(png: bytes) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED)
    assert image is not None and image.ndim == 3 and image.shape[2] == 4
    return image


def test_a_session_renders_the_face_layer_and_caches_it(tiny_pair, portrait_clips):
    ws = tiny_pair
    clip = portrait_clips["astronaut"]
    info = probe(clip)
    session = PreviewSession(ws, "m", str(clip), "dst")
    try:
        first = session.render(3, {})
        assert first["frame"] == 3 and first["cached"] is False and first["ms"] > 0
        layer = _alpha(first["layer"])
        assert layer.shape[:2] == (info.height, info.width)
        alpha = layer[..., 3]
        assert alpha.max() == 255 or alpha.max() > 100
        x0, y0, x1, y1 = first["box"]
        assert 0 <= x0 < x1 <= info.width and 0 <= y0 < y1 <= info.height
        assert not alpha[:y0].any() and not alpha[y1:].any() and not alpha[:, :x0].any() and not alpha[:, x1:].any()
        face = next(f for f in ws.facesets.faces("dst") if f.frame == 3)
        fx0, fy0, fx1, fy1 = (int(v) for v in face.box)
        pad = (fx1 - fx0) // 2  # the feathered face stays within half a face-width of the detection box
        ys, xs = np.nonzero(alpha)
        assert xs.min() >= fx0 - pad and xs.max() < fx1 + pad and ys.min() >= fy0 - pad and ys.max() < fy1 + pad
        assert alpha[(fy0 + fy1) // 2, (fx0 + fx1) // 2] > 200  # opaque in the middle of the face

        again = session.render(3, {})
        assert again["cached"] is True and again["layer"] == first["layer"] and again["box"] == first["box"]
        changed = session.render(3, {"erode": 0.15})
        assert changed["cached"] is False and changed["layer"] != first["layer"]
        assert (_alpha(changed["layer"])[..., 3] > 0).sum() < (alpha > 0).sum()  # eroded: a smaller face
        assert session.render(3, {})["cached"] is True  # the first settings are still cached
        assert session.render(4, {})["cached"] is False
    finally:
        session.close()
    with pytest.raises(EngineError) as err:
        session.render(3, {})
    assert err.value.code == "busy"


def test_session_errors(tiny_pair, portrait_clips, tmp_path):
    ws = tiny_pair
    clip = str(portrait_clips["astronaut"])
    for model, video, faceset, code in (("nope", clip, "dst", "not_found"),
                                        ("m", str(tmp_path / "gone.mp4"), "dst", "not_found"),
                                        ("m", clip, "nobody", "not_found"),
                                        ("m", str(portrait_clips["hopper"]), "dst", "no_faces")):
        with pytest.raises(EngineError) as err:
            PreviewSession(ws, model, video, faceset)
        assert err.value.code == code, (model, video, faceset)
    session = PreviewSession(ws, "m", clip, "dst")
    try:
        for frame, settings, words in ((99, {}, "frame must be"), (-1, {}, "frame must be"),
                                       (2, {"mode": "paint"}, "mode must be"), (2, {"smudge": 1}, "smudge"),
                                       (2, "erode", "must be a map")):
            with pytest.raises(EngineError) as err:
                session.render(frame, settings)
            assert err.value.code == "bad_request" and words in err.value.message
    finally:
        session.close()


# Exact frames, the shot's range, the job's pixels ------------------------------------------------

def test_reader_seeks_to_exact_frames(portrait_clips, shared_clip):
    from engine.merge.seek import FrameReader, frame_index

    clips = [portrait_clips["hopper"]]
    try:
        clips.append(shared_clip("LivePortrait__assets_examples_driving_d13.mp4"))  # a real H.264 clip, long GOPs
    except pytest.skip.Exception:
        pass
    for clip in clips:
        info = probe(clip)
        truth = dict(iter_frames(clip, 0, 140))
        index = frame_index(info)
        assert index.exact and len(index.pts) == info.frames
        reader = FrameReader(info, index)
        for target in (min(130, info.frames - 2), 1, 0, min(77, info.frames - 2), 3):
            reader.open(target)
            for want in (target, target + 1):
                got, frame = reader.read()
                assert got == want and np.array_equal(frame, truth[want]), (clip.name, want)
        reader.close()


def test_the_fill_follows_the_shots_range_from_the_asked_frame(portrait_clips):
    clip = portrait_clips["hopper"]
    truth = _all_frames(clip)
    cache = FrameCache(probe(clip), list(range(12)), start=False)
    assert not cache.filled.wait(0.3) and len(cache) == 0  # nothing before the first focus
    cache.focus(6, 4, 9, margin=1)
    assert cache.filled.wait(30) and cache.error is None
    assert sorted(cache._store) == [4, 5, 6, 7, 8]  # the range only (the smoothing never reads outside it)
    for i in range(4, 9):
        assert np.array_equal(cache.cached(i), truth[i])
    cache.focus(10, 9, 12)
    assert cache.filled.wait(30) and sorted(cache._store) == list(range(4, 12))
    cache.close()


def test_a_preview_is_the_jobs_frame_whatever_was_scrubbed_before(tiny_pair, portrait_clips, tmp_path, about_equal):
    ws = tiny_pair
    clip = str(portrait_clips["astronaut"])
    settings = {"smooth_colour": 1.5, "sharpen": 0.3}
    runner = JobRunner(ws, STAGES)
    try:
        _run(runner, "merge", {"model": "m", "video": clip, "faceset": "dst", "frame_start": 1, "frame_end": 10,
                               "output": str(tmp_path / "out"), "settings": settings})
    finally:
        runner.shutdown()
    job = cv2.imread(str(tmp_path / "out" / "layer" / "frame_000005.png"), cv2.IMREAD_UNCHANGED)
    job_matte = cv2.imread(str(tmp_path / "out" / "matte" / "frame_000005.png"), cv2.IMREAD_UNCHANGED)
    fresh = PreviewSession(ws, "m", clip, "dst")
    scrubbed = PreviewSession(ws, "m", clip, "dst")
    try:
        first = fresh.render(5, settings, frame_range=[1, 10])
        for frame in (1, 9, 3, 6, 2):  # scrub around: the means near frame 5 fill unevenly
            scrubbed.render(frame, settings, frame_range=[1, 10])
        scrubbed.render(5, {"erode": 0.1, **settings}, frame_range=[1, 10])  # another state in between
        second = scrubbed.render(5, settings, frame_range=[1, 10])
        assert second["cached"] is False
        a, b = _alpha(first["layer"]), _alpha(second["layer"])
        # the same pixels up to a rounding (the model's float results vary by the last bit with the
        # batch a face ran in)
        assert about_equal(a, b), "the same frame and settings gave other pixels after scrubbing"
        assert job.shape == a.shape and about_equal(job, a)
        # the matte is the layer's alpha, as the job writes it
        matte = cv2.imdecode(np.frombuffer(first["matte"], np.uint8), cv2.IMREAD_UNCHANGED)
        assert matte.shape == a.shape[:2] and np.array_equal(matte, a[..., 3])
        assert about_equal(job_matte, matte)
        # the range bounds the smoothing and the frames a session decodes
        narrow = PreviewSession(ws, "m", clip, "dst")
        try:
            layer = _alpha(narrow.render(5, settings, frame_range=[4, 7])["layer"])
            assert np.array_equal(layer[..., 3], a[..., 3])
            assert narrow.frames.filled.wait(30) and sorted(narrow.frames._store) == [4, 5, 6]
        finally:
            narrow.close()
        for bad in ([5], [1, "9"], [6, 9], [7, 3]):
            with pytest.raises(EngineError) as err:
                fresh.render(5, settings, frame_range=bad)
            assert err.value.code == "bad_request" and "range" in err.value.message
    finally:
        fresh.close()
        scrubbed.close()
