"""Masks stage: the occlusion benchmark (learned mask vs landmark hull on faces with a known truth).

Real faces come from the shared talking-head clips; 20 of them (a few frames of each of several
people) get synthetic occluders and become the labelled training set, labelled with their exact
truth. The segmenter trains on the CPU at 128 px for a fixed time. Then faces it never saw, other
frames of the same clips and clips of other people, get fresh occluders, and the learned mask's
intersection-over-union with their truth is set against the plain landmark hull's.

Extraction belongs to the faces stage, which this stage may not import: the service layer
(engine/bench_stages.py) hands in an `extract(ws, clip, faceset, frames)` function.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from engine.geometry.align import transform_points
from engine.masks.learn import SegTrainSettings, train_segmenter
from engine.models.segmenter import Segmenter
from engine.masks.occlusion import iou, occlude, skin_colour
from engine.workspace import Workspace

SHARED_FACES = Path(__file__).resolve().parents[3] / "shared" / "data" / "faces"
PREFIX = "styletalk__samples_source_video_video_"
# people whose labelled frames train the model; their other frames are the "unseen frames" test
TRAIN_CLIPS = [PREFIX + n for n in ("Obama_clip1", "KristiNoem", "andrew_clip_1")] + \
    [f"LivePortrait__assets_examples_driving_{n}" for n in ("d14", "d9")]
# people the model never sees while training
UNSEEN_CLIPS = [PREFIX + n for n in ("reagan_clip1", "feifeili_clip1")] + \
    [f"LivePortrait__assets_examples_driving_{n}" for n in ("d6", "d13")]
FRAMES = 150  # extracted per clip
LABELLED = 20  # faces labelled for training, spread over TRAIN_CLIPS
TEST_PER_CLIP = 10
TRAIN_SECONDS = 300.0
RESOLUTION = 128

Extract = Callable[[Workspace, Path, str, int], None]


def _faces(ws: Workspace, faceset: str) -> tuple[np.ndarray, np.ndarray]:
    """A faceset's crops (N,S,S,3) and landmarks in crop pixels (N,68,2), in frame order."""
    records = ws.facesets.faces(faceset)
    images = [cv2.imread(str(r.image)) for r in records]
    landmarks = [transform_points(r.transform, r.landmarks68) for r in records]
    return np.stack(images), np.stack(landmarks).astype(np.float32)


def build_sets(faces: dict[str, tuple[np.ndarray, np.ndarray]], seed: int) -> dict:
    """Training faces (LABELLED, spread over the training clips' first halves) and test faces (the
    training clips' second halves, and the unseen clips), each with fresh occluders. Each set is
    (images, truths, hulls); "picks" names the (clip, face index) pairs each set drew."""
    rng = np.random.default_rng(seed)
    train_names = [n for n in TRAIN_CLIPS if n in faces]
    per_clip = [LABELLED // len(train_names) + (k < LABELLED % len(train_names)) for k in range(len(train_names))]
    plan: dict[str, list[tuple[str, int]]] = {"train": [], "seen_people": [], "unseen_people": []}
    for name, n in zip(train_names, per_clip):
        half = len(faces[name][0]) // 2
        # test frames from the second half, at least 10 frames after the last training one
        plan["train"] += [(name, int(i)) for i in np.linspace(0, half - 1, n)]
        plan["seen_people"] += [(name, int(i)) for i in np.linspace(half + 10, len(faces[name][0]) - 1, TEST_PER_CLIP)]
    for name in (n for n in UNSEEN_CLIPS if n in faces):
        plan["unseen_people"] += [(name, int(i)) for i in np.linspace(0, len(faces[name][0]) - 1, TEST_PER_CLIP)]
    sets: dict = {"picks": plan}
    for part, picks in plan.items():
        made = [occlude(faces[c][0][i], faces[c][1][i], rng, skin=skin_colour(faces[c][0][i], faces[c][1][i]))
                for c, i in picks]
        sets[part] = tuple(np.stack([getattr(o, k) for o in made]) for k in ("image", "truth", "hull"))
    return sets


def evaluate(segmenter: Segmenter, images: np.ndarray, truths: np.ndarray, hulls: np.ndarray) -> dict:
    predicted = segmenter.predict(images)
    learned = [iou(p, t) for p, t in zip(predicted, truths)]
    hull = [iou(h, t) for h, t in zip(hulls, truths)]
    return {"faces": len(images), "learned_iou": float(np.mean(learned)), "hull_iou": float(np.mean(hull)),
            "learned_min": float(np.min(learned))}


def occlusion_run(faces: dict, model_dir: Path, seed: int, train_seconds: float,
                  resolution: int = RESOLUTION) -> dict:
    """One training and its figures, on sets built with `seed`."""
    sets = build_sets(faces, seed)
    images, truths, _ = sets["train"]
    settings = SegTrainSettings(resolution=resolution, iterations=1_000_000, max_seconds=train_seconds, seed=seed)
    trained = train_segmenter(images, truths, model_dir, settings, lambda *a: None, lambda: False)
    segmenter = Segmenter.load(model_dir)
    out = {"train_faces": len(images), "iterations": trained["iterations"], "seconds": trained["seconds"],
           "loss": trained["loss"]}
    for part in ("seen_people", "unseen_people"):
        out[part] = evaluate(segmenter, *sets[part])
    test = [sets["seen_people"], sets["unseen_people"]]
    out["all"] = evaluate(segmenter, *(np.concatenate(x) for x in zip(*test)))
    return out


def bench_occlusion(seconds: float, extract: Extract, runs: int = 3,
                    train_seconds: float = TRAIN_SECONDS) -> dict:
    """Mean IoU of the learned mask and of the landmark hull against the truth on unseen faces."""
    clips = {n: SHARED_FACES / "train" / f"{n}.mp4" for n in TRAIN_CLIPS + UNSEEN_CLIPS}
    if not all(p.is_file() for p in clips.values()):
        message = f"skipped: the real clips are not in {SHARED_FACES / 'train'}"
        print(f"  occlusion {message}")
        return {"skipped": message}
    with tempfile.TemporaryDirectory() as d:
        ws = Workspace(Path(d) / "ws")
        t = time.perf_counter()
        for name, clip in clips.items():
            extract(ws, clip, name, FRAMES)
        faces = {name: _faces(ws, name) for name in clips}
        ws.close()
        extracted = time.perf_counter() - t
        results = [occlusion_run(faces, Path(d) / f"model{k}", seed=k, train_seconds=train_seconds)
                   for k in range(runs)]
    for r in results:
        seen, other, a = r["seen_people"], r["unseen_people"], r["all"]
        print(f"  occlusion: unseen frames of the labelled clips: learned IoU {seen['learned_iou']:.4f} vs hull "
              f"{seen['hull_iou']:.4f} ({seen['faces']} faces); other people: learned {other['learned_iou']:.4f} "
              f"vs hull {other['hull_iou']:.4f} ({other['faces']}); all: {a['learned_iou']:.4f} vs "
              f"{a['hull_iou']:.4f}; {r['train_faces']} labelled faces, {r['iterations']} iterations in "
              f"{r['seconds']:.0f} s at {RESOLUTION} px")
    median = lambda part, key: statistics.median(r[part][key] for r in results)  # noqa: E731
    # the headline is the case: label 20 faces of the footage, mask its other frames
    return {"unit": "mean IoU vs ground truth", "runs": runs, "resolution": RESOLUTION, "device": "cpu",
            "train_seconds": train_seconds, "extract_seconds": extracted, "train_faces": results[0]["train_faces"],
            "iterations": statistics.median(r["iterations"] for r in results),
            "learned_iou": median("seen_people", "learned_iou"), "hull_iou": median("seen_people", "hull_iou"),
            "test_faces": results[0]["seen_people"]["faces"],
            "other_people": {"learned_iou": median("unseen_people", "learned_iou"),
                             "hull_iou": median("unseen_people", "hull_iou"),
                             "faces": results[0]["unseen_people"]["faces"]},
            "all": {"learned_iou": median("all", "learned_iou"), "hull_iou": median("all", "hull_iou"),
                    "faces": results[0]["all"]["faces"]},
            "target": 0.90, "details": results}
