"""Service layer: the `python -m engine bench ...` command."""

from __future__ import annotations

import argparse


def add_bench_parser(sub) -> None:
    b = sub.add_parser("bench", help="run benchmarks and print medians against a reference")
    b.add_argument("name", nargs="?", default="all")
    b.add_argument("--seconds", type=float, default=10.0)
    for flag in ("--workspace", "--model", "--faceset", "--video"):  # flicker: measure a real shot
        b.add_argument(flag, help="bench flicker: a trained shot to measure instead of a quick one")


def run_bench(args: argparse.Namespace) -> int:
    from .bench import run_benchmarks

    shot = {k: getattr(args, k) for k in ("workspace", "model", "faceset", "video") if getattr(args, k)}
    return run_benchmarks(args.name, args.seconds, shot)
