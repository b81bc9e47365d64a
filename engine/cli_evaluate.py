"""Service layer: `python -m engine evaluate --source ... --destination ... --result ...`.

With --workspace the report runs as an "evaluate" job (the server's own recipe, with its progress
bar and Ctrl-C cancel); without one it runs in-process on plain files (a source video, no model).
Either way a progress line goes to stderr and the job's result, headline included, to stdout as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .errors import Cancelled, EngineError


def add_evaluate_parser(sub) -> None:
    e = sub.add_parser("evaluate", help="a quality report of a swap: JSON figures and a PNG summary sheet")
    e.add_argument("--source", required=True, help="the source person: a video, or a faceset name with --workspace")
    e.add_argument("--destination", required=True, help="the destination video (the untouched shot)")
    e.add_argument("--result", required=True, help="the swapped shot: a video, a folder of frames or a merge folder")
    e.add_argument("--out", help="folder for report.json and summary.png (default: <result>/evaluation for a "
                                 "folder, <result name>_evaluation beside a video)")
    e.add_argument("--workspace", help="the workspace of a source faceset and of --model (runs as a job)")
    e.add_argument("--model", help="the model that made the swap: its reconstruction SSIM on held-back faces "
                                   "(train with --holdout); needs --workspace")
    e.add_argument("--frames", type=int, help="judge the first N frames of the result only")
    e.add_argument("--samples", type=int, default=4, help="sample frames shown on the sheet (default 4)")


def evaluate_params(args: argparse.Namespace) -> dict:
    """The job's params from the command line: a --source that is a file is a video, else a faceset."""
    from .evaluate.report import default_output

    source = Path(args.source)
    if source.is_file():
        params = {"source_video": str(source.resolve())}
    elif len(source.parts) > 1 or source.is_absolute():  # a faceset name is never a path: a video gone missing
        raise EngineError("not_found", f"--source video not found: {args.source}")
    elif args.workspace:
        params = {"source_faceset": args.source}
    else:
        raise EngineError("bad_request", f"--source {args.source!r} is not a video file; a faceset name needs "
                                         "--workspace")
    if args.model and not args.workspace:
        raise EngineError("bad_request", "--model needs --workspace (the model's folder lives there)")
    output = Path(args.out) if args.out else default_output(args.result)
    params.update({"destination": str(Path(args.destination).resolve()), "result": str(Path(args.result).resolve()),
                   "output": str(output.resolve()), "samples": args.samples})
    if args.model:
        params["model"] = args.model
    if args.frames is not None:
        params["frames"] = args.frames
    return params


def run_evaluate(args: argparse.Namespace) -> int:
    params = evaluate_params(args)
    if args.workspace:
        from .cli import run_job

        return run_job(args.workspace, "evaluate", params)
    return _run_here(params)


def _run_here(params: dict) -> int:
    """The report without a workspace or job runner, with the same progress bar and output."""
    from .cli import _progress_printer
    from .evaluate.report import EvaluateParams, evaluate
    from .service_args import settings

    show = _progress_printer(sys.stderr)  # the stream of now (a caller may have redirected it)
    state = {"progress": 0.0, "message": "starting", "state": "running"}

    def progress(value: float, message: str = "", stats: dict | None = None) -> None:
        state.update(progress=max(0.0, min(1.0, value)), message=message)
        show(state)

    try:
        result = evaluate(settings(EvaluateParams, params), None, progress)
    except KeyboardInterrupt:
        show({**state, "state": "cancelled"})
        print(f"evaluate cancelled: {Cancelled().message} [cancelled]", file=sys.stderr)
        return 130
    except EngineError:
        show({**state, "state": "failed"})
        raise
    show({**state, "progress": 1.0, "state": "done"})
    print(json.dumps(result))
    return 0
