"""Service layer: `python -m engine bench [name]`, figures with a reference measured in the same run.

These machines are noisy, so every figure is the median of several runs, printed with min and max,
next to a reference (pure decode speed, or fp32 training speed) and the ratio to it.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable

RUNS = 3


def _measure(fn: Callable[[], float]) -> dict:
    values = [fn() for _ in range(RUNS)]
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "runs": RUNS}


def _clip(tmp: Path) -> Path:
    from .media.synthetic import make_clip

    return make_clip("hopper", tmp / "bench.mp4", seconds=2.0, fps=25, size=(640, 480))


def _decode_rate(clip: Path) -> float:
    """The reference: frames/s of decoding alone, the floor under any per-frame stage."""
    from .media.decode import iter_frames

    t = time.perf_counter()
    n = sum(1 for _ in iter_frames(clip))
    return n / (time.perf_counter() - t)


def _against_decode(clip: Path, figure: dict) -> dict:
    ref = _measure(lambda: _decode_rate(clip))
    return {"unit": "frames/s", "figure": figure, "reference": {"name": "decode only", **ref},
            "ratio": figure["median"] / ref["median"]}


def bench_extract(seconds: float) -> dict:
    """Extraction frames/s against plain decoding frames/s of the same clip."""
    from .faces.extract import ExtractParams, extract_faces
    from .workspace import Workspace

    with tempfile.TemporaryDirectory() as d:
        clip = _clip(Path(d))

        def extract() -> float:
            ws = Workspace(Path(d) / f"ws{time.monotonic_ns()}")
            t = time.perf_counter()
            r = extract_faces(ws, ExtractParams(video=str(clip), faceset="b"), lambda *a: None, lambda: False)
            return r["frames"] / (time.perf_counter() - t)

        return _against_decode(clip, _measure(extract))


def bench_merge(seconds: float) -> dict:
    """Merge frames/s (predict, colour-match, warp back, blend, write PNG) against decode frames/s.

    The model is the default architecture trained for a few steps: merge speed does not depend on
    how well it has learned.
    """
    from .jobs import JobRunner
    from .recipes import STAGES
    from .workspace import Workspace

    with tempfile.TemporaryDirectory() as d:
        clip = _clip(Path(d))
        ws = Workspace(Path(d) / "ws")
        runner = JobRunner(ws, STAGES)

        def run(kind: str, params: dict) -> dict:
            job = runner.wait(runner.submit(kind, params)["id"])
            if job["state"] != "done":
                raise RuntimeError(f"bench {kind} failed: {job['error']}")
            return job["result"]

        run("extract", {"video": str(clip), "faceset": "f"})
        run("train", {"model": "m", "source": "f", "destination": "f", "iterations": 5})

        def merge() -> float:
            t = time.perf_counter()
            r = run("merge", {"model": "m", "video": str(clip), "faceset": "f",
                              "output": str(Path(d) / f"out{time.monotonic_ns()}")})
            return r["count"] / (time.perf_counter() - t)

        try:
            return _against_decode(clip, _measure(merge))
        finally:
            runner.shutdown()


def bench_train(seconds: float) -> dict:
    from .train.bench import bench_training

    return bench_training(seconds=seconds)


BENCHMARKS: dict[str, Callable[[float], dict]] = {"extract": bench_extract, "train": bench_train, "merge": bench_merge}


def run_benchmarks(name: str, seconds: float) -> int:
    names = list(BENCHMARKS) if name == "all" else [name]
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        print(f"unknown benchmark {unknown[0]!r}; choose from: all, {', '.join(BENCHMARKS)}")
        return 2
    results = {}
    for n in names:
        results[n] = r = BENCHMARKS[n](seconds)
        print(f"{n}: {json.dumps(r, default=float)}")
    Path("bench_results.json").write_text(json.dumps(results, indent=2, default=float))
    return 0
