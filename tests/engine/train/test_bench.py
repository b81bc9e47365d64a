"""Tests for engine.train.bench: the benchmark reports both modes and their ratio."""

from engine.train.bench import bench_training


def test_bench_reports_medians_and_ratio():
    r = bench_training(seconds=0.2, resolution=16, batch_size=2, runs=1)
    for mode in ("fp32", "bf16"):
        assert r[mode]["min"] <= r[mode]["median"] <= r[mode]["max"] and r[mode]["median"] > 0
        assert len(r[mode]["runs"]) == 1
    assert r["ratio"] == r["bf16"]["median"] / r["fp32"]["median"]
    assert r["resolution"] == 16 and r["batch_size"] == 2
