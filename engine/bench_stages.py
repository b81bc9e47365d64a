"""Service layer: the benches that live in their stage, `bench training`, `bench mask-temporal`, `bench occlusion`.

Their measuring is in engine/train/bench.py and engine/masks/*_bench.py; the mask benches need
faces extracted, which a stage may not do itself (stages do not reach into each other), so they
are handed the service layer's extraction here. Each stage is imported when its bench runs:
torch and the models cost seconds to load, which `bench merge` alone should not pay.
"""

from __future__ import annotations

from pathlib import Path

from . import benchstats
from .bench_faces import extract_quietly, synthetic_clip


def _extract(ws, video: Path, faceset: str, frames: int, steady: bool = True) -> None:
    """The extraction the mask benches call: 256 px faces of [0, frames), landmarks steadied or not."""
    extract_quietly(ws, video, faceset, frame_end=frames, size=256, smooth=steady)


def bench_training(seconds: float) -> dict:
    """Training samples/s of the quick and 128 presets, their counted FLOP/s against this machine's
    bf16 convolution peak, and the share of step time spent waiting for batches from the workers."""
    from .train.bench import bench_training as run

    return run(seconds=seconds, runs=benchstats.RUNS)


def bench_mask_temporal(seconds: float) -> dict:
    """Frame-to-frame change of the mask edge on talking heads, with and without smoothing over time."""
    from .masks.temporal_bench import bench_mask_temporal as run

    return run(seconds, _extract, fallback=synthetic_clip)


def bench_occlusion(seconds: float) -> dict:
    """Learned mask vs landmark hull IoU against the truth on real faces with synthetic occluders."""
    from .masks.occlusion_bench import bench_occlusion as run

    return run(seconds, _extract, runs=benchstats.RUNS)
