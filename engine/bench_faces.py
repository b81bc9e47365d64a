"""Service layer: the face benches, `bench extraction`, `bench jitter` and `bench recall`.

They run on the real talking heads in ../shared/data/faces when that folder is there (generated
portraits otherwise: the figures then say the code runs, not how fast it is on real footage).
extract_quietly is the one extraction call every bench that needs faces makes.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from . import benchstats
from .benchstats import decode_rate, scaled_clip, summary

SHARED_FACES = Path(__file__).resolve().parents[2] / "shared" / "data" / "faces"
EXTRACT_FRAMES = 150  # frames extracted per clip: 5-6 s of a talking head
JITTER_CLIPS = ["Obama_clip1", "andrew_clip_1", "KristiNoem", "feifeili_clip1", "reagan_clip1"]


def extract_quietly(ws, video: Path, faceset: str, **params) -> dict:
    """extract_faces on `video` into `faceset` (ExtractParams fields as keywords), no progress, no cancel."""
    from .faces.extract import ExtractParams, extract_faces

    return extract_faces(ws, ExtractParams(video=str(video), faceset=faceset, **params), lambda *a: None,
                         lambda: False)


def synthetic_clip(tmp: Path) -> Path:
    """A 2 s generated 640x480 portrait, for benches whose real clips are missing."""
    from .media.synthetic import make_clip

    return make_clip("hopper", tmp / "bench.mp4", seconds=2.0, fps=25, size=(640, 480))


def extract_clips(tmp: Path) -> dict[str, Path]:
    """A 720p and a 1080p clip: a real one from ../shared when it is there, scaled up for 1080p."""
    from .media.synthetic import make_clip

    real = SHARED_FACES / "extra" / "LivePortrait__assets_examples_source_s18.mp4"
    if not real.is_file():
        return {"720p": make_clip("hopper", tmp / "720.mp4", seconds=6.0, fps=25, size=(1280, 720)),
                "1080p": make_clip("hopper", tmp / "1080.mp4", seconds=6.0, fps=25, size=(1920, 1080))}
    return {"720p": real, "1080p": scaled_clip(real, tmp / "1080.mp4", EXTRACT_FRAMES)}


def bench_extraction(seconds: float) -> dict:
    """End-to-end extraction frames/s (decode, detect, track, landmarks, align, write) against
    decoding alone, on a 720p and a 1080p clip."""
    from .workspace import Workspace

    out = {}
    with tempfile.TemporaryDirectory() as d:
        for name, clip in extract_clips(Path(d)).items():
            def extract() -> float:
                ws = Workspace(Path(d) / f"ws{time.monotonic_ns()}")  # a fresh workspace: nothing cached
                t = time.perf_counter()
                r = extract_quietly(ws, clip, "b", frame_end=EXTRACT_FRAMES)
                rate = r["frames"] / (time.perf_counter() - t)
                ws.close()
                return rate

            runs, refs = [], []
            for _ in range(benchstats.RUNS):  # interleaved: a run and its reference see the same load
                refs.append(decode_rate(clip, EXTRACT_FRAMES))
                runs.append(extract())
            figure, reference = summary(runs), summary(refs)
            ratio = figure["median"] / reference["median"]
            out[name] = result = {"unit": "frames/s", "figure": figure,
                                  "reference": {"name": "decode only", **reference}, "ratio": ratio,
                                  "decode_over_extract": 1 / ratio}
            print(f"  extract {name}: {figure['median']:.1f} frames/s, decode alone "
                  f"{reference['median']:.1f} frames/s, decode/extract {result['decode_over_extract']:.2f}x")
    return out


def bench_jitter(seconds: float) -> dict:
    """Frame-to-frame motion of aligned faces (% of face size), raw and steadied, on talking heads."""
    from .faces.jitter import measure_jitter

    clips = [SHARED_FACES / "train" / f"styletalk__samples_source_video_video_{n}.mp4" for n in JITTER_CLIPS]
    clips = [c for c in clips if c.is_file()]
    if not clips:
        with tempfile.TemporaryDirectory() as d:
            return {"clips": [measure_jitter(synthetic_clip(Path(d)), 50)]}
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

    def follow(clip: Path) -> tuple[int, int]:
        info = probe(clip)
        tracker, found, frames = FaceTracker(), 0, 0
        for index, frame in iter_frames(info.path):
            frames, found = frames + 1, found + bool(tracker.step(frame, index / (info.fps or 25.0)))
        return frames, found

    rows = []
    for clip in sorted((SHARED_FACES / "train").glob("*.mp4")):
        frames, found = follow(clip)
        rows.append({"clip": clip.name, "frames": frames, "found": found, "recall": found / frames})
        print(f"  recall {clip.name}: {found}/{frames} frames ({100 * found / frames:.2f}%)")
    out = {"clips": rows, "min_recall": min((r["recall"] for r in rows), default=float("nan"))}
    two = SHARED_FACES / "extra" / "DeepFaceLive__build_samples_Ben_Stiller_Owen_Wilson.mp4"
    if two.is_file():
        out["two_people"] = p = _people_of(two)
        print(f"  two-person clip: a face in {p['frames_with_faces']}/{p['frames']} frames, {p['tracks']} tracks, "
              f"people (faces each): {p['people']}")
    return out


def _people_of(clip: Path) -> dict:
    """Extract a clip and count its people: tracks grouped by identity when the extra is installed."""
    from .faces import identity
    from .workspace import Workspace

    with tempfile.TemporaryDirectory() as d:
        ws = Workspace(d)
        r = extract_quietly(ws, clip, "all", size=256)
        people: dict[int, int] = {}
        for t in ws.facesets.tracks("all"):
            key = t["person"] if t["person"] is not None else t["track"]
            people[key] = people.get(key, 0) + t["faces"]
        ws.close()
    return {"clip": clip.name, "frames": r["frames"], "frames_with_faces": r["frames_with_faces"],
            "tracks": r["tracks"], "identity": identity.available(),
            "people": sorted(people.values(), reverse=True)}
