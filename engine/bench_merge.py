"""Service layer: `bench merge`, `bench flicker` and `bench preview` on the shared shot (engine/bench_shot.py).

The measuring is engine/merge/bench.py's; this hands it the shot, the run count, and for the
preview a real bridge client of an engine subprocess (what the add-on's live preview talks to).
"""

from __future__ import annotations

from pathlib import Path

from . import benchstats
from .bench_bridge import served
from .bench_shot import merge_shot

PREVIEW_CHANGES = 50  # frame changes the preview bench times (half steps, half jumps)


def bench_merge(seconds: float) -> dict:
    """Merged frames/s at 1080p (predict, colour-match, compose, write the face layer and matte)
    against decoding and H.264-encoding the same clip."""
    from .merge import bench

    return bench.bench_merge(merge_shot(seconds), benchstats.RUNS)


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
    return bench.bench_flicker(merge_shot(seconds))


def bench_preview(seconds: float) -> dict:
    """merge.preview latency over a real bridge connection to an engine subprocess: scrubbing and jumps."""
    from .merge import bench

    shot = merge_shot(seconds)
    with served(shot.workspace, "bench preview") as (client, _, _):
        return bench.bench_preview(shot, lambda op, args: client.call(op, args, timeout=300), PREVIEW_CHANGES)
