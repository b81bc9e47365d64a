"""Tests for engine.train.bench: the benchmark reports both modes and their ratio."""

from engine.train.bench import bench_training


def test_bench_reports_medians_and_ratio():
    r = bench_training(seconds=0.2, resolution=16, batch_size=2, runs=1)
    for part in ("figure", "reference"):
        assert r[part]["min"] <= r[part]["median"] <= r[part]["max"] and r[part]["median"] > 0
        assert len(r[part]["runs"]) == 1
    assert r["reference"]["name"] == "fp32" and r["unit"] == "it/s"
    assert r["ratio"] == r["figure"]["median"] / r["reference"]["median"]
    assert r["resolution"] == 16 and r["batch_size"] == 2
