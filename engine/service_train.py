"""Service layer: the synchronous training operations (commands to a running job, its pictures, presets).

Each handler takes (workspace, args, job runner) and answers at once. Training itself runs as a
job (recipes_train.py); these steer it (`job.control`) and show it (`train.images`).
"""

from __future__ import annotations

from .errors import EngineError
from .jobs import JobRunner
from .recipes_train import COMMANDS, JOB_ONLY, TRAIN_KINDS, check_name, train_settings
from .service_args import arg
from .workspace import Workspace

PREVIEW, GRAPH = "preview.png", "loss.png"  # written beside the checkpoint by the training loop


def _check_train_command(job: dict, command: dict) -> None:
    """Refuse now, with a reason, what the training loop would otherwise drop or fail on later."""
    from .train.settings import PHASES

    name = command["command"]
    if name not in COMMANDS:
        raise EngineError("bad_request", f"unknown training command {name!r}; expected one of {', '.join(COMMANDS)}")
    extra = set(command) - {"command", *({"phase": ("phase",), "set": ("options",)}.get(name, ()))}
    if extra:
        raise EngineError("bad_request", f"training command {name!r} takes no {sorted(extra)[0]!r}")
    if name == "phase" and command.get("phase") not in PHASES:
        raise EngineError("bad_request", f"'phase' must be one of {', '.join(PHASES)}")
    if name != "set":
        return
    options = command.get("options")
    if not isinstance(options, dict) or not options:
        raise EngineError("bad_request", "'set' needs 'options': a map of training settings")
    params = {k: v for k, v in (job.get("params") or {}).items() if k not in JOB_ONLY}
    try:
        train_settings(params, job["kind"] == "pretrain").check_soft(options)
    except ValueError as exc:
        raise EngineError("bad_request", str(exc)) from None


def job_control(ws: Workspace, args: dict, jobs: JobRunner) -> dict:
    """Send a command to a live job: {job, command, ...}; the rest of args is the command's."""
    job_id = arg(args, "job", str)
    command = {k: v for k, v in args.items() if k != "job"}
    arg(command, "command", str)
    job = jobs.get(job_id)
    if job["kind"] in TRAIN_KINDS:
        _check_train_command(job, command)
    return jobs.control(job_id, command)


def _latest_job(jobs: JobRunner, model: str) -> dict | None:
    for job in jobs.list():  # newest first
        if job["kind"] in TRAIN_KINDS and (job.get("params") or {}).get("model") == model:
            return job
    return None


def train_images(ws: Workspace, args: dict, jobs: JobRunner) -> dict:
    """The model's preview grid and loss graph as PNG bytes (None until written): bytes, not paths,
    so a client on another machine can show them too."""
    model = check_name(arg(args, "model", str), "model")
    directory = ws.model_dir(model)
    out = {}
    for key, name in (("preview", PREVIEW), ("graph", GRAPH)):
        try:
            out[key] = (directory / name).read_bytes()
        except FileNotFoundError:
            out[key] = None
        except OSError as exc:
            raise EngineError("io_error", f"could not read {name} of model {model!r}: {exc.strerror or exc}") from None
    stats = (_latest_job(jobs, model) or {}).get("stats") or {}
    return {"model": model, "iteration": stats.get("iteration"), "preview_version": stats.get("preview_version"),
            **out}


def train_presets(ws: Workspace, args: dict, jobs: JobRunner) -> dict:
    from .train.presets import PRESETS
    from .train.settings import COLOUR_TRANSFERS, OPTIMIZERS, PHASES, SOFT_OPTIONS, TrainSettings

    return {"presets": PRESETS, "defaults": TrainSettings().to_dict(), "soft": sorted(SOFT_OPTIONS),
            "phases": list(PHASES), "optimizers": list(OPTIMIZERS), "colour_transfers": list(COLOUR_TRANSFERS),
            "commands": list(COMMANDS)}


TRAIN_OPS: dict = {"job.control": job_control, "train.images": train_images, "train.presets": train_presets}
