"""Service layer: the `python -m engine train ...` and `export-dfm` commands.

`train` takes a preset and any TrainSettings field with `--set key=value` (the value read as JSON
when it parses, else as a string), so every option the add-on offers is reachable from a terminal
and from torchrun, which starts this same command once per process.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from .errors import EngineError


def add_train_parser(sub) -> None:
    t = sub.add_parser("train", help="train a swap model on two facesets (or pretrain on one)",
                       description="Train (or resume) a model. Options apply in order: --preset, then the "
                                   "shortcuts below, then every --set.")
    t.add_argument("--workspace", required=True)
    t.add_argument("--model", required=True)
    t.add_argument("--source", required=True)
    t.add_argument("--destination", help="required unless --pretrain (then the source feeds both sides)")
    t.add_argument("--preset", help="quick, 128, 192 or 256_wf: a model shape and pace to start from")
    t.add_argument("--set", dest="options", action="append", default=[], metavar="KEY=VALUE",
                   help="any training setting, e.g. --set gan_power=0.1 --set optimizer=adabelief")
    t.add_argument("--phase", choices=("warp", "refine", "gan"), help="the phase to train in")
    t.add_argument("--pretrain", action="store_true", help="generic faces: a start for later pairs")
    t.add_argument("--iterations", type=int, help="target iteration count (a resumed model counts its own)")
    t.add_argument("--minutes", type=float, help="stop after this long")
    t.add_argument("--resolution", type=int)
    t.add_argument("--batch-size", type=int)
    t.add_argument("--holdout", type=float, help="share of each faceset's last faces never trained on, for "
                                                  "`evaluate --model` (chosen on the first run, e.g. 0.05)")
    e = sub.add_parser("export-dfm", help="write a trained model as a DeepFaceLab .dfm (ONNX) file")
    e.add_argument("--workspace", required=True)
    e.add_argument("--model", required=True)
    e.add_argument("--out", required=True, help="the .dfm file to write")


def parse_options(items: list[str]) -> dict:
    """`key=value` strings as a map; values are JSON when they parse (numbers, true, null), else strings."""
    options = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise EngineError("bad_request", f"--set takes KEY=VALUE, not {item!r}")
        try:
            value = json.loads(text)
        except ValueError:
            value = text
        options[key.strip()] = value
    return options


def train_params(args: argparse.Namespace) -> tuple[str, dict]:
    """The job kind and params the arguments ask for."""
    params: dict = {"model": args.model, "source": args.source}
    if args.destination:
        params["destination"] = args.destination
    if args.preset:
        params["preset"] = args.preset
    for key, value in (("iterations", args.iterations), ("resolution", args.resolution),
                       ("batch_size", args.batch_size), ("phase", args.phase),
                       ("holdout", args.holdout),
                       ("max_seconds", args.minutes * 60 if args.minutes else None)):
        if value is not None:
            params[key] = value
    params.update(parse_options(args.options))
    return ("pretrain" if args.pretrain else "train"), params


def run_train(args: argparse.Namespace) -> int:
    from .cli import run_job  # cli imports this module

    if args.command == "export-dfm":
        return run_job(args.workspace, "export_dfm", {"model": args.model, "output": str(Path(args.out).resolve())})
    kind, params = train_params(args)
    if int(os.environ.get("RANK", "0") or 0) > 0:
        return _follow(args.workspace, kind, params)
    return run_job(args.workspace, kind, params)


class _FollowerContext:
    """What a recipe asks of its job, for torchrun's other processes: they train in step with the
    first one (which decides stops, commands and phases for all) and keep no job of their own."""

    job_id = "follower"

    def report(self, progress: float, message: str = "", stats: dict | None = None) -> None:
        pass

    def should_stop(self) -> bool:
        return False

    def commands(self) -> list[dict]:
        return []

    def set_paused(self, paused: bool) -> None:
        pass


def _follow(workspace: str, kind: str, params: dict) -> int:
    """Run the stage directly, without a JobRunner: opening one on the shared workspace would mark
    the first process's running job as interrupted, and every process would add a job record."""
    from .recipes import STAGES
    from .workspace import Workspace

    STAGES[kind](Workspace(workspace), params, _FollowerContext())
    return 0
