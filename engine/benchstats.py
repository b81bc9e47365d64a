"""Shared piece: what every benchmark reports and measures against.

- summary/measure: the median of several runs (RUNS unless a bench says otherwise) with min, max
  and p90 (these machines are noisy, so one run says little), the run count and the values
  themselves; percentile (p99 of latencies);
- headline: the one figure each bench leads with, in one shape for all of them (the end table and
  `bench compare` read only these);
- decode_rate: the reference pass over a clip, decoding alone or decoding and H.264-encoding again;
- scaled_clip: a clip enlarged to a bigger frame size (stretched, or as a square inset on a blurred
  copy of itself), for benches that need 1080p from the small real clips in ../shared.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any, Callable, Iterable

import cv2
import numpy as np

from .media.decode import iter_frames, probe
from .media.encode import write_video

# Runs a timed figure is measured over. One knob for every bench (a test sets it to 2): read when a
# bench runs, not when it is defined, so setting it here reaches them all.
RUNS = 3


def summary(values: Iterable[float]) -> dict[str, Any]:
    """Median, min, max and p90 of one figure's runs; "runs" counts them, "values" lists them in run order."""
    values = list(values)
    if not values:
        raise ValueError("a benchmark summary needs at least one run")
    ordered = sorted(values)
    return {"median": statistics.median(values), "min": ordered[0], "max": ordered[-1],
            "p90": percentile(ordered, 0.9), "runs": len(values), "values": values}


def percentile(ordered: list[float], share: float) -> float:
    """The value `share` (0..1) of the way up the already sorted values: the nearest rank, no
    interpolation, so it is always a measured value."""
    if not ordered:
        raise ValueError("a percentile needs at least one value")
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def p99(ordered: list[float]) -> float:
    """The 99th percentile of sorted latencies: the slow tail a user meets once a hundred calls."""
    return percentile(ordered, 0.99)


def brief(figure: dict[str, Any], scale: float = 1.0) -> dict[str, Any]:
    """A summary's median, min, max and run count (times `scale`, for a change of unit): what a
    headline keeps of it; the bench's own result keeps everything."""
    return {"median": figure["median"] * scale, "min": figure["min"] * scale, "max": figure["max"] * scale,
            "runs": figure.get("runs", 1)}


def headline(name: str, unit: str, figure: dict[str, Any] | None, reference: dict[str, Any] | None = None,
             ratio: float | None = None, better: str = "higher", **notes: Any) -> dict[str, Any]:
    """The uniform headline of one bench.

    figure: a summary (see brief) in `unit`, None when the bench measured nothing (skipped, failed);
    reference: {"name", "unit", median, min, max, runs} measured in the same run, or None where the
    bench has none; ratio: figure against reference as the bench defines it (the figure that
    survives a noisy or different machine); better: "higher" or "lower", which way is an improvement.
    `notes` (what the ratio means, why a figure is missing) are kept beside them."""
    if better not in ("higher", "lower"):
        raise ValueError(f"better must be 'higher' or 'lower', not {better!r}")
    return {"name": name, "unit": unit, "figure": None if figure is None else brief(figure),
            "reference": None if reference is None else {"name": reference["name"], "unit": reference["unit"],
                                                         **brief(reference)},
            "ratio": None if ratio is None or ratio != ratio else float(ratio), "better": better, **notes}


def measure(fn: Callable[[], float], runs: int | None = None) -> dict[str, Any]:
    """summary of `runs` (default RUNS) calls of fn (each returns its figure)."""
    return summary(fn() for _ in range(RUNS if runs is None else runs))


def decode_rate(clip: Path, frames: int | None = None, encode_to: Path | None = None) -> float:
    """Frames/s of decoding [0, frames) of the clip (the floor under any per-frame stage); with
    `encode_to`, of decoding and encoding them again as H.264 into that file (what any pass that
    writes a video costs)."""
    start, count = time.perf_counter(), 0

    def counted() -> Iterable[np.ndarray]:
        nonlocal count
        for _, frame in iter_frames(clip, 0, frames):
            count += 1
            yield frame
    if encode_to is None:
        for _ in counted():
            pass
    else:
        write_video(encode_to, counted(), probe(clip).fps or 25.0)
    return count / (time.perf_counter() - start)


def scaled_clip(source: Path, out: Path, frames: int, size: tuple[int, int] = (1920, 1080),
                inset: int | None = None) -> Path:
    """The first `frames` frames of `source` enlarged to size (width, height) as an H.264 clip at the
    source's rate: stretched to the whole frame, or with `inset`, scaled to an inset x inset square
    centred on a blurred copy of itself (a talking head's face stays round and about that big)."""
    width, height = size

    def scaled(frame: np.ndarray) -> np.ndarray:
        if inset is None:
            return cv2.resize(frame, (width, height), interpolation=cv2.INTER_CUBIC)
        canvas = cv2.resize(cv2.resize(frame, (32, 18), interpolation=cv2.INTER_AREA), (width, height))
        y0, x0 = (height - inset) // 2, (width - inset) // 2
        canvas[y0:y0 + inset, x0:x0 + inset] = cv2.resize(frame, (inset, inset), interpolation=cv2.INTER_CUBIC)
        return canvas
    return write_video(out, (scaled(f) for _, f in iter_frames(source, 0, frames)), probe(source).fps or 30.0)
