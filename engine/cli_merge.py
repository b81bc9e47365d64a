"""Service layer: the `merge` command line (issue 6: being extended)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_merge_parser(sub) -> None:
    m = sub.add_parser("merge", help="merge the swapped face into every frame of a video")
    m.add_argument("--workspace", required=True)
    m.add_argument("--model", required=True)
    m.add_argument("--video", required=True)
    m.add_argument("--faceset", required=True)
    m.add_argument("--start", type=int, default=0)
    m.add_argument("--end", type=int, default=None)
    m.add_argument("--output")


def run_merge(args: argparse.Namespace) -> int:
    from .cli import run_job  # cli imports this module

    return run_job(args.workspace, "merge", {
        "model": args.model, "video": str(Path(args.video).resolve()), "faceset": args.faceset,
        "frame_start": args.start, "frame_end": args.end, "output": args.output})
