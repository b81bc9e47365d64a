"""Service layer: the `python -m engine bench ...` command, and `bench compare OLD.json NEW.json`."""

from __future__ import annotations

import argparse

from .errors import EngineError

SHOT_FLAGS = ("workspace", "model", "faceset", "video")  # bench flicker on a user's trained shot


def add_bench_parser(sub) -> None:
    b = sub.add_parser("bench", help="run benchmarks and print medians against a same-run reference; "
                                     "`bench compare OLD.json NEW.json` compares two runs' records")
    b.add_argument("name", nargs="?", default="all",
                   help="all (default), extraction, training, merge, bridge, flicker, jitter, recall, preview, "
                        "mask-temporal, occlusion, load; or compare")
    b.add_argument("records", nargs="*", help="bench compare: the OLD and the NEW record")
    b.add_argument("--seconds", type=float, default=10.0,
                   help="how long each bench measures (its windows, file sizes and quick model scale with it)")
    b.add_argument("--record", help="where the run's JSON record goes "
                                    "(default bench_records/<UTC time>-<commit>.json under the current folder)")
    b.add_argument("--no-record", action="store_true", help="print the figures only")
    for flag in SHOT_FLAGS:
        b.add_argument(f"--{flag}", help="bench flicker: a trained shot to measure instead of a quick one "
                                         "(all four together)")


def run_bench(args: argparse.Namespace) -> int:
    if args.name == "compare":
        if len(args.records) != 2:
            raise EngineError("bad_request", "bench compare needs two records: OLD.json NEW.json")
        from .bench_tables import main_compare

        return main_compare(*args.records)
    if args.records:
        raise EngineError("bad_request", f"bench {args.name} takes no file arguments ({' '.join(args.records)}); "
                                         "did you mean bench compare OLD.json NEW.json?")
    from .bench import run_benchmarks

    shot = {k: getattr(args, k) for k in SHOT_FLAGS if getattr(args, k)}
    if shot:  # said before the run, not an hour into it (bench all runs flicker late)
        if args.name not in ("flicker", "all"):
            raise EngineError("bad_request", f"--{' --'.join(shot)} name a shot for bench flicker, "
                                             f"not bench {args.name}")
        if len(shot) != len(SHOT_FLAGS):
            missing = [f"--{k}" for k in SHOT_FLAGS if k not in shot]
            raise EngineError("bad_request", f"bench flicker on a real shot needs --workspace, --model, --faceset "
                                             f"and --video; missing {', '.join(missing)}")
    return run_benchmarks(args.name, args.seconds, shot, record=args.record, write=not args.no_record)
