"""`python -m engine bench`: figures come with a same-run reference and a ratio."""

import json

from engine import bench


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
