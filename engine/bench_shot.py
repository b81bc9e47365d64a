"""Service layer: the shot the merge, flicker and preview benches share: a 1080p talking head, its
faces and a quick model.

The merge stage cannot extract or train (stages do not reach into each other), so the service
layer makes the shot and hands engine/merge/bench.py a `Shot`. Making it (extraction, training for
the bench's --seconds) costs more than any one of the three benches, so it is made once per run
and --seconds, and kept in a temp folder until the process ends.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
import time
from pathlib import Path

from .bench_faces import SHARED_FACES, extract_quietly
from .benchstats import scaled_clip

# frames of the merge benches' clip (5 s at 30 frames/s): bench merge times ~120 of them from its first
# written frame on; the preview's warm-up and changes use 55
MERGE_FRAMES = 150
MERGE_CLIP = SHARED_FACES / "train" / "styletalk__samples_source_video_video_Obama_clip1.mp4"
MERGE_TRAIN = {"preset": "quick"}  # trained for the bench's --seconds: merge speed does not depend on quality
MERGE_MIN_ITERATIONS = 10
_shots: dict = {}  # --seconds -> Shot, made this run


def merge_clip(tmp: Path) -> Path:
    """A 1080p clip of one talking head (a ~450 px face, the real 256 px clip enlarged onto a blurred
    copy of itself), or a synthetic portrait when ../shared is not here."""
    from .media.synthetic import make_clip

    if not MERGE_CLIP.is_file():
        return make_clip("hopper", tmp / "merge1080.mp4", seconds=MERGE_FRAMES / 25, fps=25, size=(1920, 1080))
    return scaled_clip(MERGE_CLIP, tmp / "merge1080.mp4", MERGE_FRAMES, inset=640)


def merge_shot(seconds: float):
    """The merge benches' Shot for this --seconds, made on first use."""
    from .jobs import JobRunner
    from .merge.bench import Shot
    from .recipes import STAGES
    from .workspace import Workspace

    if seconds in _shots:
        return _shots[seconds]
    d = Path(tempfile.mkdtemp(prefix="swapline-bench-merge-"))
    atexit.register(shutil.rmtree, d, True)
    t = time.perf_counter()
    clip = merge_clip(d)
    ws = Workspace(d / "ws")
    extracted = extract_quietly(ws, clip, "f", size=256, frame_end=MERGE_FRAMES)
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
    _shots[seconds] = shot = Shot(d / "ws", "m", "f", clip, MERGE_FRAMES, notes)
    return shot
