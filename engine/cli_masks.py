"""Service layer: the `python -m engine mask ...` commands (labels, train, apply, remove, matte)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .errors import EngineError


def add_mask_parser(sub) -> None:
    m = sub.add_parser("mask", help="face masks: labels, the segmentation model, mattes")
    actions = m.add_subparsers(dest="action", required=True)
    # --- labels, remove, matte ---
    a = actions.add_parser("labels", help="which faces of a faceset carry a hand-drawn label (JSON out)")
    a.add_argument("--workspace", required=True)
    a.add_argument("--faceset", required=True)
    a = actions.add_parser("label", help="print a face's label, or set it from a JSON file ([] deletes it)")
    a.add_argument("--workspace", required=True)
    a.add_argument("--face", type=int, required=True)
    a.add_argument("--set", metavar="FILE.json", help="a list of {include, points} polygons, or {polygons, space}")
    a.add_argument("--space", choices=("face", "frame"), default="face",
                   help="face: fractions of the aligned crop; frame: frame pixels")
    a = actions.add_parser("remove", help="delete the learned masks of a faceset (labels stay)")
    a.add_argument("--workspace", required=True)
    a.add_argument("--faceset", required=True)
    a = actions.add_parser("matte", help="the faceset's person's face mask of every frame, as gray PNGs")
    a.add_argument("--workspace", required=True)
    a.add_argument("--faceset", required=True)
    a.add_argument("--video", required=True)
    a.add_argument("--start", type=int, default=0)
    a.add_argument("--end", type=int, default=None, help="exclusive end frame")
    a.add_argument("--output", help="folder for matte_%%06d.png (default: the workspace's renders/<job>)")
    for side in ("erode", "top", "bottom", "left", "right"):
        a.add_argument(f"--{side}", type=float, default=0.0,
                       help=f"{'every edge' if side == 'erode' else f'the {side} edge'}: fraction of the crop, "
                            "positive shrinks, negative grows")
    a.add_argument("--blur", type=float, default=0.0, help="width of the soft edge, fraction of the crop")
    a.add_argument("--temporal", type=float, default=0.0, help="smoothing over time, sigma in frames (0: off)")
    a.add_argument("--source", choices=("auto", "hull"), default="auto",
                   help="auto: drawn > learned > imported > hull masks; hull: landmarks only")
    # --- train, apply ---
    t = actions.add_parser("train", help="train (or resume) the mask model on the labelled faces of facesets")
    t.add_argument("--workspace", required=True)
    t.add_argument("--facesets", nargs="+", required=True)
    t.add_argument("--model", default="xseg")
    t.add_argument("--resolution", type=int, default=128, help="multiple of 32; 128 on a CPU, 256 on a GPU")
    t.add_argument("--iterations", type=int, default=3000, help="total, counting those of a resumed model")
    t.add_argument("--minutes", type=float, default=None, help="stop after this long")
    t.add_argument("--batch-size", type=int, default=4)
    t.add_argument("--device", default="auto", help="auto (the GPU when there is one), cpu or cuda")
    a = actions.add_parser("apply", help="learned masks for every face of a faceset")
    a.add_argument("--workspace", required=True)
    a.add_argument("--faceset", required=True)
    a.add_argument("--model", default="xseg")
    a.add_argument("--device", default="auto", help="auto (the GPU when there is one), cpu or cuda")


def _label_file(path: str, space: str) -> dict:
    """A label file's polygons and space: a bare list of polygons, or {polygons, space}."""
    try:
        data = json.loads(Path(path).read_text())
    except OSError as exc:
        raise EngineError("not_found", f"cannot read {path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise EngineError("bad_request", f"{path} is not JSON: {exc}") from None
    if isinstance(data, dict):
        return {"polygons": data.get("polygons"), "space": data.get("space", space)}
    return {"polygons": data, "space": space}


def _run_mask_op(args: argparse.Namespace) -> int:
    """labels, label, remove: the server's own mask operations, printed as JSON."""
    from .service_masks import MASK_OPS
    from .workspace import Workspace

    ws = Workspace(args.workspace)
    try:
        if args.action == "labels":
            result = MASK_OPS["mask.labels"](ws, {"faceset": args.faceset})
        elif args.action == "remove":
            result = MASK_OPS["mask.remove"](ws, {"faceset": args.faceset})
        elif args.set:
            result = MASK_OPS["mask.label.set"](ws, {"face": args.face, **_label_file(args.set, args.space)})
        else:
            result = MASK_OPS["mask.label.get"](ws, {"face": args.face, "space": args.space})
    finally:
        ws.close()
    print(json.dumps(result, indent=1))
    return 0


def run_mask(args: argparse.Namespace) -> int:
    if args.action in ("labels", "label", "remove"):
        return _run_mask_op(args)
    if args.action == "matte":
        from .cli import run_job  # cli imports this module

        return run_job(args.workspace, "mask_matte", {
            "faceset": args.faceset, "video": str(Path(args.video).resolve()), "frame_start": args.start,
            "frame_end": args.end, "output": str(Path(args.output).resolve()) if args.output else None,
            "source": args.source, "temporal": args.temporal,
            "shape": {k: getattr(args, k) for k in ("erode", "blur", "top", "bottom", "left", "right")}})
    if args.action in ("train", "apply"):
        from .cli import run_job  # cli imports this module

        if args.action == "train":
            return run_job(args.workspace, "mask_train", {
                "model": args.model, "facesets": args.facesets, "resolution": args.resolution,
                "iterations": args.iterations, "max_seconds": args.minutes * 60 if args.minutes else None,
                "batch_size": args.batch_size, "device": args.device})
        return run_job(args.workspace, "mask_apply", {"model": args.model, "faceset": args.faceset,
                                                      "device": args.device})
    raise SystemExit(f"unknown mask action {args.action!r}")
