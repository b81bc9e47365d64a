"""Service layer: `python -m engine bench [name]`, figures with a reference measured in the same run.

These machines are noisy, so every figure is the median of several runs, printed with min and max,
next to a reference (pure decode speed, or fp32 training speed) and the ratio to it (engine/benchstats.py).
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable

from .bench_bridge import bench_bridge
from .bench_load import bench_load
from .benchstats import decode_rate, measure, scaled_clip

RUNS = 3


def _measure(fn: Callable[[], float]) -> dict:
    return measure(fn, RUNS)


def _clip(tmp: Path) -> Path:
    from .media.synthetic import make_clip

    return make_clip("hopper", tmp / "bench.mp4", seconds=2.0, fps=25, size=(640, 480))


def _against_decode(clip: Path, figure: dict, frames: int | None = None) -> dict:
    ref = _measure(lambda: decode_rate(clip, frames))
    return {"unit": "frames/s", "figure": figure, "reference": {"name": "decode only", **ref},
            "ratio": figure["median"] / ref["median"]}


SHARED_FACES = Path(__file__).resolve().parents[2] / "shared" / "data" / "faces"
EXTRACT_FRAMES = 150


def _extract_clips(tmp: Path) -> dict[str, Path]:
    """A 720p and a 1080p clip: a real one from ../shared when it is there, scaled up for 1080p."""
    from .media.synthetic import make_clip

    real = SHARED_FACES / "extra" / "LivePortrait__assets_examples_source_s18.mp4"
    if not real.is_file():
        return {"720p": make_clip("hopper", tmp / "720.mp4", seconds=6.0, fps=25, size=(1280, 720)),
                "1080p": make_clip("hopper", tmp / "1080.mp4", seconds=6.0, fps=25, size=(1920, 1080))}
    return {"720p": real, "1080p": scaled_clip(real, tmp / "1080.mp4", EXTRACT_FRAMES)}


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


# The merge benches share one shot per run: a 1080p talking head, its faces, a quick model -----------

# frames of the merge benches' clip (5 s at 30 frames/s): bench merge times ~120 of them from its first
# written frame on; the preview's warm-up and changes use 55
MERGE_FRAMES = 150
MERGE_CLIP = SHARED_FACES / "train" / "styletalk__samples_source_video_video_Obama_clip1.mp4"
MERGE_TRAIN = {"preset": "quick"}  # trained for the bench's --seconds: merge speed does not depend on quality
MERGE_MIN_ITERATIONS = 10
PREVIEW_CHANGES = 50
_merge_shots: dict = {}


def _merge_clip(tmp: Path) -> Path:
    """A 1080p clip of one talking head (a ~450 px face, the real 256 px clip enlarged onto a blurred
    copy of itself), or a synthetic portrait when ../shared is not here."""
    from .media.synthetic import make_clip

    if not MERGE_CLIP.is_file():
        return make_clip("hopper", tmp / "merge1080.mp4", seconds=MERGE_FRAMES / 25, fps=25, size=(1920, 1080))
    return scaled_clip(MERGE_CLIP, tmp / "merge1080.mp4", MERGE_FRAMES, inset=640)


def _merge_shot(seconds: float):
    """The merge benches' Shot, made once per run (kept in a temp folder until the process ends)."""
    import atexit

    from .faces.extract import ExtractParams, extract_faces
    from .jobs import JobRunner
    from .merge.bench import Shot
    from .recipes import STAGES
    from .workspace import Workspace

    if seconds in _merge_shots:
        return _merge_shots[seconds]
    d = Path(tempfile.mkdtemp(prefix="swapline-bench-merge-"))
    atexit.register(shutil.rmtree, d, True)
    t = time.perf_counter()
    clip = _merge_clip(d)
    ws = Workspace(d / "ws")
    extracted = extract_faces(ws, ExtractParams(video=str(clip), faceset="f", size=256, frame_end=MERGE_FRAMES),
                              lambda *a: None, lambda: False)
    runner = JobRunner(ws, STAGES, recover=False)

    def train(limits: dict) -> dict:
        job = runner.wait(runner.submit("train", {"model": "m", "source": "f", "destination": "f", **limits,
                                                  **MERGE_TRAIN})["id"])
        if job["state"] != "done":
            raise RuntimeError(f"bench merge: training failed: {job['error']}")
        return job

    try:
        job = train({"iterations": 10**6, "max_seconds": seconds})
        if job["result"]["iterations"] < MERGE_MIN_ITERATIONS:  # the start-up (workers) took the seconds
            job = train({"iterations": MERGE_MIN_ITERATIONS})
    finally:
        runner.shutdown()
        ws.close()
    notes = {"clip": MERGE_CLIP.name if MERGE_CLIP.is_file() else "synthetic hopper", "faces": extracted["faces"],
             "model": {"train": MERGE_TRAIN, "seconds": seconds, "iterations": job["result"]["iterations"]},
             "prepare_s": time.perf_counter() - t}
    _merge_shots[seconds] = shot = Shot(d / "ws", "m", "f", clip, MERGE_FRAMES, notes)
    return shot


def bench_merge(seconds: float) -> dict:
    """Merged frames/s at 1080p (predict, colour-match, compose, write the face layer and matte)
    against decoding and H.264-encoding the same clip."""
    from .merge import bench

    return bench.bench_merge(_merge_shot(seconds), RUNS)


def bench_flicker(seconds: float, workspace: str | None = None, model: str | None = None,
                  faceset: str | None = None, video: str | None = None) -> dict:
    """Flicker of a merged talking head inside the face against the untouched destination's: on the
    bench's own shot (a quick model trained for `seconds`), or on a real trained model's shot when
    workspace, model, faceset and video are all given."""
    from .merge import bench

    given = (workspace, model, faceset, video)
    if any(given):
        if not all(given):
            raise ValueError("bench flicker on a real shot needs workspace, model, faceset and video")
        return bench.bench_flicker(bench.Shot(Path(workspace), model, faceset, Path(video).resolve(),
                                              notes={"clip": Path(video).name, "model": model}))
    return bench.bench_flicker(_merge_shot(seconds))


def bench_preview(seconds: float) -> dict:
    """merge.preview latency over a real bridge connection to an engine subprocess: scrubbing and jumps."""
    import re
    import secrets
    import subprocess
    import sys

    from bridge import BridgeClient

    from .merge import bench

    shot = _merge_shot(seconds)
    token = secrets.token_urlsafe(16)
    proc = subprocess.Popen([sys.executable, "-m", "engine", "serve", "--workspace", str(shot.workspace),
                             "--port", "0", "--token", token], cwd=Path(__file__).resolve().parents[1],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    client = None
    try:
        match = re.search(r"listening on [\d.]+:(\d+)", proc.stdout.readline())
        if not match:
            raise RuntimeError("bench preview: the engine did not start")
        # the port is all it needs from there: the rest is read away, as a full pipe would stall the engine
        threading.Thread(target=shutil.copyfileobj, args=(proc.stdout, open(os.devnull, "w")), daemon=True).start()
        client = BridgeClient("127.0.0.1", int(match.group(1)), token, client_name="bench", timeout=300)
        client.connect()
        client.start()
        return bench.bench_preview(shot, lambda op, args: client.call(op, args, timeout=300), PREVIEW_CHANGES)
    finally:
        if client is not None:
            client.close()
        proc.terminate()
        proc.wait(timeout=30)


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
    "merge": bench_merge, "flicker": bench_flicker, "preview": bench_preview, "mask-temporal": bench_mask_temporal,
    "occlusion": bench_occlusion,
    "bridge": bench_bridge,
    "load": bench_load,
}


def run_benchmarks(name: str, seconds: float, shot: dict | None = None) -> int:
    """`shot` (workspace, model, faceset, video) points bench flicker at a real trained shot."""
    names = list(BENCHMARKS) if name == "all" else [name]
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        print(f"unknown benchmark {unknown[0]!r}; choose from: all, {', '.join(BENCHMARKS)}")
        return 2
    results = {}
    for n in names:
        results[n] = r = BENCHMARKS[n](seconds, **shot) if shot and n == "flicker" else BENCHMARKS[n](seconds)
        print(f"{n}: {json.dumps(r, default=float)}")
    Path("bench_results.json").write_text(json.dumps(results, indent=2, default=float))
    return 0
