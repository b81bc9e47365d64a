"""Service layer: `python -m engine evaluate --source ... --destination ... --result ...`."""

from __future__ import annotations

import argparse


def add_evaluate_parser(sub) -> None:
    e = sub.add_parser("evaluate", help="a quality report of a swap: JSON figures and a PNG summary sheet")
    e.add_argument("--source", required=True, help="the source person: a video, or a faceset name with --workspace")
    e.add_argument("--destination", required=True, help="the destination video (the untouched shot)")
    e.add_argument("--result", required=True, help="the swapped shot: a video, a folder of frames or a merge folder")
    e.add_argument("--out", help="folder for report.json and summary.png")


def run_evaluate(args: argparse.Namespace) -> int:
    raise NotImplementedError("evaluate is being built")
