"""Service layer: `python -m engine bench [name]`, every bench by name and the run that records them.

These machines are noisy, so every figure is the median of several runs (benchstats.RUNS), printed
with min and max, next to a reference measured in the same run (decode speed, the bf16 convolution
peak, a raw loopback copy, the destination's own flicker, raw landmark jitter) and the ratio to it.
Each bench's result carries a "headline" in one shape (engine/bench_headlines.py); the run ends
with a table of them (engine/bench_tables.py) and a JSON record (engine/bench_record.py) that
`bench compare` reads.

The benches: engine/bench_faces.py (extraction, jitter, recall), engine/bench_stages.py (training,
mask-temporal, occlusion), engine/bench_merge.py (merge, flicker, preview on engine/bench_shot.py's
shot), engine/bench_bridge.py, engine/bench_load.py.
"""

from __future__ import annotations

import json
import traceback
from pathlib import Path
from typing import Callable

from . import bench_record, bench_tables, benchstats
from .bench_bridge import bench_bridge
from .bench_faces import bench_extraction, bench_jitter, bench_recall
from .bench_headlines import headline_of
from .bench_load import bench_load
from .bench_merge import bench_flicker, bench_merge, bench_preview
from .bench_stages import bench_mask_temporal, bench_occlusion, bench_training
from .benchstats import headline

BENCHMARKS: dict[str, Callable[[float], dict]] = {
    "extraction": bench_extraction, "jitter": bench_jitter, "recall": bench_recall, "training": bench_training,
    "merge": bench_merge, "flicker": bench_flicker, "preview": bench_preview, "mask-temporal": bench_mask_temporal,
    "occlusion": bench_occlusion, "bridge": bench_bridge, "load": bench_load,
}
ALIASES = {"extract": "extraction", "train": "training"}  # the names before the issue named them


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
    rec = bench_record.new_record({"bench": name, "benches": names, "seconds": seconds, "runs": benchstats.RUNS,
                                   "shot": shot or None})
    path = Path(record) if record else bench_record.default_path(rec)
    for n in names:
        result = run_one(n, seconds, shot)
        bench_record.add_result(rec, n, result)
        print(f"{n}: {json.dumps(result, default=float)}", flush=True)
        if write:
            bench_record.write_record(rec, path)
    print()
    print(bench_tables.table(rec["headlines"]))
    if write:
        print(f"\nrecord: {path}")
    return 1 if any("error" in rec["results"][n] for n in names) else 0
