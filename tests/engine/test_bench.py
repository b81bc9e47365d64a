"""`python -m engine bench`: figures come with a same-run reference and a ratio."""

import json

import cv2
import numpy as np
import pytest

from engine import bench
from engine.media.decode import iter_frames, probe


def test_extract_bench_reports_median_reference_and_ratio(monkeypatch, portrait_clips, tmp_path):
    monkeypatch.setattr(bench, "_extract_clips", lambda d: {"small": portrait_clips["hopper"]})  # 12 frames
    monkeypatch.setattr(bench, "RUNS", 2)
    r = bench.bench_extract(seconds=1)["small"]
    fig, ref = r["figure"], r["reference"]
    assert fig["min"] <= fig["median"] <= fig["max"] and fig["median"] > 0
    assert ref["name"] == "decode only" and ref["median"] > fig["median"]  # extraction cannot beat decoding
    assert r["ratio"] == fig["median"] / ref["median"]
    assert r["decode_over_extract"] == 1 / r["ratio"]


def test_jitter_bench_measures_raw_and_smoothed(monkeypatch, portrait_clips):
    monkeypatch.setattr(bench, "SHARED_FACES", portrait_clips["hopper"].parent / "nowhere")
    monkeypatch.setattr(bench, "_clip", lambda d: portrait_clips["hopper"])
    (row,) = bench.bench_jitter(seconds=1)["clips"]
    assert row["found"] == row["frames"] == 12
    assert 0 < row["smoothed"] < row["raw"]


def test_unknown_benchmark_is_refused_and_results_are_recorded(monkeypatch, tmp_path, capsys):
    monkeypatch.chdir(tmp_path)
    assert bench.run_benchmarks("paint", 1) == 2
    assert "unknown benchmark" in capsys.readouterr().out
    monkeypatch.setitem(bench.BENCHMARKS, "fake", lambda s: {"figure": {"median": s}})
    assert bench.run_benchmarks("fake", 3.0) == 0
    assert json.loads((tmp_path / "bench_results.json").read_text()) == {"fake": {"figure": {"median": 3.0}}}


TINY_MODEL = {"resolution": 32, "ae_dims": 32, "e_dims": 8, "d_dims": 8, "d_mask_dims": 4, "batch_size": 4}


def test_merge_flicker_and_preview_benches_on_a_tiny_shot(monkeypatch, portrait_clips):
    monkeypatch.setattr(bench, "_merge_clip", lambda d: portrait_clips["astronaut"])  # 12 frames, 320x240
    monkeypatch.setattr(bench, "MERGE_FRAMES", 12)
    monkeypatch.setattr(bench, "MERGE_TRAIN", TINY_MODEL)
    monkeypatch.setattr(bench, "RUNS", 2)
    monkeypatch.setattr(bench, "PREVIEW_CHANGES", 6)
    monkeypatch.setattr(bench, "_merge_shots", {})

    merge = bench.bench_merge(4.0)  # seconds of training: model build and data workers come out of it
    fig, ref = merge["figure"], merge["reference"]
    assert merge["frames"] == merge["swapped"] == 12 and merge["size"] == "320x240"
    assert fig["runs"] == ref["runs"] == 2 and fig["min"] <= fig["median"] <= fig["max"] and fig["median"] > 0
    assert ref["name"] == "decode + H.264 encode" and merge["ratio"] == fig["median"] / ref["median"]
    assert merge["model"]["iterations"] > 0
    # 12 frames are too few to time from the first written one: the output says the whole run was timed
    assert merge["timed"].startswith("the whole run") and merge["frames_timed"] == 12

    flicker = bench.bench_flicker(4.0)  # the same shot, trained once
    assert flicker["frames"] == 12
    assert flicker["figure"] > 0 and flicker["reference"]["value"] > 0  # the camera drifts: faces change
    assert flicker["ratio"] == flicker["figure"] / flicker["reference"]["value"]
    shot = bench._merge_shots[4.0]  # the same shot named as a user's real one: the same figures
    given = bench.bench_flicker(0, workspace=str(shot.workspace), model="m", faceset="f", video=str(shot.video))
    assert given["figure"] == pytest.approx(flicker["figure"]) and given["frames"] == 12
    with pytest.raises(ValueError):
        bench.bench_flicker(0, workspace=str(shot.workspace), model="m")

    preview = bench.bench_preview(4.0)
    for name in ("sequential", "random"):
        row = preview[name]
        assert row["ms"]["runs"] == 3 and row["cached"] == 0  # every change is a frame not shown before
        assert 0 < row["ms"]["min"] <= row["ms"]["median"] <= row["ms"]["p90"] <= row["ms"]["max"]
        assert row["engine_ms"]["median"] < row["ms"]["median"]  # the round trip includes the engine's work
        assert row["bytes"] > 0
    assert preview["size"] == "320x240" and preview["open_s"] > 0



def test_bench_stats_and_the_merge_timing_from_the_first_written_frame(monkeypatch, tmp_path, portrait_clips):
    from engine import benchstats
    from engine.merge import bench as merge_bench

    s = benchstats.summary([3.0, 1.0, 2.0])
    assert s == {"median": 2.0, "min": 1.0, "max": 3.0, "p90": 3.0, "runs": 3, "values": [3.0, 1.0, 2.0]}
    with pytest.raises(ValueError):
        benchstats.summary([])
    clip = portrait_clips["hopper"]  # 12 frames, 320x240
    assert benchstats.decode_rate(clip) > 0 and benchstats.decode_rate(clip, 6, tmp_path / "re.mp4") > 0
    assert probe(tmp_path / "re.mp4").frames == 6  # the reference encoded what it decoded
    big = benchstats.scaled_clip(clip, tmp_path / "big.mp4", 4, size=(640, 360), inset=200)
    info = probe(big)
    assert (info.width, info.height, info.frames) == (640, 360, 4)
    first = next(f for _, f in iter_frames(big))
    # the inset is the frame enlarged, centred; around it a blurred copy (no hard detail)
    assert np.abs(cv2.Laplacian(first[:, :150], cv2.CV_32F)).mean() < np.abs(cv2.Laplacian(first[80:280, 220:420],
                                                                                             cv2.CV_32F)).mean()

    # a run that reports 10 written frames at t=1 and 50 at t=3 merged 40 frames in 2 s, whatever came before
    clock = iter([0.0, 1.0, 3.0, 3.5])
    monkeypatch.setattr(merge_bench.time, "perf_counter", lambda: next(clock))

    def fake_merge(shot, out, outputs, settings=None, report=None):
        report(0.1, "frame 0/50", {"frames": 0})  # nothing written yet: not a mark
        report(0.2, "frame 10/50", {"frames": 10})
        report(1.0, "merged 50 frames", {"frames": 50})
        return {"count": 50, "merged": 50}
    monkeypatch.setattr(merge_bench, "_merge", fake_merge)
    rate, frames, from_first, _ = merge_bench._timed_merge(None, tmp_path / "out")
    assert (rate, frames, from_first) == (20.0, 40, True)


def test_bridge_bench_measures_latency_and_transfers_against_raw_loopback(monkeypatch, capsys):
    from engine import bench_bridge

    monkeypatch.setattr(bench_bridge, "RUNS", 2)
    assert bench.BENCHMARKS["bridge"] is bench_bridge.bench_bridge
    r = bench_bridge.bench_bridge(0.1)  # a tiny --seconds: a 2 MB file and 50 calls against a real engine
    assert r["size_mb"] == 2.0
    lat = r["latency"]
    assert lat["runs"] == 50 and 0 < lat["min"] <= lat["median"] <= lat["p99"] <= lat["max"]
    for name in ("upload", "download", "reference"):
        fig = r[name]
        assert fig["runs"] == 2 and 0 < fig["min"] <= fig["median"] <= fig["max"] and fig["unit"] == "MB/s"
    assert r["upload_ratio"] == r["upload"]["median"] / r["reference"]["median"]
    assert r["download_ratio"] == r["download"]["median"] / r["reference"]["median"]
    out = capsys.readouterr().out
    assert "engine.info round trip: median" in out and "transfer / raw loopback" in out
    json.dumps(r)  # run_benchmarks records it as it is
