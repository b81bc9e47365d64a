"""`python -m engine bench`: figures come with a same-run reference and a ratio."""

import json

import cv2
import numpy as np
import pytest

from engine import bench, bench_faces, bench_headlines, bench_shot, benchstats
from engine import bench_merge as merge_benches
from engine.media.decode import iter_frames, probe


def test_extract_bench_reports_median_reference_and_ratio(monkeypatch, portrait_clips, tmp_path):
    monkeypatch.setattr(bench_faces, "extract_clips", lambda d: {"small": portrait_clips["hopper"]})  # 12 frames
    monkeypatch.setattr(benchstats, "RUNS", 2)
    r = bench_faces.bench_extraction(seconds=1)["small"]
    fig, ref = r["figure"], r["reference"]
    assert fig["min"] <= fig["median"] <= fig["max"] and fig["median"] > 0
    assert ref["name"] == "decode only" and ref["median"] > fig["median"]  # extraction cannot beat decoding
    assert r["ratio"] == fig["median"] / ref["median"]
    assert r["decode_over_extract"] == 1 / r["ratio"]
    h = bench_headlines.headline_of("extraction", {"small": r})
    assert h["figure"]["median"] == fig["median"] and h["reference"]["median"] == ref["median"]
    assert h["ratio"] == r["ratio"] and h["unit"] == h["reference"]["unit"] == "frames/s"


def test_jitter_bench_measures_raw_and_smoothed(monkeypatch, portrait_clips):
    monkeypatch.setattr(bench_faces, "SHARED_FACES", portrait_clips["hopper"].parent / "nowhere")
    monkeypatch.setattr(bench_faces, "synthetic_clip", lambda d: portrait_clips["hopper"])
    (row,) = bench_faces.bench_jitter(seconds=1)["clips"]
    assert row["found"] == row["frames"] == 12
    assert 0 < row["smoothed"] < row["raw"]
    h = bench_headlines.headline_of("jitter", {"clips": [row]})
    assert h["figure"]["median"] == row["smoothed"] and h["reference"]["median"] == row["raw"]
    assert h["ratio"] == row["ratio"] and h["better"] == "lower"


def test_unknown_benchmark_is_refused_names_and_aliases_run_and_results_are_recorded(monkeypatch, tmp_path, capsys):
    from engine import bench_record

    monkeypatch.chdir(tmp_path)
    assert bench.run_benchmarks("paint", 1) == 2
    assert "unknown benchmark" in capsys.readouterr().out
    # the names, with the old ones as aliases
    for name in ("extraction", "training", "merge", "bridge", "flicker", "jitter"):
        assert bench.resolve(name) == [name]
    assert bench.resolve("extract") == ["extraction"] and bench.resolve("train") == ["training"]
    assert bench.resolve("all") == list(bench.BENCHMARKS) and bench.resolve("paint") is None

    ran = []

    def fake(seconds):
        ran.append(seconds)
        return {"unit": "frames/s",
                "figure": {"median": seconds, "min": 1.0, "max": 4.0, "runs": 3, "values": [1, 3, 4]},
                "reference": {"name": "decode only", "median": 2 * seconds, "min": 5.0, "max": 7.0, "runs": 3},
                "ratio": 0.5}
    monkeypatch.setitem(bench.BENCHMARKS, "training", fake)
    monkeypatch.delitem(bench_headlines.HEADLINES, "training")  # the common figure/reference/ratio shape instead
    assert bench.run_benchmarks("train", 3.0) == 0 and ran == [3.0]
    out = capsys.readouterr().out
    (path,) = (tmp_path / "bench_records").glob("*.json")
    assert f"record: {path.relative_to(tmp_path)}" in out or f"record: {path}" in out
    record = bench_record.read_record(path)
    assert record["args"]["bench"] == "train" and record["args"]["benches"] == ["training"]
    result = record["results"]["training"]
    assert result["figure"]["median"] == 3.0 and result["headline"] == record["headlines"]["training"]
    # the end table: bench | figure median (min-max) unit | reference median (min-max) | ratio
    table = out[out.index("bench  "):]
    assert "training" in table and "3.00 (1.00-4.00) frames/s" in table and "bf16 conv peak" not in table


def test_headlines_of_every_bench_share_one_shape():
    """Each bench's result (in the shape the bench returns) gives a headline: figure, reference, ratio."""
    run = {"median": 2.0, "min": 1.0, "max": 3.0, "p90": 3.0, "runs": 3, "values": [1.0, 2.0, 3.0]}
    clip_rows = [{"clip": "a", "raw": 0.8, "smoothed": 0.4, "ratio": 0.5, "recall": 0.99,
                  "steadied": {"change_none_px": 2.0, "change_smoothed_px": 1.0}},
                 {"clip": "b", "raw": 1.2, "smoothed": 0.3, "ratio": 0.25, "recall": 1.0,
                  "steadied": {"change_none_px": 4.0, "change_smoothed_px": 1.0}}]
    results = {
        "extraction": {"720p": {"figure": run, "reference": {"name": "decode only", **run}, "ratio": 1.0},
                       "1080p": {"figure": run, "reference": {"name": "decode only", **run}, "ratio": 1.0}},
        "training": {"presets": {"quick": {"samples_per_s": run, "ratio_to_peak": {**run, "median": 0.3},
                                           "peak_flops_per_s": {**run, "median": 2e12, "min": 1e12, "max": 3e12}}}},
        "merge": {"size": "1920x1080", "figure": run, "reference": {"name": "decode + H.264 encode", **run},
                  "ratio": 1.0},
        "bridge": {"upload": run, "download": run, "reference": {"name": "raw loopback TCP", "unit": "MB/s", **run},
                   "upload_ratio": 0.4, "download_ratio": 0.5},
        "flicker": {"figure": 1.5, "reference": {"name": "untouched destination", "value": 1.0}, "ratio": 1.5},
        "jitter": {"clips": clip_rows},
        "recall": {"clips": clip_rows},
        "preview": {"sequential": {"ms": run}, "random": {"ms": run}},
        "mask-temporal": {"clips": clip_rows},
        "occlusion": {"details": [{"seen_people": {"learned_iou": 0.9, "hull_iou": 0.8}}] * 3},
        "load": {"clients": 32, "paced": {"train_rate": 9.0, "train_baseline": 10.0},
                 "baselines": [{"train_rate": 10.0}, {"train_rate": 10.0}]},
    }
    assert set(results) == set(bench.BENCHMARKS)
    keys = {"name", "unit", "figure", "reference", "ratio", "better"}
    for name, result in results.items():
        h = bench_headlines.headline_of(name, result)
        assert keys <= set(h), name
        assert set(h["figure"]) == {"median", "min", "max", "runs"}, name
        assert h["reference"] is None or {"name", "unit", "median", "min", "max"} <= set(h["reference"]), name
        json.dumps(h)
    h = {n: bench_headlines.headline_of(n, r) for n, r in results.items()}
    assert h["extraction"]["name"] == "extraction 720p" and h["extraction"]["reference"]["name"] == "decode only"
    peak = h["training"]["reference"]
    assert peak["median"] == pytest.approx(2000.0) and peak["unit"] == "GFLOP/s"
    assert h["training"]["ratio"] == 0.3
    assert h["bridge"]["reference"]["name"] == "raw loopback TCP" and h["bridge"]["ratio"] == 0.4
    assert h["flicker"]["figure"]["median"] == 1.5 and h["flicker"]["reference"]["median"] == 1.0
    assert h["flicker"]["better"] == "lower" and h["flicker"]["ratio"] == 1.5
    assert h["jitter"]["figure"] == {"median": 0.35, "min": 0.3, "max": 0.4, "runs": 2}
    assert h["jitter"]["reference"]["name"] == "raw landmarks" and h["jitter"]["ratio"] == 0.375
    assert h["recall"]["reference"] is None and h["recall"]["ratio"] is None
    assert h["mask-temporal"]["ratio"] == pytest.approx(0.375)
    assert h["occlusion"]["ratio"] == pytest.approx(0.9 / 0.8) and h["load"]["ratio"] == 0.9
    skipped = bench_headlines.headline_of("occlusion", {"skipped": "no clips"})
    assert skipped["figure"] is None and skipped["skipped"] == "no clips"


def test_a_failing_bench_is_recorded_and_the_others_still_run(monkeypatch, tmp_path, capsys):
    from engine import bench_record

    def broken(seconds):
        raise RuntimeError("the clip is gone")
    monkeypatch.setattr(bench, "BENCHMARKS", {
        "broken": broken, "fine": lambda s: {"unit": "ms", "figure": {"median": 1.0, "min": 1.0, "max": 1.0}}})
    record = tmp_path / "run.json"
    assert bench.run_benchmarks("all", 1.0, record=record) == 1
    r = bench_record.read_record(record)
    assert r["results"]["broken"]["error"] == "RuntimeError: the clip is gone"
    assert r["headlines"]["broken"]["figure"] is None and r["headlines"]["fine"]["figure"]["median"] == 1.0
    out = capsys.readouterr().out
    assert "RuntimeError: the clip is gone" in out[out.index("bench  "):]


# A tiny model, trained in the test's one job: its own iteration count (MERGE_TRAIN goes over the
# bench's time limit) ends it, not --seconds, so a slow start-up on a loaded machine neither cuts it to
# no steps nor calls the bench's second, fixed-count job; no data workers to spawn.
TINY_MODEL = {"resolution": 32, "ae_dims": 32, "e_dims": 8, "d_dims": 8, "d_mask_dims": 4, "batch_size": 4,
              "workers": 0, "iterations": 2}
SHOT_SECONDS = 600.0  # the cap on that job, never reached


def test_merge_flicker_and_preview_benches_on_a_tiny_shot(monkeypatch, portrait_clips):
    monkeypatch.setattr(bench_shot, "merge_clip", lambda d: portrait_clips["astronaut"])  # 12 frames, 320x240
    monkeypatch.setattr(bench_shot, "MERGE_FRAMES", 12)
    monkeypatch.setattr(bench_shot, "MERGE_TRAIN", TINY_MODEL)
    monkeypatch.setattr(bench_shot, "MERGE_MIN_ITERATIONS", TINY_MODEL["iterations"])
    monkeypatch.setattr(benchstats, "RUNS", 2)
    monkeypatch.setattr(merge_benches, "PREVIEW_CHANGES", 6)
    monkeypatch.setattr(bench_shot, "_shots", {})

    merge = merge_benches.bench_merge(SHOT_SECONDS)
    fig, ref = merge["figure"], merge["reference"]
    assert merge["frames"] == merge["swapped"] == 12 and merge["size"] == "320x240"
    assert fig["runs"] == ref["runs"] == 2 and fig["min"] <= fig["median"] <= fig["max"] and fig["median"] > 0
    assert ref["name"] == "decode + H.264 encode" and merge["ratio"] == fig["median"] / ref["median"]
    assert merge["model"]["iterations"] == TINY_MODEL["iterations"]
    # 12 frames are too few to time from the first written one: the output says the whole run was timed
    assert merge["timed"].startswith("the whole run") and merge["frames_timed"] == 12
    h = bench_headlines.headline_of("merge", merge)
    assert h["name"] == "merge 320x240" and h["ratio"] == merge["ratio"]
    assert h["reference"]["name"] == "decode + H.264 encode" and h["reference"]["runs"] == 2

    flicker = merge_benches.bench_flicker(SHOT_SECONDS)  # the same shot, trained once
    assert flicker["frames"] == 12
    assert flicker["figure"] > 0 and flicker["reference"]["value"] > 0  # the camera drifts: faces change
    assert flicker["ratio"] == flicker["figure"] / flicker["reference"]["value"]
    h = bench_headlines.headline_of("flicker", flicker)
    assert h["figure"]["median"] == flicker["figure"] and h["reference"]["median"] == flicker["reference"]["value"]
    assert h["ratio"] == flicker["ratio"] and h["better"] == "lower"
    shot = bench_shot._shots[SHOT_SECONDS]  # the same shot named as a user's real one: the same figures
    given = merge_benches.bench_flicker(0, workspace=str(shot.workspace), model="m", faceset="f", video=str(shot.video))
    assert given["figure"] == pytest.approx(flicker["figure"]) and given["frames"] == 12
    with pytest.raises(ValueError):
        merge_benches.bench_flicker(0, workspace=str(shot.workspace), model="m")

    preview = merge_benches.bench_preview(SHOT_SECONDS)
    for name in ("sequential", "random"):
        row = preview[name]
        assert row["ms"]["runs"] == 3 and row["cached"] == 0  # every change is a frame not shown before
        assert 0 < row["ms"]["min"] <= row["ms"]["median"] <= row["ms"]["p90"] <= row["ms"]["max"]
        assert row["engine_ms"]["median"] < row["ms"]["median"]  # the round trip includes the engine's work
        assert row["bytes"] > 0
    assert preview["size"] == "320x240" and preview["open_s"] > 0



def test_bench_stats_and_the_merge_timing_from_the_first_written_frame(monkeypatch, tmp_path, portrait_clips):
    from engine.merge import bench as merge_bench

    s = benchstats.summary([3.0, 1.0, 2.0])
    assert s == {"median": 2.0, "min": 1.0, "max": 3.0, "p90": 3.0, "runs": 3, "values": [3.0, 1.0, 2.0]}
    with pytest.raises(ValueError):
        benchstats.summary([])
    # p99 (the bridge's and the load generator's latency tail): the nearest rank, a measured value
    assert benchstats.p99([float(v) for v in range(1, 101)]) == 99.0
    assert benchstats.p99([5.0]) == 5.0 and benchstats.percentile([1.0, 2.0, 3.0], 0.5) == 2.0
    with pytest.raises(ValueError):
        benchstats.p99([])
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

    monkeypatch.setattr(benchstats, "RUNS", 2)
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
    h = bench_headlines.headline_of("bridge", r)
    assert h["figure"]["median"] == r["upload"]["median"] and h["reference"]["median"] == r["reference"]["median"]
    assert h["reference"]["unit"] == "MB/s" and h["ratio"] == r["upload_ratio"]
