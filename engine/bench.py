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

import cv2

RUNS = 3


def _measure(fn: Callable[[], float]) -> dict:
    values = [fn() for _ in range(RUNS)]
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "runs": RUNS}


def _clip(tmp: Path) -> Path:
    from .media.synthetic import make_clip

    return make_clip("hopper", tmp / "bench.mp4", seconds=2.0, fps=25, size=(640, 480))


def _decode_rate(clip: Path, frames: int | None = None) -> float:
    """The reference: frames/s of decoding alone, the floor under any per-frame stage."""
    from .media.decode import iter_frames

    t = time.perf_counter()
    n = sum(1 for _ in iter_frames(clip, 0, frames))
    return n / (time.perf_counter() - t)


def _against_decode(clip: Path, figure: dict, frames: int | None = None) -> dict:
    ref = _measure(lambda: _decode_rate(clip, frames))
    return {"unit": "frames/s", "figure": figure, "reference": {"name": "decode only", **ref},
            "ratio": figure["median"] / ref["median"]}


SHARED_FACES = Path(__file__).resolve().parents[2] / "shared" / "data" / "faces"
EXTRACT_FRAMES = 150


def _extract_clips(tmp: Path) -> dict[str, Path]:
    """A 720p and a 1080p clip: a real one from ../shared when it is there, scaled up for 1080p."""
    from .media.decode import iter_frames
    from .media.encode import write_video
    from .media.synthetic import make_clip

    real = SHARED_FACES / "extra" / "LivePortrait__assets_examples_source_s18.mp4"
    if not real.is_file():
        return {"720p": make_clip("hopper", tmp / "720.mp4", seconds=6.0, fps=25, size=(1280, 720)),
                "1080p": make_clip("hopper", tmp / "1080.mp4", seconds=6.0, fps=25, size=(1920, 1080))}
    frames = (cv2.resize(f, (1920, 1080), interpolation=cv2.INTER_CUBIC)
              for _, f in iter_frames(real, 0, EXTRACT_FRAMES))
    return {"720p": real, "1080p": write_video(tmp / "1080.mp4", frames, 30.0)}


def bench_extract(seconds: float) -> dict:
    """End-to-end extraction frames/s (decode, detect, track, landmarks, align, write) against
    decoding alone, on a 720p and a 1080p clip."""
    from .faces.extract import ExtractParams, extract_faces
    from .workspace import Workspace

    out = {}
    with tempfile.TemporaryDirectory() as d:
        for name, clip in _extract_clips(Path(d)).items():
            def extract() -> float:
                ws = Workspace(Path(d) / f"ws{time.monotonic_ns()}")
                t = time.perf_counter()
                r = extract_faces(ws, ExtractParams(video=str(clip), faceset="b", frame_end=EXTRACT_FRAMES),
                                  lambda *a: None, lambda: False)
                rate = r["frames"] / (time.perf_counter() - t)
                ws.close()
                return rate

            result = _against_decode(clip, _measure(extract), EXTRACT_FRAMES)
            result["decode_over_extract"] = 1 / result["ratio"]
            out[name] = result
            print(f"  extract {name}: {result['figure']['median']:.1f} frames/s, decode alone "
                  f"{result['reference']['median']:.1f} frames/s, decode/extract {result['decode_over_extract']:.2f}x")
    return out


def bench_jitter(seconds: float) -> dict:
    """Frame-to-frame motion of aligned faces (% of face size), raw and steadied, on talking heads."""
    from .faces.jitter import measure_jitter

    names = ["Obama_clip1", "andrew_clip_1", "KristiNoem", "feifeili_clip1", "reagan_clip1"]
    clips = [SHARED_FACES / "train" / f"styletalk__samples_source_video_video_{n}.mp4" for n in names]
    clips = [c for c in clips if c.is_file()]
    if not clips:
        with tempfile.TemporaryDirectory() as d:
            return {"clips": [measure_jitter(_clip(Path(d)), 50)]}
    rows = []
    for clip in clips:
        rows.append(measure_jitter(clip, EXTRACT_FRAMES))
        r = rows[-1]
        print(f"  jitter {r['clip']}: raw {r['raw']:.3f}% smoothed {r['smoothed']:.3f}% (x{r['ratio']:.2f}), "
              f"face in {r['found']}/{r['frames']} frames")
    return {"unit": "% of face size per frame", "clips": rows,
            "raw": statistics.median(r["raw"] for r in rows),
            "smoothed": statistics.median(r["smoothed"] for r in rows),
            "ratio": statistics.median(r["ratio"] for r in rows)}


def bench_recall(seconds: float) -> dict:
    """Share of frames with a face found, on every clip of ../shared/data/faces/train, and the
    people found in the two-person clip (tracks, their frames)."""
    from .faces.track import FaceTracker
    from .media.decode import iter_frames, probe

    def follow(clip: Path) -> tuple[int, int, dict[int, int]]:
        info = probe(clip)
        tracker, found, frames, tracks = FaceTracker(), 0, 0, {}
        for index, frame in iter_frames(info.path):
            faces = tracker.step(frame, index / (info.fps or 25.0))
            frames, found = frames + 1, found + bool(faces)
            for f in faces:
                tracks[f.track] = tracks.get(f.track, 0) + 1
        return frames, found, tracks

    rows = []
    for clip in sorted((SHARED_FACES / "train").glob("*.mp4")):
        frames, found, _ = follow(clip)
        rows.append({"clip": clip.name, "frames": frames, "found": found, "recall": found / frames})
        print(f"  recall {clip.name}: {found}/{frames} frames ({100 * found / frames:.2f}%)")
    out = {"clips": rows, "min_recall": min((r["recall"] for r in rows), default=float("nan"))}
    two = SHARED_FACES / "extra" / "DeepFaceLive__build_samples_Ben_Stiller_Owen_Wilson.mp4"
    if two.is_file():
        out["two_people"] = _people_of(two)
        p = out["two_people"]
        print(f"  two-person clip: a face in {p['frames_with_faces']}/{p['frames']} frames, {p['tracks']} tracks, "
              f"people (faces each): {p['people']}")
    return out


def _people_of(clip: Path) -> dict:
    """Extract a clip and count its people: tracks grouped by identity when the extra is installed."""
    from .faces import identity
    from .faces.extract import ExtractParams, extract_faces
    from .workspace import Workspace

    with tempfile.TemporaryDirectory() as d:
        ws = Workspace(d)
        r = extract_faces(ws, ExtractParams(video=str(clip), faceset="all", size=256), lambda *a: None, lambda: False)
        people: dict[int, int] = {}
        for t in ws.facesets.tracks("all"):
            key = t["person"] if t["person"] is not None else t["track"]
            people[key] = people.get(key, 0) + t["faces"]
        ws.close()
    return {"clip": clip.name, "frames": r["frames"], "frames_with_faces": r["frames_with_faces"],
            "tracks": r["tracks"], "identity": identity.available(),
            "people": sorted(people.values(), reverse=True)}


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
    """Training samples/s of the quick and 128 presets, their counted FLOP/s against this machine's
    bf16 convolution peak, and the share of step time spent waiting for batches from the workers."""
    from .train.bench import bench_training

    return bench_training(seconds=seconds)


def bench_mask_temporal(seconds: float) -> dict:
    """Frame-to-frame change of the mask edge on talking heads, with and without smoothing over time."""
    from .faces.extract import ExtractParams, extract_faces
    from .masks.temporal_bench import bench_mask_temporal as run

    def extract(ws, video: Path, faceset: str, frames: int, steady: bool) -> None:
        extract_faces(ws, ExtractParams(video=str(video), faceset=faceset, frame_end=frames, size=256, smooth=steady),
                      lambda *a: None, lambda: False)
    return run(seconds, extract, fallback=_clip)


def bench_occlusion(seconds: float) -> dict:
    """Learned mask vs landmark hull IoU against the truth on real faces with synthetic occluders."""
    from .faces.extract import ExtractParams, extract_faces
    from .masks.occlusion_bench import bench_occlusion as run

    def extract(ws, video: Path, faceset: str, frames: int) -> None:
        extract_faces(ws, ExtractParams(video=str(video), faceset=faceset, frame_end=frames, size=256),
                      lambda *a: None, lambda: False)
    return run(seconds, extract)


BENCHMARKS: dict[str, Callable[[float], dict]] = {
    "extract": bench_extract, "jitter": bench_jitter, "recall": bench_recall, "train": bench_train,
    "merge": bench_merge, "mask-temporal": bench_mask_temporal, "occlusion": bench_occlusion,
}


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
