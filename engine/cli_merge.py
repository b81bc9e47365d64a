"""Service layer: the `python -m engine merge ...` command.

Every merge setting (MergeSettings: mode, mask, erosion, colour, sharpening, smoothing...) is
reachable with `--set key=value`, read like the train command's (JSON when it parses: numbers,
true/false; else a string), animation included: `--set keys='{"erode": [[0, 0], [50, 0.1]]}'`.
`--outputs` picks what is written: the face layer, its matte, merged frames, a merged video.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .cli_train import parse_options
from .errors import EngineError

OUTPUTS = ("layer", "matte", "frames", "video")


def add_merge_parser(sub) -> None:
    m = sub.add_parser("merge", help="merge the swapped face into every frame of a video",
                       description="Merge a trained model's face into a video's frames. Writes the face layer "
                                   "(RGBA PNGs, transparent outside the face) and its matte by default.")
    m.add_argument("--workspace", required=True)
    m.add_argument("--model", required=True)
    m.add_argument("--video", required=True)
    m.add_argument("--faceset", required=True, help="the faceset holding the video's (destination) faces")
    m.add_argument("--start", type=int, default=0)
    m.add_argument("--end", type=int, default=None, help="exclusive end frame")
    m.add_argument("--output", help="output folder (default: the workspace's renders/<job id>/)")
    m.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE",
                   help="any merge setting, e.g. --set mode=seamless --set erode=0.08 --set colour=lct; "
                        "animated: --set keys='{\"erode\": [[0, 0], [50, 0.1]]}'")
    m.add_argument("--outputs", help=f"comma-separated, any of {','.join(OUTPUTS)} (default: layer,matte)")


def parse_outputs(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    bad = [n for n in names if n not in OUTPUTS]
    if bad or not names:
        raise EngineError("bad_request", f"--outputs takes a comma-separated list of {', '.join(OUTPUTS)}, "
                                         f"not {text!r}")
    return list(dict.fromkeys(names))  # each once, in the order given


def merge_params(args: argparse.Namespace) -> dict:
    """The merge job's params the arguments ask for; bad settings are refused before the job starts."""
    from .merge.settings import MergeSettings

    settings = parse_options(args.settings)
    try:
        MergeSettings.from_dict(settings)
    except ValueError as exc:
        raise EngineError("bad_request", str(exc)) from None
    params = {"model": args.model, "video": str(Path(args.video).resolve()), "faceset": args.faceset,
              "frame_start": args.start, "frame_end": args.end, "output": args.output, "settings": settings}
    if args.outputs is not None:
        params["outputs"] = parse_outputs(args.outputs)
    return params


def run_merge(args: argparse.Namespace) -> int:
    from .cli import run_job  # cli imports this module

    return run_job(args.workspace, "merge", merge_params(args))
