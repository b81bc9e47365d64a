"""Tests for bench load: a short real run (engine subprocess, load-generator subprocess) gives its figures."""

from __future__ import annotations

import math
import sys

import pytest

from engine.bench import BENCHMARKS
from engine.bench_load import bench_load
from engine.bench_load_clients import generate

pytestmark = pytest.mark.timeout(600)


def test_load_is_a_registered_benchmark():
    assert BENCHMARKS["load"] is bench_load


def test_a_short_run_measures_requests_latency_and_training_under_load():
    # 4 clients, 6 s of paced load (6 x 1 s), 2 s baselines and flat-out window
    result = bench_load(1.0, clients=4, rate=10.0)
    assert result["clients"] == 4 and result["seconds"] == {"baseline": 2.0, "load": 6.0}
    assert len(result["baselines"]) == 3 and all(b["train_rate"] > 0 for b in result["baselines"])
    if sys.platform == "linux":  # CPU use is read from /proc and getrusage there
        assert all(b["engine_cpu_cores"] > 0 for b in result["baselines"])
        assert result["paced"]["engine_cpu_cores"] > 0 and result["flat_out"]["generator_cpu_cores"] > 0
    for name in ("paced", "flat_out"):
        figures = result[name]
        assert figures["failed"] == 0 and figures["connection_failures"] == 0, figures
        assert figures["requests"] > 0 and figures["requests_per_s"] > 0
        latency = figures["latency_ms"]
        assert 0 < latency["min"] <= latency["median"] <= latency["p90"] <= latency["p99"] <= latency["max"]
        assert figures["train_rate"] > 0 and math.isfinite(figures["train_drop"])
    # 4 clients at 10 requests/s for 6 s: about 240 calls, whatever the machine (a tenth of it at worst)
    assert 24 <= result["paced"]["requests"] <= 250
    assert result["flat_out"]["requests_per_s"] > result["paced"]["requests_per_s"]
    idle = result["idle_engine"]
    assert idle["failed"] == 0 and idle["requests"] > 0 and "train_rate" not in idle
    if sys.platform == "linux":
        assert idle["engine_cpu_ms_per_request"] > 0
    assert isinstance(result["ok"], bool)


def test_the_generator_counts_refused_connections():
    """Nothing listens on the port: every client's connection fails, no request is counted as made."""
    import socket

    with socket.socket() as s:  # a port that was free a moment ago
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    figures = generate(port, "token", "job", clients=2, rate=10.0, seconds=0.5)
    assert figures["requests"] == 0 and figures["connection_failures"] >= 2
    assert figures["end"] - figures["start"] == pytest.approx(0.5)
