"""Merge stage: how fast the merge job runs, how steady its result is over time, how quick the live preview answers.

Each figure comes with a reference measured in the same run on the same clip:
- merge: merged frames/s (predict, compose, write the face layer and matte PNGs) against decoding
  and H.264-encoding the same frames (what any pass over the clip costs). Timed from the first
  frame written to the last: loading the model and the shot's faces, and the first batches that
  fill the pipeline (the colour smoothing's look-ahead), are a start-up cost, not merge speed.
  A clip too short for that is timed whole, start-up included; the result's "timed" says which.
- flicker: the mean frame-to-frame change inside the face region of the merged shot against the
  untouched destination's in the same region (1.0: the merge adds no flicker; target <= 1.2).
- preview: ms from a `merge.preview` request to its PNG bytes received, over a real bridge to an
  engine subprocess, for frame changes by single steps (scrubbing) and by random jumps.

The stage cannot extract or train (stages do not reach into each other), so the service layer
prepares the `Shot` (engine/bench_shot.py: a clip, its faces and a briefly trained model) and the
bridge client (engine/bench_merge.py), and calls these.
"""

from __future__ import annotations

import random
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from ..benchstats import decode_rate, summary
from ..media.decode import iter_frames, probe
from ..workspace import Workspace
from .settings import MergeSettings
from .shot import MergeParams, merge_shot
from .temporal import flicker

# the bench's merge: one face, overlay with RCT colour matching and the default feathered mask
BENCH_SETTINGS = {"mode": "overlay", "colour": "rct", "blur": 0.06}
TIMED_LEAST = 16  # frames the timing from the first written frame needs; fewer: the whole run is timed


@dataclass
class Shot:
    """A destination clip with its faces and a model trained on them, in a workspace."""

    workspace: Path
    model: str
    faceset: str
    video: Path
    frames: int | None = None  # merge [0, frames); None: the whole clip
    notes: dict = field(default_factory=dict)  # how it was made, for the report


def _merge(shot: Shot, out: Path, outputs: tuple[str, ...], settings: dict | None = None,
           report: Callable | None = None) -> dict:
    ws = Workspace(shot.workspace)
    try:
        params = MergeParams.from_dict({"model": shot.model, "video": str(shot.video), "faceset": shot.faceset,
                                        "frame_end": shot.frames, "output": str(out), "outputs": list(outputs),
                                        "settings": settings if settings is not None else BENCH_SETTINGS})
        return merge_shot(ws, params, out, report or (lambda *a: None), lambda: False)
    finally:
        ws.close()


def _timed_merge(shot: Shot, out: Path) -> tuple[float, int, bool, dict]:
    """One merge with the default outputs: (frames/s, frames timed, whether timed from the first
    written frame, the job's result). The job reports the frames written so far after each batch:
    the first report with some written starts the clock, the last one stops it."""
    marks: list[tuple[float, int]] = []

    def report(progress: float, message: str, info: dict | None = None) -> None:
        if info and info.get("frames"):
            marks.append((time.perf_counter(), int(info["frames"])))
    t = time.perf_counter()
    result = _merge(shot, out, ("layer", "matte"), report=report)
    whole = time.perf_counter() - t
    if marks:
        (t0, n0), (t1, n1) = marks[0], marks[-1]
        if n1 - n0 >= TIMED_LEAST and t1 > t0:
            return (n1 - n0) / (t1 - t0), n1 - n0, True, result
    return result["count"] / whole, result["count"], False, result


def bench_merge(shot: Shot, runs: int = 3) -> dict:
    """Merged frames/s with the default outputs (face layer + matte) against decode + H.264 encode."""
    merged, reference, timed, steady = [], [], [], 0
    with tempfile.TemporaryDirectory() as d:
        for _ in range(runs):  # interleaved: a run and its reference see the same load on the machine
            reference.append(decode_rate(shot.video, shot.frames, Path(d) / f"ref{time.monotonic_ns()}.mp4"))
            rate, frames, from_first, result = _timed_merge(shot, Path(d) / f"out{time.monotonic_ns()}")
            merged.append(rate)
            timed.append(frames)
            steady += from_first
    info = probe(shot.video)
    how = ("from the first written frame to the last (model load, faces and pipeline fill excluded)" if steady == runs
           else "the whole run, start-up included (too few frames to time from the first written one)" if not steady
           else f"{steady} of {runs} runs from the first written frame, the others whole (start-up included)")
    out = {"unit": "frames/s", "size": f"{info.width}x{info.height}", "frames": result["count"],
           "swapped": result["swapped"], "settings": BENCH_SETTINGS, "timed": how,
           "frames_timed": statistics.median(timed), "figure": summary(merged),
           "reference": {"name": "decode + H.264 encode", **summary(reference)}, **shot.notes}
    out["ratio"] = out["figure"]["median"] / out["reference"]["median"]
    print(f"  merge {out['size']}: {out['figure']['median']:.1f} frames/s (min {out['figure']['min']:.1f}, max "
          f"{out['figure']['max']:.1f}; {out['frames_timed']:.0f} of {out['frames']} frames timed {how}), "
          f"decode+encode {out['reference']['median']:.1f} frames/s, ratio {out['ratio']:.2f}")
    return out


def _read(path: Path, flags: int = cv2.IMREAD_COLOR) -> np.ndarray:
    image = cv2.imread(str(path), flags)
    if image is None:
        raise RuntimeError(f"bench: the merge did not write {path}")
    return image


def bench_flicker(shot: Shot) -> dict:
    """Flicker of the merged shot inside the face region against the untouched destination's."""
    with tempfile.TemporaryDirectory() as d:
        result = _merge(shot, Path(d) / "out", ("layer", "frames"))
        layer, frames = result["layer"], result["frames"]
        merged, regions, source = [], [], []
        for index, frame in iter_frames(shot.video, result["first_frame"], result["first_frame"] + result["count"]):
            merged.append(_read(Path(frames["directory"]) / (frames["pattern"] % index)))
            alpha = _read(Path(layer["directory"]) / (layer["pattern"] % index), cv2.IMREAD_UNCHANGED)[..., 3]
            regions.append(alpha > 0)
            source.append(frame)
    swapped, untouched = flicker(merged, regions), flicker(source, regions)
    out = {"unit": "mean |F_t - F_t-1| in the face region (0..255)", "frames": len(merged),
           "settings": BENCH_SETTINGS, "smooth_colour": MergeSettings().smooth_colour,
           "smooth_placement": MergeSettings().smooth_placement, "figure": swapped,
           "reference": {"name": "untouched destination", "value": untouched},
           "ratio": swapped / untouched if untouched else float("nan"), "target": 1.2, **shot.notes}
    print(f"  flicker: merged {swapped:.2f}, destination {untouched:.2f}, ratio {out['ratio']:.2f} (target <= 1.2)")
    return out


def bench_preview(shot: Shot, call: Callable[[str, dict], dict], changes: int = 50, warmup: int = 5,
                  seed: int = 0) -> dict:
    """Request-to-PNG ms of `merge.preview` through `call` (a bridge client's), after warm-up:
    half the changes step frame by frame, half jump to random frames not shown before."""
    info = probe(shot.video)
    last = min(info.frames, shot.frames or info.frames)
    steps, jumps = changes // 2, changes - changes // 2
    if last < warmup + changes:
        raise RuntimeError(f"bench preview needs {warmup + changes} frames, the clip has {last}")
    args = {"model": shot.model, "video": str(shot.video), "faceset": shot.faceset, "settings": BENCH_SETTINGS}

    def ask(frame: int) -> tuple[float, dict]:
        t = time.perf_counter()
        r = call("merge.preview", {**args, "frame": frame})
        return (time.perf_counter() - t) * 1000, r

    t = time.perf_counter()
    ask(0)  # opens the session: loads the model and the shot's faces, starts the frame cache
    opened = time.perf_counter() - t
    for frame in range(1, warmup):
        ask(frame)
    time.sleep(1.0)  # the background decode gets going, as it would while the user looks at the first frame
    sequential = [ask(frame) for frame in range(warmup, warmup + steps)]
    rest = list(range(warmup + steps, last))
    random.Random(seed).shuffle(rest)
    jumped = [ask(frame) for frame in rest[:jumps]]

    def report(rows):
        return {"ms": summary([ms for ms, _ in rows]), "engine_ms": summary([r["ms"] for _, r in rows]),
                "cached": sum(bool(r["cached"]) for _, r in rows),
                "bytes": statistics.median(len(r["layer"]) for _, r in rows)}

    out = {"unit": "ms from request to PNG bytes received", "size": f"{info.width}x{info.height}",
           "open_s": opened, "sequential": report(sequential), "random": report(jumped), **shot.notes}
    for name in ("sequential", "random"):
        ms = out[name]["ms"]
        print(f"  preview {name}: median {ms['median']:.0f} ms, p90 {ms['p90']:.0f} ms (min {ms['min']:.0f}, max "
              f"{ms['max']:.0f}); engine side {out[name]['engine_ms']['median']:.0f} ms")
    return out
