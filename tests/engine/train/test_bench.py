"""Tests for engine.train.bench: per-preset speed, counted FLOPs against a same-run conv peak, data wait."""

import torch

from engine.train.bench import bench_training, conv_peak

TINY = {"resolution": 32, "ae_dims": 16, "e_dims": 8, "d_dims": 8, "d_mask_dims": 4, "batch_size": 2}


def test_conv_peak_is_the_best_shape():
    p = conv_peak(0.01, torch.device("cpu"), ((2, 16, 8), (2, 32, 8)))
    assert p["flops_per_s"] == max(p["all"].values()) > 0 and p["shape"] in p["all"]


def test_bench_reports_medians_flops_ratio_and_data_wait():
    r = bench_training(seconds=0.2, runs=1, presets=("quick",), overrides=TINY, peak_shapes=((2, 16, 8),), workers=0)
    q = r["presets"]["quick"]
    for part in (q["samples_per_s"], q["flops_per_s"], q["peak_flops_per_s"], q["ratio_to_peak"],
                 q["with_workers"]["data_wait_share"]):
        assert part["min"] <= part["median"] <= part["max"] and part["runs"] == len(part["values"]) == 1
    assert q["resolution"] == 32 and q["batch_size"] == 2 and q["flops_per_step"] > 0
    assert q["ratio_to_peak"]["values"] == [q["flops_per_s"]["values"][0] / q["peak_flops_per_s"]["values"][0]]
    assert 0 < q["with_workers"]["data_wait_share"]["median"] <= 1  # in-process sampling is all waiting
