"""Service layer: `python -m engine bench [name]`, figures with a reference measured in the same run.

These machines are noisy, so every figure is the median of several runs, printed with min and max,
next to a reference measured in the same run (decode speed, the bf16 convolution peak, a raw loopback
copy, the destination's own flicker, raw landmark jitter) and the ratio to it (engine/benchstats.py).
Each bench's result carries a "headline" in one shape (figure, reference, ratio); the run ends with
a table of them and a JSON record that `bench compare` reads (engine/bench_record.py).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import statistics
import tempfile
import threading
import time
import traceback
from pathlib import Path
from typing import Callable

from . import bench_record
from .bench_bridge import bench_bridge
from .bench_load import bench_load
from .benchstats import brief, decode_rate, headline, measure, scaled_clip, summary

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
    "extraction": bench_extract, "jitter": bench_jitter, "recall": bench_recall, "training": bench_train,
    "merge": bench_merge, "flicker": bench_flicker, "preview": bench_preview, "mask-temporal": bench_mask_temporal,
    "occlusion": bench_occlusion,
    "bridge": bench_bridge,
    "load": bench_load,
}
ALIASES = {"extract": "extraction", "train": "training"}  # the names before the issue named them


# Headlines: the one figure each bench leads with, its same-run reference and the ratio -----------------

def _finite(values) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(v)]


def _over(values) -> dict | None:
    """summary of the finite values (over clips or windows rather than runs), None if there are none."""
    values = _finite(values)
    return summary(values) if values else None


def _ratio(figure: dict | None, reference: dict | None) -> float | None:
    if not figure or not reference or not reference["median"]:
        return None
    return figure["median"] / reference["median"]


def _figure_headline(name: str, r: dict, unit: str, **notes) -> dict:
    """The shape the extraction and merge benches already have: figure, reference, ratio."""
    return headline(name, unit, r["figure"], {"unit": unit, **r["reference"]}, r["ratio"], **notes)


def _headline_extraction(r: dict) -> dict:
    clip = next(iter(r))  # the first clip: the real 720p one when ../shared is here
    return _figure_headline(f"extraction {clip}", r[clip], "frames/s", ratio_of="extraction / decoding alone")


def _headline_training(r: dict) -> dict:
    preset, p = next(iter(r["presets"].items()))  # quick: the preset the figures use
    peak = {"name": "bf16 conv peak", "unit": "GFLOP/s", **brief(p["peak_flops_per_s"], 1e-9)}
    return headline(f"training {preset}", "samples/s", p["samples_per_s"], peak, p["ratio_to_peak"]["median"],
                    ratio_of="the step's counted FLOP/s / the peak (median of paired runs)")


def _headline_merge(r: dict) -> dict:
    return _figure_headline(f"merge {r['size']}", r, "frames/s", ratio_of="merge / decode + H.264 encode")


def _headline_bridge(r: dict) -> dict:
    return headline("bridge upload", "MB/s", r["upload"], r["reference"], r["upload_ratio"],
                    ratio_of="upload through the bridge / raw loopback copy")


def _headline_flicker(r: dict) -> dict:
    unit = "mean |F_t - F_t-1| in the face"
    own = {"name": "destination's own", "unit": unit, **summary([r["reference"]["value"]])}
    return headline("flicker merged", unit, summary([r["figure"]]), own, r["ratio"], better="lower",
                    ratio_of="merged / untouched destination (1.0: no flicker added; target <= 1.2)")


def _headline_jitter(r: dict) -> dict:
    rows, unit = r["clips"], "% of face size per frame"
    raw = _over(row["raw"] for row in rows)
    ratios = _finite(row["ratio"] for row in rows)
    return headline("jitter steadied", unit, _over(row["smoothed"] for row in rows),
                    raw and {"name": "raw landmarks", "unit": unit, **raw},
                    statistics.median(ratios) if ratios else None, better="lower",
                    ratio_of="steadied / raw (median over clips)", over=f"{len(rows)} clips")


def _headline_recall(r: dict) -> dict:
    return headline("recall", "% of frames with a face", _over(100 * row["recall"] for row in r["clips"]),
                    over=f"{len(r['clips'])} clips")


def _headline_preview(r: dict) -> dict:
    return headline("preview scrubbing", "ms", r["sequential"]["ms"], better="lower")


def _headline_mask_temporal(r: dict) -> dict:
    rows, unit = r["clips"], "px of mask edge per frame"
    figure = _over(row["steadied"]["change_smoothed_px"] for row in rows)
    plain = _over(row["steadied"]["change_none_px"] for row in rows)
    ratios = _finite(row["steadied"]["change_smoothed_px"] / row["steadied"]["change_none_px"] for row in rows
                     if row["steadied"]["change_none_px"])
    reference = plain and {"name": "no smoothing", "unit": unit, **plain}
    return headline("mask edge change, smoothed", unit, figure, reference,
                    statistics.median(ratios) if ratios else None, better="lower",
                    ratio_of="smoothed / unsmoothed (median over clips)", over=f"{len(rows)} clips")


def _headline_occlusion(r: dict) -> dict:
    if "skipped" in r:
        return headline("learned mask IoU", "IoU", None, skipped=r["skipped"])
    learned = summary([d["seen_people"]["learned_iou"] for d in r["details"]])
    hull = summary([d["seen_people"]["hull_iou"] for d in r["details"]])
    return headline("learned mask IoU", "IoU", learned, {"name": "landmark hull", "unit": "IoU", **hull},
                    _ratio(learned, hull), ratio_of="learned / hull")


def _headline_load(r: dict) -> dict:
    unit = "iterations/s"
    base = {"name": "no clients", "unit": unit, **summary([b["train_rate"] for b in r["baselines"]])}
    paced = r["paced"]
    return headline(f"training under {r['clients']} polling clients", unit, summary([paced["train_rate"]]), base,
                    paced["train_rate"] / paced["train_baseline"] if paced["train_baseline"] else None,
                    ratio_of="under load / the baselines either side")


HEADLINES: dict[str, Callable[[dict], dict]] = {
    "extraction": _headline_extraction, "training": _headline_training, "merge": _headline_merge,
    "bridge": _headline_bridge, "flicker": _headline_flicker, "jitter": _headline_jitter,
    "recall": _headline_recall, "preview": _headline_preview, "mask-temporal": _headline_mask_temporal,
    "occlusion": _headline_occlusion, "load": _headline_load,
}


def headline_of(name: str, result: dict) -> dict:
    """The bench's headline; a bench without its own reads the common figure/reference/ratio shape."""
    if name in HEADLINES:
        return HEADLINES[name](result)
    figure, reference = result.get("figure"), result.get("reference")
    whole = lambda d: isinstance(d, dict) and all(k in d for k in ("median", "min", "max"))  # noqa: E731
    unit = result.get("unit", "")
    return headline(name, unit, figure if whole(figure) else None,
                    {"unit": unit, **reference} if whole(reference) and "name" in reference else None,
                    result.get("ratio") if isinstance(result.get("ratio"), (int, float)) else None)


def resolve(name: str) -> list[str] | None:
    """The benches a command-line name runs: every one for "all", None for an unknown name."""
    if name == "all":
        return list(BENCHMARKS)
    name = ALIASES.get(name, name)
    return [name] if name in BENCHMARKS else None


def run_one(name: str, seconds: float, shot: dict | None = None) -> dict:
    """One bench's full result with its "headline". A bench that fails gives {"error": ...} and a
    headline without a figure, so one broken bench does not lose the others' hour of figures; a
    headline that cannot be read off a result keeps the result."""
    try:
        result = BENCHMARKS[name](seconds, **shot) if shot and name == "flicker" else BENCHMARKS[name](seconds)
    except Exception as exc:  # noqa: BLE001 - reported in the record, the table and the exit code
        traceback.print_exc()
        result = {"error": f"{type(exc).__name__}: {exc}"}
        return {**result, "headline": headline(name, "", None, error=result["error"])}
    try:
        h = headline_of(name, result)
    except (KeyError, TypeError, ValueError, StopIteration, ZeroDivisionError) as exc:
        traceback.print_exc()
        h = headline(name, "", None, error=f"no headline: {type(exc).__name__}: {exc}")
    return {**result, "headline": h}


def run_benchmarks(name: str, seconds: float, shot: dict | None = None, record: str | Path | None = None,
                   write: bool = True) -> int:
    """Run one bench (by name or alias) or all; print each result, the end table, and write the
    JSON record (engine/bench_record.py) after every bench, to `record` or bench_records/ under the
    current folder. `shot` (workspace, model, faceset, video) points bench flicker at a real trained
    shot. Exit code: 0, 1 when a bench failed, 2 for an unknown name."""
    names = resolve(name)
    if names is None:
        print(f"unknown benchmark {name!r}; choose from: all, {', '.join(BENCHMARKS)} "
              f"(aliases: {', '.join(f'{a} = {n}' for a, n in ALIASES.items())}), or compare OLD.json NEW.json")
        return 2
    rec = bench_record.new_record({"bench": name, "benches": names, "seconds": seconds, "runs": RUNS,
                                   "shot": shot or None})
    path = Path(record) if record else bench_record.default_path(rec)
    for n in names:
        result = run_one(n, seconds, shot)
        bench_record.add_result(rec, n, result)
        print(f"{n}: {json.dumps(result, default=float)}", flush=True)
        if write:
            bench_record.write_record(rec, path)
    print()
    print(bench_record.table(rec["headlines"]))
    if write:
        print(f"\nrecord: {path}")
    return 1 if any("error" in rec["results"][n] for n in names) else 0
