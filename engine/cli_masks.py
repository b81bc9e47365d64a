"""Service layer: the `python -m engine mask ...` commands (labels, train, apply, remove, matte)."""

from __future__ import annotations

import argparse


def add_mask_parser(sub) -> None:
    m = sub.add_parser("mask", help="face masks: labels, the segmentation model, mattes")
    actions = m.add_subparsers(dest="action", required=True)
    # --- labels, remove, matte ---
    # --- train, apply ---


def run_mask(args: argparse.Namespace) -> int:
    raise SystemExit(f"unknown mask action {args.action!r}")
